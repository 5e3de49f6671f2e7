"""Data-only experiment: the Grain patch-n-pack pipeline over Shapes World, in three sizes.

Build the data, then look at the packed batches:

    sora-jax data build shapes_world --config small --out ~/data
    python -c "from experiments.data import get_config; from data_pipelines.pipeline import build; \
      c = get_config('small'); c.sources = ['$HOME/data/shapes_world/small/1.0.0']; print(next(iter(build(c))).keys())"

Variants: `tiny` (CPU tests; 1024-token rows), `small` (laptop; 4096-token rows), `large`
(accelerators; 16384-token rows, 8 Grain workers). Every later stage's config embeds one of these
as its `data` field.
"""
from __future__ import annotations

import ml_collections

from data_pipelines.config import get_data_config

VARIANTS = {
    "tiny": dict(seq_len=1024, max_tokens_per_clip=1024, batch_size=4, packing_bins=32, worker_count=0),
    "small": dict(seq_len=4096, max_tokens_per_clip=4096, batch_size=8, packing_bins=256, worker_count=2),
    "large": dict(seq_len=16384, max_tokens_per_clip=16384, batch_size=16, packing_bins=256, worker_count=8),
}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    """The data config of variant `arg` (see the module docstring)."""
    if arg not in VARIANTS:
        raise ValueError(f"unknown data variant {arg!r}; known: {sorted(VARIANTS)}")
    c = get_data_config()
    for key, value in VARIANTS[arg].items():
        setattr(c, key, value)
    return c
