"""The evaluation probe: reads a clip's colour slots (present, shape, motion, direction).

    sora-jax train --config experiments/probe.py:tiny --workdir /tmp/probe_tiny

Trains on still-camera Shapes World clips drawn on the fly (1-17 frames, 32-96 px, 1-3
objects; `sora_jax/eval/probe_data.py`), resampled to 9 frames of 48 x 48 (letterboxed). At the
end it measures the probe on 1024 held-out clips and writes `probe_accuracy.json` to the workdir;
`sora-jax eval --probe-workdir` trusts the probe's metrics only at >= 98% accuracy (see
docs/eval.md for the figures and time this variant reaches on a 2-core CPU).
Variants: `tiny` (CPU) and `test` (a few seconds, for the test suite; not accurate).
"""
from __future__ import annotations

import ml_collections

from experiments.common import base_config


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    """Config of variant `arg` (see the module docstring)."""
    c = base_config("probe")
    c.model = ml_collections.ConfigDict(dict(frames=9, size=48, widths=(16, 32, 48, 64), embed_dim=64, max_objects=3,
                                             glimpse=16, glimpse_widths=(16, 32, 64), track_frames=17))
    c.data = ml_collections.ConfigDict(dict(seed=0))
    c.eval_clips = 1024
    c.optim.ema_decay = 0.0
    c.optim.weight_decay = 0.0
    if arg == "tiny":
        c.steps, c.global_batch_size, c.log_every = 2000, 32, 50
        c.checkpoint_every, c.eval_every, c.sample_every = 500, 250, 2000
        c.optim.learning_rate, c.optim.warmup_steps = 2e-3, 100
        return c
    if arg == "test":
        c.model.update(dict(size=32, widths=(16, 32, 32), embed_dim=32, glimpse_widths=(8, 16)))
        c.steps, c.global_batch_size, c.log_every, c.eval_clips = 40, 16, 10, 64
        c.checkpoint_every, c.eval_every, c.sample_every = 40, 40, 40
        c.optim.learning_rate, c.optim.warmup_steps = 3e-3, 5
        c.progress, c.async_checkpoints = False, False
        return c
    raise ValueError(f"unknown probe variant {arg!r}; known: ['tiny', 'test']")
