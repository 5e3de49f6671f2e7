"""Training input: each process reads its data shards and contributes its rows to the global batch.

The global batch is `data_shards` sub-batches in shard order, each from its own pipeline over a
disjoint slice of the data. A process reads exactly the shards whose rows land on its devices
(`local_shards`, from the batch sharding, so any device order of the mesh works). The global batch
therefore does not depend on how many processes read it: one process reading shards [0, 1] builds
the batch two processes build together, which is what makes multi-host runs checkable against
single-host ones.
"""
from __future__ import annotations

import json
from typing import Callable

import jax
import numpy as np


class ShardedInput:
    """Iterator of this process's rows of the global batch, with Grain-checkpointable state."""

    def __init__(self, build: Callable, split: str, global_batch_size: int, shards: list[int], total_shards: int):
        """`build(split, rows, shard, total_shards)` returns a Grain dataset of `rows`-row batches."""
        self.shards = list(shards)
        rows = global_batch_size // total_shards
        self._iterators = [iter(build(split, rows, shard, total_shards)) for shard in self.shards]

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        parts = [next(it) for it in self._iterators]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    # Grain's orbax handler stores non-Grain iterators' state as text: bytes in, bytes out.
    def get_state(self) -> bytes:
        return json.dumps([it.get_state() for it in self._iterators]).encode()

    def set_state(self, state: bytes) -> None:
        states = json.loads(state.decode() if isinstance(state, bytes) else state)
        if len(states) != len(self._iterators):
            raise ValueError(f"data state has {len(states)} shards, this process reads {len(self._iterators)}")
        for it, s in zip(self._iterators, states):
            it.set_state(s)

    def start_prefetch(self) -> None:  # noqa: D102
        """Called by Grain's checkpoint handler after a restore; prefetch starts on demand here."""


def total_shards(data_shards: int, global_batch_size: int) -> int:
    """Number of data shards (`-1` = one per process); must divide the global batch."""
    shards = jax.process_count() if data_shards == -1 else data_shards
    if shards < 1 or global_batch_size % shards or shards % jax.process_count():
        raise ValueError(f"data_shards ({shards}) must divide global_batch_size ({global_batch_size}) and be a "
                         f"multiple of the process count ({jax.process_count()})")
    return shards


def local_shards(batch_sharding: jax.sharding.Sharding, global_batch_size: int, shards: int) -> list[int]:
    """The shards whose rows this process's devices hold, in row order.

    Raises ValueError when this process's rows are not whole shards (choose data_shards so that each
    process's rows are a multiple of global_batch_size / data_shards).
    """
    rows = set()
    for index in batch_sharding.addressable_devices_indices_map((global_batch_size,)).values():
        rows.update(range(*index[0].indices(global_batch_size)))
    per_shard = global_batch_size // shards
    owned = sorted({row // per_shard for row in rows})
    if sorted(rows) != [r for shard in owned for r in range(shard * per_shard, (shard + 1) * per_shard)]:
        raise ValueError(f"this process holds batch rows {sorted(rows)}, which are not whole data shards of "
                         f"{per_shard} rows; change data_shards")
    return owned
