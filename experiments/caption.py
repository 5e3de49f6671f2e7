"""The caption stage: a captioner (packed patches -> detailed caption) and a prompt upsampler
(short prompt -> detailed caption), both trained with the one trainer.

    sora-jax train --config experiments/caption.py:tiny --workdir /tmp/captioner_tiny
    python -m sora_jax.caption.metrics --workdir /tmp/captioner_tiny --data shapes_world:tiny
    sora-jax caption --workdir /tmp/captioner_tiny --data DATASET_DIR --out OUT_DIR
    sora-jax train --config experiments/caption.py:upsampler_tiny --workdir /tmp/upsampler_tiny
    python -m sora_jax.caption.upsampler --workdir /tmp/upsampler_tiny --evaluate 500

Variants:
- `tiny`: CPU. Captioner (dim 128, 3 encoder + 2 decoder blocks, 1.3M parameters) on 2,000 clips of
  the Shapes World `tiny` mixture in pixel space (patch 2x8x8, 512-token rows, clips sized to <= 256
  tokens), word-level caption vocabulary, linear patch stem. The conv-stem run on live data in
  docs/caption.md adds `model.stem=conv`, `data.sources=['shapes_world_live:tiny']`,
  `data.seq_len=1024`, `data.max_tokens_per_clip=512`. See docs/caption.md for the loss, held-out attribute agreement and CPU time
  it reaches. Measured, off by default (docs/caption.md): `model.frame_position` (placement),
  `model.concept_weight` (a word-detection head on pooled memory), `model.identity_init` (encoder
  blocks start as the identity), `model.stem_motion` (the conv stem also reads frame differences),
  `model.memory_summary` (the decoder also reads each clip's max-pooled memory).
- `base_v5p`, `base_v5e`: pod scale on VAE latents (patch 1x2x2, 16 channels, 4096-token rows),
  dim 768, 12 + 6 blocks, bf16; global batch 256 rows on TPU v5p-32 (FSDP over 16 chips) or
  v5e-64 (FSDP over 64 chips, 16 GiB HBM each). Set `data.sources` to latent datasets written by
  `sora-jax encode` (Shapes World `large` or video_folder datasets with detailed captions).
- `upsampler_tiny`: CPU. Seq2seq (byte encoder over the short prompt, word decoder) on (short,
  detailed) caption pairs generated on the fly from Shapes World seeds; attribute preservation on
  held-out seeds in docs/caption.md.
- `upsampler_base`: accelerator scale of the same (dim 512, 6 + 6 blocks).
"""
from __future__ import annotations

import ml_collections

from experiments.common import base_config

POD = {
    # name: (global batch, mesh); both fit with wide margins (a 190M-parameter model).
    "base_v5p": dict(global_batch_size=256, mesh=dict(data=-1, fsdp=16)),
    "base_v5e": dict(global_batch_size=256, mesh=dict(data=-1, fsdp=64)),
}


def _captioner_model(**overrides) -> ml_collections.ConfigDict:
    model = dict(tokenizer="words", dim=128, heads=4, mlp_dim=512, encoder_depth=3, decoder_depth=2,
                 max_caption_len=128, dtype="float32", attention="auto", in_channels=16,
                 stem="linear", stem_widths=(16, 32, 64, 128), stem_kernel=2, stem_motion=False,
                 frame_position=False, concept_weight=0.0, identity_init=False, memory_summary=False)
    return ml_collections.ConfigDict(model | overrides)


def captioner_config(arg: str) -> ml_collections.ConfigDict:
    """The captioner variants (`tiny`, `base_v5p`, `base_v5e`)."""
    c = base_config("captioner")
    c.model = _captioner_model()
    c.sample_clips = 32  # held-out clips captioned (and scored) at each sample step
    d = c.data
    d.caption_key, d.short_caption_prob = "caption", 0.0  # always the detailed caption
    if arg == "tiny":
        c.model.max_caption_len = 112
        c.steps, c.global_batch_size, c.log_every = 2500, 4, 50
        c.checkpoint_every, c.eval_every, c.sample_every = 500, 500, 500
        c.optim.update(learning_rate=1e-3, warmup_steps=100, ema_decay=0.0, weight_decay=0.01)
        d.sources = ["shapes_world_n:tiny:2000"]  # the tiny mixture with 2000 training clips
        d.patch, d.seq_len, d.max_tokens_per_clip, d.max_frames = (2, 8, 8), 512, 256, 17
        d.max_text_tokens, d.text_len, d.max_segments_per_row, d.packing_bins = 1024, 4096, 6, 16
        return c
    if arg not in POD:
        raise ValueError(f"unknown caption variant {arg!r}; known: {['tiny', *POD, 'upsampler_tiny', 'upsampler_base']}")
    c.model = _captioner_model(dim=768, heads=12, mlp_dim=3072, encoder_depth=12, decoder_depth=6,
                               max_caption_len=256, dtype="bfloat16")
    c.steps, c.global_batch_size = 100_000, POD[arg]["global_batch_size"]
    c.mesh.update(POD[arg]["mesh"])
    c.optim.update(learning_rate=3e-4, warmup_steps=2000)
    c.checkpoint_every, c.eval_every, c.sample_every = 2000, 2000, 10_000
    d.mode, d.patch, d.temporal_factor, d.sources = "latent", (1, 2, 2), 4, []
    d.seq_len = d.max_tokens_per_clip = 4096
    d.max_frames, d.max_text_tokens, d.text_len, d.max_segments_per_row = 17, 1024, 16384, 16
    d.worker_count, d.packing_bins = 8, 256
    return c


def upsampler_config(arg: str) -> ml_collections.ConfigDict:
    """The prompt-upsampler variants (`upsampler_tiny`, `upsampler_base`)."""
    c = base_config("upsampler")
    c.model = ml_collections.ConfigDict(dict(tokenizer="words", dim=128, heads=4, mlp_dim=512, encoder_depth=2,
                                             decoder_depth=2, max_prompt_len=64, max_caption_len=128,
                                             dtype="float32", attention="xla"))
    # Pairs come from Shapes World seeds: train seeds from 0, held-out seeds from the builder's
    # validation offset, each clip drawn from the tiny mixture's shapes and lengths.
    c.data = ml_collections.ConfigDict(dict(world="tiny", max_objects=3, seed=0))
    c.sample_prompts = ["a red circle", "a blue square and a yellow star", "a green triangle, a white hexagon and a pink circle"]
    if arg == "upsampler_tiny":
        c.steps, c.global_batch_size, c.log_every = 600, 32, 50
        c.checkpoint_every, c.eval_every, c.sample_every = 300, 300, 300
        c.optim.update(learning_rate=1e-3, warmup_steps=100, ema_decay=0.0)
        return c
    if arg != "upsampler_base":
        raise ValueError(f"unknown caption variant {arg!r}")
    c.model.update(dim=512, heads=8, mlp_dim=2048, encoder_depth=6, decoder_depth=6, max_prompt_len=128, max_caption_len=256,
                   dtype="bfloat16", attention="auto")
    c.data.world, c.data.max_objects = "large", 6
    c.steps, c.global_batch_size = 50_000, 512
    c.mesh.update(dict(data=-1, fsdp=8))
    c.optim.update(learning_rate=3e-4, warmup_steps=1000)
    c.checkpoint_every, c.eval_every, c.sample_every = 2000, 2000, 10_000
    return c


def get_config(arg: str = "tiny") -> ml_collections.ConfigDict:
    """Config of variant `arg` (see the module docstring)."""
    return upsampler_config(arg) if arg.startswith("upsampler") else captioner_config(arg)
