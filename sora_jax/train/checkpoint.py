"""Checkpoints with Orbax (the only module that imports it): train state plus the data iterator.

Saves are asynchronous (the device-to-host copy blocks, the write does not), the last `keep` are
kept, and each is written to a temporary directory and renamed when complete, so a run killed
mid-save leaves the previous checkpoint intact. Restore takes the latest checkpoint that reads back;
an unreadable or partial latest one is reported, moved aside to `<directory>.unreadable/` (kept for
inspection, and so the resumed run can save that step again), and the previous one is used.
"""
from __future__ import annotations

import os
import shutil
import time

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from sora_jax.train import files


class Checkpointer:
    """Orbax `CheckpointManager` over `directory` with items `state` and `data`."""

    def __init__(self, directory: str, keep: int, async_save: bool = True):
        self.directory = files.absolute(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=keep, enable_async_checkpointing=async_save, create=True, cleanup_tmp_directories=True,
            ),
        )

    def steps(self) -> list[int]:
        """Steps on disk now (read afresh: another process may have written or moved some)."""
        self._manager.reload()
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, data_iterator, force: bool = False) -> bool:
        """Starts saving `state` and the data iterator's position at `step`; returns whether it saved."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator))
        return self._manager.save(step, args=args, force=force)

    def restore(self, abstract_state, data_iterator, on_fallback=print):
        """Restores the newest readable checkpoint into `abstract_state`'s shapes and shardings.

        Returns `(step, state)` or `None` when there is no checkpoint. `data_iterator` is positioned
        in place. Unreadable checkpoints are skipped with a message through `on_fallback`.
        """
        for step in reversed(self.steps()):
            try:
                restored = self._manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    data=grain.checkpoint.CheckpointRestore(data_iterator),
                ))
                return step, restored["state"]
            except Exception as error:  # noqa: BLE001  any unreadable checkpoint falls back
                aside = self._move_aside(step)
                on_fallback(f"checkpoint at step {step} in {self.directory} is unreadable "
                            f"({type(error).__name__}: {str(error)[:200]}); moved to {aside}; trying the previous one")
        return None

    def _move_aside(self, step: int) -> str:
        target = os.path.join(self.directory + ".unreadable", f"{step}-{int(time.time())}")
        if jax.process_index() == 0:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.move(os.path.join(self.directory, str(step)), target)
        self._manager.reload()
        return target

    def restore_weights(self, state, shardings, fields=("params", "ema")):
        """The latest checkpoint's `fields` of the train state, merged into the fresh `state`.

        For a new stage that adds parameters to an earlier stage's model (a head, an input
        embedding): every leaf of those fields the checkpoint holds is read (sharded as
        `shardings`), the others keep their fresh values. Returns `(step, state, new)`, with `new`
        the `/`-joined names of the leaves kept fresh. A leaf the checkpoint holds with another
        shape is a ValueError naming it.
        """
        step = self._latest()
        directory = os.path.join(self.directory, str(step), "state")
        metadata = ocp.StandardCheckpointer().metadata(directory).item_metadata.tree
        saved = {key_names(path): meta for path, meta in jax.tree_util.tree_flatten_with_path(metadata)[0]}
        target, new = {}, []
        flat = jax.tree_util.tree_flatten_with_path(state)[0]
        for (path, leaf), sharding in zip(flat, jax.tree.leaves(shardings)):
            names = key_names(path)
            if not names or names[0] not in fields:
                continue
            if names not in saved:
                new.append("/".join(names))
                continue
            if tuple(saved[names].shape) != tuple(leaf.shape):
                raise ValueError(f"{'/'.join(names)} is {tuple(saved[names].shape)} in {directory}, "
                                 f"{tuple(leaf.shape)} in the new model")
            node = target
            for name in names[:-1]:
                node = node.setdefault(name, {})
            node[names[-1]] = jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)
        restored = ocp.PyTreeCheckpointer().restore(directory, args=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True))
        values = {key_names(path): value for path, value in jax.tree_util.tree_flatten_with_path(restored)[0]}
        merged = [values.get(key_names(path), leaf) for path, leaf in flat]
        return step, jax.tree.unflatten(jax.tree.structure(state), merged), new

    def _latest(self) -> int:
        steps = self.steps()
        if not steps:
            raise FileNotFoundError(f"no checkpoint in {self.directory} to initialise from")
        return steps[-1]

    def reached_preemption(self, step: int) -> bool:
        """True on every process once any process received a preemption notice (multi-host safe)."""
        return self._manager.reached_preemption(step)

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def save_weights(directory: str, step: int, params) -> None:
    """Saves a weights-only state `{step, params}` at `step` (what `read_state` and
    `train.restore.load_trained` read), for workdirs made without training."""
    manager = ocp.CheckpointManager(files.absolute(directory), options=ocp.CheckpointManagerOptions(create=True))
    try:
        state = {"step": np.asarray(step, np.int32), "params": params}
        manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state)), force=True)
        manager.wait_until_finished()
    finally:
        manager.close()


def read_state(directory: str, step: int | None = None) -> dict:
    """A checkpoint's train state as saved (nested dicts of arrays), without a model to restore into:
    for tools and tests that inspect weights. `step` defaults to the latest."""
    manager = ocp.CheckpointManager(files.absolute(directory))
    try:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {directory}")
        return manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]
    finally:
        manager.close()


def key_names(path) -> tuple[str, ...]:
    """A pytree key path as plain names (`params/encoder/0/attn/...`), as Orbax stores them."""
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def abstract_like(state, shardings):
    """Shape/dtype/sharding skeleton of `state`, what `restore` fills."""
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, shardings)
