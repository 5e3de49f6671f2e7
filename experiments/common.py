"""Fields every stage's config shares (trainer, optimizer, mesh); stage files override them."""
from __future__ import annotations

import ml_collections

from data_pipelines.config import get_data_config


def base_config(task: str) -> ml_collections.ConfigDict:
    """Defaults for the one trainer; see sora_jax/train/config.py for what each field must be."""
    c = ml_collections.ConfigDict()
    c.task = task
    c.seed = 0
    c.init_from = ""  # workdir of an earlier stage whose parameters start this one
    c.init_new_params = False  # parameters init_from lacks keep their initialisation (else an error)
    c.steps = 1000
    c.global_batch_size = 4
    c.data_shards = -1  # one per process; set explicitly to compare runs across process counts
    c.log_every = 10
    c.checkpoint_every = 200
    c.keep_checkpoints = 3
    c.async_checkpoints = True
    c.eval_every = 0
    c.sample_every = 0
    c.max_bad_steps = 10
    c.progress = True
    c.peak_tflops = ml_collections.config_dict.placeholder(float)  # for MFU where the backend has no entry
    c.mesh = ml_collections.ConfigDict({"data": -1, "fsdp": 1, "tensor": 1, "sequence": 1})
    c.rules = "fsdp"
    c.optim = ml_collections.ConfigDict(dict(
        learning_rate=3e-4, warmup_steps=100, schedule="cosine", min_lr_ratio=0.1, b1=0.9, b2=0.99, eps=1e-8,
        weight_decay=0.01, clip_norm=1.0, ema_decay=0.999,
    ))
    c.data = get_data_config()
    return c
