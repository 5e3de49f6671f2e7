"""Text-to-video pretraining of the DiT, in the staged recipe the field uses.

    sora-jax train --config experiments/pretrain.py:tiny --workdir /tmp/pretrain_tiny

Variants:
- `tiny`: CPU, minutes. Tiny DiT on Shapes World `tiny` in pixel space (patch 1x8x8), 1024-token
  rows; the flow loss falls from ~2 to well under 1 within 300 steps.
- `tiny_latent`: CPU, minutes. The same tiny DiT on VAE latents (patch 1x2x2 over 16 channels), what
  `make demo` trains; point it at a dataset written by `sora-jax encode`:
      sora-jax train --config experiments/pretrain.py:tiny_latent --workdir /tmp/dit_tiny \
          --config.data.sources="['/tmp/latents_demo']"
- `tiny_latent_minilm`: `tiny_latent` conditioned on the frozen MiniLM-L6 encoder (384-wide
  embeddings, prompts cut at 256 tokens) instead of the tiny trainable one. The embeddings are
  computed once, when the latents are encoded, and read from the records:
      sora-jax encode --vae-workdir /tmp/vae_tiny --data shapes_world:demo --out /tmp/latents_minilm \
          --text-encoder minilm
      sora-jax train --config experiments/pretrain.py:tiny_latent_minilm --workdir /tmp/dit_minilm \
          --config.data.sources="['/tmp/latents_minilm']"
- `stage1_images`, `stage2_joint`, `stage3_hires`: pod-scale stages on VAE latents (patch 1x2x2):
  images and short low-resolution clips first, then images and videos jointly, then higher
  resolution and longer clips. Mesh and batch for TPU v5p-64 (stage 1/2) and v5p-128 (stage 3); set
  `data.sources` to latent datasets written by `sora-jax encode`.
"""
from __future__ import annotations

import ml_collections

from experiments.common import base_config

STAGES = {
    # name: (preset, seq_len, max_frames (latent), images fraction via short_caption_prob, batch, mesh)
    # Batches sized by tpu/aot_compile.py (flash_xla attention, per-chip HBM of 95 GiB):
    # stage1 on v5p-64: batch 128 -> 35.1 GiB (1024 needed 212 GiB);
    # stage2 on v5p-64: batch 64 (1M tokens/step) -> 63.3 GiB (128 needed 102.8 GiB, 512 409 GiB);
    # stage3 on v5p-128 (64 chips, fsdp 16 x tensor 4): batch 32 (1M tokens/step) -> 60.1 GiB.
    "stage1_images": dict(seq_len=4096, max_frames=5, global_batch_size=128, mesh=dict(data=-1, fsdp=16)),
    "stage2_joint": dict(seq_len=16384, max_frames=17, global_batch_size=64, mesh=dict(data=-1, fsdp=32)),
    "stage3_hires": dict(seq_len=32768, max_frames=33, global_batch_size=32, mesh=dict(data=-1, fsdp=16, tensor=4)),
}


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    """Config of variant `arg` (see the module docstring)."""
    c = base_config("dit")
    c.model = ml_collections.ConfigDict({"preset": "tiny", "in_channels": 16, "overrides": {}})
    c.flow = ml_collections.ConfigDict(dict(
        logit_mean=0.0, logit_std=1.0, shift=True, shift_base=0.5, shift_max=1.15, shift_base_tokens=256,
        shift_max_tokens=4096, loss_averaging="segment", text_dropout=0.1))
    c.text_max_len = 256
    c.sample_prompts = ["a red circle moves from left to right", "a blue square falls and bounces on the floor"]
    c.sample_shape = (9, 32, 32)  # frames, height, width in pixels (pixel mode)
    c.sample_steps = 20
    if arg == "tiny":
        c.steps, c.global_batch_size, c.log_every = 300, 4, 10
        c.checkpoint_every, c.eval_every, c.sample_every = 100, 100, 300
        c.optim.learning_rate, c.optim.warmup_steps, c.optim.ema_decay = 1e-3, 20, 0.99
        c.data.sources = ["shapes_world:tiny"]
        c.data.seq_len = c.data.max_tokens_per_clip = 1024
        c.data.max_frames, c.data.max_text_tokens, c.data.text_len, c.data.packing_bins = 17, 192, 1024, 16
        return c
    if arg == "tiny_latent":
        c.steps, c.global_batch_size, c.log_every = 600, 8, 20
        c.checkpoint_every, c.eval_every, c.sample_every = 200, 200, 0
        c.optim.learning_rate, c.optim.warmup_steps, c.optim.ema_decay = 1e-3, 30, 0.99
        c.data.mode, c.data.patch, c.data.temporal_factor = "latent", (1, 2, 2), 4
        c.data.sources = []  # the latent dataset written by `sora-jax encode`
        c.data.seq_len = c.data.max_tokens_per_clip = 512
        c.data.max_frames, c.data.max_text_tokens, c.data.text_len, c.data.packing_bins = 5, 192, 768, 16
        c.sample_shape = (17, 64, 64)
        return c
    if arg == "tiny_latent_minilm":
        c = get_config("tiny_latent")
        c.data.text_encoder = "minilm"  # DiT text_dim becomes MiniLM's 384 (sora_jax.train.tasks.DiTTask)
        c.data.max_text_tokens = 256  # MiniLM's max_len: what `encode --text-encoder minilm` keeps (text_max_len is unused)
        return c
    if arg not in STAGES:
        raise ValueError(f"unknown pretrain variant {arg!r}; known: "
                         f"{['tiny', 'tiny_latent', 'tiny_latent_minilm', *STAGES]}")
    stage = STAGES[arg]
    c.model.preset = "1B"
    c.model.overrides = {"remat": "dots_no_batch", "dtype": "bfloat16"}
    c.steps, c.global_batch_size = 200_000, stage["global_batch_size"]
    c.mesh.update(stage["mesh"])
    c.rules = "fsdp_tp" if stage["mesh"].get("tensor", 1) > 1 else "fsdp"
    c.data.mode, c.data.patch, c.data.temporal_factor = "latent", (1, 2, 2), 4
    c.data.sources = []  # latent datasets from `sora-jax encode`
    c.data.seq_len = c.data.max_tokens_per_clip = stage["seq_len"]
    c.data.max_frames, c.data.worker_count, c.data.packing_bins = stage["max_frames"], 8, 256
    c.text_max_len, c.data.max_text_tokens, c.data.text_len = 512, 256, 4096
    c.optim.learning_rate, c.optim.warmup_steps = 1e-4, 2000
    c.checkpoint_every, c.eval_every, c.sample_every = 1000, 1000, 5000
    return c
