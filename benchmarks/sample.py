"""Sampling speed: seconds per sampling step and per generated second of video, side by side with
the transformer of diffusers' Wan pipeline (`WanTransformer3DModel`) at the same size and tokens.

    python -m benchmarks.sample [--preset S --depth 4] [--frames 5 --height 32 --width 32] [--steps 8]
                                [--cfg 3.0] [--fps 16] [--dtype float32] [--peak-tflops P] [--no-diffusers]

One clip of frames x height x width LATENTS (16 channels, patch 1x2x2, 64 text tokens) is sampled
with `steps` Euler steps; with `--cfg` != 1 every step runs the model twice (conditional and
caption-dropped), as both pipelines do. Ours is the generation sampler (`sora_jax.generate.sampling`:
one jitted `fori_loop` over steps, compiled before timing); theirs calls the transformer twice per
step under `torch.no_grad()` with as many threads as cores (`--torch-threads`: on a machine shared
with other jobs, 2 threads ran one forward 5x slower than 1 thread) and applies the same Euler update.
A generated second is `1 + (frames - 1) * time_factor` pixel frames at `--fps` (Wan: 4x, 16 fps).
FLOPs bound: step FLOPs (`sora_jax.models.dit.flops`, x2 with CFG) / peak (`--peak-tflops`, default
989 TFLOP/s bf16 on an H100-class GPU, none on CPU), reported against the measured step.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np
from flax import nnx

from benchmarks.common import hardware
from sora_jax.diffusion.flow import FlowConfig
from sora_jax.diffusion.rows import latent_segment, pack_rows
from sora_jax.diffusion.sampler import SamplerConfig
from sora_jax.generate.sampling import RowSampler
from sora_jax.models.dit.config import get_dit_config
from sora_jax.models.dit.flops import forward_flops
from sora_jax.models.dit.model import count_params
from sora_jax.models.text_to_video import TextToVideo

TEXT_TOKENS = 64
PEAK_TFLOPS = {"gpu": 989.0}  # H100 SXM bf16 dense; an H200 has the same compute peak


def one_clip_row(config, frames: int, height: int, width: int) -> dict:
    """A packed row holding one `(frames, height, width, in_channels)` latent clip and its caption."""
    rng = np.random.default_rng(0)
    latent = np.zeros((frames, height, width, config.in_channels), np.float32)
    segment = latent_segment(latent, config.patch, rng.integers(2, 250, TEXT_TOKENS).astype(np.int32))
    return pack_rows([segment], len(segment["tokens"]), TEXT_TOKENS, 1, config.patch_dim)


def time_ours(config, rows: dict, steps: int, cfg: float, repeats: int) -> tuple[float, int]:
    """Median seconds of one whole sampling run (steps inside one jitted loop) and the parameter count."""
    model = TextToVideo(config, rngs=nnx.Rngs(0))
    sampler = RowSampler(model, FlowConfig())
    sampler_config = SamplerConfig(steps=steps, method="euler", guidance=cfg)
    noise = np.random.default_rng(1).standard_normal(rows["tokens"].shape, dtype=np.float32)
    sampler(rows, noise, sampler_config)  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        sampler(rows, noise, sampler_config)  # returns host numpy: the run has finished
        times.append(time.perf_counter() - start)
    return float(np.median(times)), count_params(model.dit)


def time_diffusers(config, frames: int, height: int, width: int, steps: int, cfg: float, repeats: int,
                   threads: int | None = None):
    """Median seconds of `steps` Euler steps of diffusers' WanTransformer3DModel, or (None, None, reason)."""
    try:
        import torch
        from diffusers import WanTransformer3DModel
    except ImportError as error:
        return None, None, f"diffusers/torch not installed ({error.name}); run `make parity`"
    torch.manual_seed(0)
    torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
    model = WanTransformer3DModel(
        patch_size=config.patch, num_attention_heads=config.heads, attention_head_dim=config.head_dim,
        in_channels=config.in_channels, out_channels=config.in_channels, text_dim=config.text_dim,
        freq_dim=config.freq_dim, ffn_dim=config.mlp_dim, num_layers=config.depth,
    ).eval()
    text = torch.randn(1, TEXT_TOKENS, config.text_dim)
    empty = torch.zeros_like(text)
    sigmas = torch.linspace(1.0, 0.0, steps + 1)

    def run():
        x = torch.randn(1, config.in_channels, frames, height, width)
        with torch.no_grad():
            for i in range(steps):
                t = (sigmas[i] * 1000).reshape(1)
                velocity = model(x, t, text, return_dict=False)[0]
                if cfg != 1.0:
                    unconditional = model(x, t, empty, return_dict=False)[0]
                    velocity = unconditional + cfg * (velocity - unconditional)
                x = x + (sigmas[i + 1] - sigmas[i]) * velocity
        return x

    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), sum(p.numel() for p in model.parameters()), None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="S")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--frames", type=int, default=5, help="latent frames")
    parser.add_argument("--height", type=int, default=32, help="latent height")
    parser.add_argument("--width", type=int, default=32, help="latent width")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--fps", type=float, default=16.0)
    parser.add_argument("--time-factor", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--attention", default="auto")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--no-diffusers", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="PyTorch threads (default: all cores; 1 is faster on a contended machine)")
    args = parser.parse_args(argv)

    config = get_dit_config(args.preset, depth=args.depth, dtype=args.dtype, attention=args.attention)
    rows = one_clip_row(config, args.frames, args.height, args.width)
    tokens = int(rows["segment_ids"].size)
    ours_s, params = time_ours(config, rows, args.steps, args.cfg, args.repeats)
    passes = 1 if args.cfg == 1.0 else 2
    step_flops = passes * forward_flops(config, [tokens], [TEXT_TOKENS])
    video_seconds = (1 + (args.frames - 1) * args.time_factor) / args.fps
    peak = args.peak_tflops or PEAK_TFLOPS.get(jax.default_backend())
    step_s = ours_s / args.steps
    result = {
        "benchmark": "sample", "preset": args.preset, "depth": config.depth, "dim": config.dim, "params": params,
        "latent_shape": [args.frames, args.height, args.width, config.in_channels], "tokens": tokens,
        "steps": args.steps, "cfg": args.cfg, "model_passes_per_step": passes, "dtype": config.dtype,
        "video_seconds": round(video_seconds, 4), "backend": jax.default_backend(), "hardware": hardware(),
        "ours_step_s": round(step_s, 4), "ours_s_per_video_second": round(ours_s / video_seconds, 3),
        "ours_model_tflops": round(step_flops / step_s / 1e12, 4), "step_gflops": round(step_flops / 1e9, 2),
        "flops_bound_step_s": round(step_flops / (peak * 1e12), 6) if peak else None,
        "fraction_of_bound": round(step_flops / (peak * 1e12) / step_s, 4) if peak else None,
    }
    if not args.no_diffusers:
        theirs_s, theirs_params, reason = time_diffusers(config, args.frames, args.height, args.width, args.steps,
                                                         args.cfg, args.repeats, args.torch_threads)
        result["diffusers_params"] = theirs_params
        result["torch_threads"] = args.torch_threads or len(os.sched_getaffinity(0))
        result["diffusers_step_s"] = round(theirs_s / args.steps, 4) if theirs_s else None
        result["diffusers_s_per_video_second"] = round(theirs_s / video_seconds, 3) if theirs_s else None
        result["speedup_vs_diffusers"] = round(theirs_s / ours_s, 3) if theirs_s else None
        if reason:
            result["diffusers_skipped"] = reason
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
