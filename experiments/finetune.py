"""Finetuning a pretrained DiT: higher resolution, longer clips, a new domain, and image-to-video.

    sora-jax train --config experiments/finetune.py:tiny --workdir /tmp/finetune_tiny \\
        --config.init_from=/tmp/pretrain_tiny

Starts from the parameters (and EMA) of the latest checkpoint in `init_from` (a pretrain workdir)
with a fresh optimizer and a lower learning rate. Conditioning: with probability
`data.known_first_frame_prob` a video's first frame is given clean (t = 0, no loss), so the model
learns image-to-video and extension with the same known-frame mask the sampler uses.

Variants: `tiny` (CPU: Shapes World `small` clips up to 33 frames and 1536-token rows after the
tiny pretrain), `hires` (pod: 1B on latent datasets, 64k-token rows, v5p-256).
"""
from __future__ import annotations

import ml_collections

from experiments import pretrain


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    """Config of variant `arg` (see the module docstring)."""
    if arg == "tiny":
        c = pretrain.get_config("tiny")
        c.init_from = "/tmp/pretrain_tiny"
        c.steps, c.optim.learning_rate, c.optim.warmup_steps = 200, 3e-4, 10
        c.data.sources = ["shapes_world:small"]  # new domain: larger, longer clips
        c.data.seq_len = c.data.max_tokens_per_clip = 1536
        c.data.max_frames = 33
        c.data.known_first_frame_prob = 0.5
        c.sample_shape = (17, 48, 64)
        return c
    if arg == "hires":
        c = pretrain.get_config("stage3_hires")
        c.init_from = ""  # set to the stage-3 pretrain workdir (e.g. gs://bucket/pretrain/stage3)
        c.steps, c.optim.learning_rate, c.optim.warmup_steps = 20_000, 3e-5, 500
        c.data.seq_len = c.data.max_tokens_per_clip = 65536
        c.data.max_frames = 65
        c.data.known_first_frame_prob = 0.3
        c.mesh.update(dict(data=-1, fsdp=64, tensor=4))
        return c
    raise ValueError(f"unknown finetune variant {arg!r}; known: ['tiny', 'hires']")
