"""DiT train-step throughput and MFU, side by side with diffusers' WanTransformer3DModel.

    python -m benchmarks.dit_step [--preset S --depth 4] [--frames 4 --height 32 --width 32] [--batch 2]

Both models get the same width, depth, heads, MLP width and tokens: one clip of
frames x height x width latent (16 channels, patch 1x2x2) per row, 64 text tokens, fp32, one full
train step (forward, backward, AdamW) on the CPU (PyTorch with as many threads as cores). Ours also
runs a packed row of several clips of the same total tokens, where attention is per segment.
MFU = model FLOPs/s / peak (`--peak-tflops`, default: 989 on an H100 in bf16; unknown on CPU).
The 1-minute load average before and after is reported: on a shared CPU other jobs slow both
models, PyTorch's OpenMP threads far more than XLA's, so compare ratios taken at low load.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import time

import jax
import numpy as np
import optax
from flax import nnx

from benchmarks.common import hardware, top_device_ops
from sora_jax import parallel
from sora_jax.diffusion.flow import FlowConfig, flow_loss
from sora_jax.diffusion.rows import latent_segment, pack_rows
from sora_jax.models.dit.config import get_dit_config
from sora_jax.models.dit.flops import train_step_flops
from sora_jax.models.dit.model import count_params
from sora_jax.models.text_to_video import TextToVideo
from sora_jax.train import step as train_step

TEXT_TOKENS = 64


def packed_batch(shapes, batch: int, seq_len: int, channels: int, patch) -> dict:
    rng = np.random.default_rng(0)
    segments = [latent_segment(rng.normal(size=(*s, channels)).astype(np.float32), patch,
                               rng.integers(2, 250, TEXT_TOKENS).astype(np.int32)) for s in shapes]
    rows = pack_rows(segments, seq_len, TEXT_TOKENS * len(shapes), len(shapes), int(np.prod(patch)) * channels)
    assert len(rows["tokens"]) == 1, "benchmark shapes must fit one row"
    return {k: np.repeat(v, batch, axis=0) for k, v in rows.items() if k != "placement"}


def time_ours(config, batch: dict, steps: int, profile_dir: str | None = None):
    """Median seconds of our jitted train step (after compile and one warm-up step), the parameter
    count, with `profile_dir` the costliest ops of two more traced steps (else None), and the cuDNN
    attention calls in the lowered step (`forward` counts a remat recomputation in the backward)."""
    mesh, rules = parallel.make_mesh({"data": -1}), parallel.get_rules("dp")
    tx = optax.adamw(1e-4)
    graphdef, state, shardings = train_step.create_train_state(
        lambda: TextToVideo(config, rngs=nnx.Rngs(0)), tx, mesh, rules)
    batch_sh = train_step.batch_shardings(batch, mesh, rules)
    step = train_step.make_train_step(graphdef, functools.partial(flow_loss, c=FlowConfig()), tx, shardings,
                                      batch_sh, mesh, rules)
    device_batch = {k: jax.device_put(v, batch_sh[k]) for k, v in batch.items()}
    times = []
    for i in range(steps + 2):
        start = time.perf_counter()
        state, metrics = step(state, device_batch, jax.random.key(i))
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - start)
    params, top_ops = count_params(nnx.merge(graphdef, state.params).dit), None
    if profile_dir:
        with jax.profiler.trace(profile_dir):
            for i in range(2):
                state, metrics = step(state, device_batch, jax.random.key(100 + i))
            jax.block_until_ready(metrics["loss"])
        top_ops = top_device_ops(profile_dir, 25)
    hlo = step.lower(state, device_batch, jax.random.key(0)).as_text()  # scanned: one layer's calls
    calls = re.findall(r"__cudnn\$fmha(\w*)", hlo)  # StableHLO: custom_call @__cudnn$fmhaSoftmax...
    kernels = {"forward": sum(not c.endswith("Backward") for c in calls), "backward": sum(c.endswith("Backward") for c in calls)}
    return float(np.median(times[2:])), params, top_ops, kernels


def time_diffusers(config, frames: int, height: int, width: int, batch: int, steps: int):
    """Median seconds of a diffusers WanTransformer3DModel train step, or (None, None, reason)."""
    try:
        import torch
        from diffusers import WanTransformer3DModel
    except ImportError as error:
        return None, None, f"diffusers/torch not installed ({error.name}); run `make parity`"
    torch.manual_seed(0)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    model = WanTransformer3DModel(
        patch_size=config.patch, num_attention_heads=config.heads, attention_head_dim=config.head_dim,
        in_channels=config.in_channels, out_channels=config.in_channels, text_dim=config.text_dim,
        freq_dim=config.freq_dim, ffn_dim=config.mlp_dim, num_layers=config.depth,
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, config.in_channels, frames, height, width)
    text = torch.randn(batch, TEXT_TOKENS, config.text_dim)
    t = torch.randint(0, 1000, (batch,))
    target = torch.randn_like(x)
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        loss = torch.nn.functional.mse_loss(model(x, t, text, return_dict=False)[0], target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[2:])), sum(p.numel() for p in model.parameters()), None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="S")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--attention", default="auto")
    parser.add_argument("--remat", default="none", help="DiT remat policy (none, full, dots, dots_no_batch, dots_attention)")
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--no-diffusers", action="store_true")
    parser.add_argument("--profile", default=None, help="trace 2 extra single-clip steps here; report top ops")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    config = get_dit_config(args.preset, depth=args.depth, dtype=args.dtype, attention=args.attention,
                            remat=args.remat)
    pt, ph, pw = config.patch
    grid = (args.frames // pt, args.height // ph, args.width // pw)
    tokens = int(np.prod(grid))
    single = packed_batch([(args.frames, args.height, args.width)], args.batch, tokens, config.in_channels, config.patch)
    quarter = (args.frames, args.height // 2, args.width // 2)  # 4 clips of a quarter the tokens each
    packed = packed_batch([quarter] * 4, args.batch, tokens, config.in_channels, config.patch)

    ours_s, ours_params, top_ops, kernels = time_ours(config, single, args.steps, args.profile)
    packed_s, _, _, _ = time_ours(config, packed, args.steps)
    flops_single = train_step_flops(config, [([tokens], [TEXT_TOKENS])] * args.batch)
    flops_packed = train_step_flops(config, [([tokens // 4] * 4, [TEXT_TOKENS] * 4)] * args.batch)
    peak = args.peak_tflops or {"gpu": 989.0}.get(jax.default_backend())
    result = {
        "benchmark": "dit_step", "preset": args.preset, "depth": config.depth, "dim": config.dim,
        "params": ours_params, "tokens_per_row": tokens, "batch": args.batch, "dtype": config.dtype,
        "backend": jax.default_backend(), "hardware": hardware(), "attention": args.attention, "remat": config.remat,
        "ours_step_s": round(ours_s, 4), "ours_tokens_per_s": round(args.batch * tokens / ours_s, 1),
        "ours_model_tflops": round(flops_single / ours_s / 1e12, 4),
        "ours_mfu": round(flops_single / ours_s / 1e12 / peak, 4) if peak else None,
        "packed4_step_s": round(packed_s, 4), "packed4_tokens_per_s": round(args.batch * tokens / packed_s, 1),
        "packed4_model_tflops": round(flops_packed / packed_s / 1e12, 4),
    }
    if args.profile:
        result["top_ops_ms_per_2_steps"] = top_ops
    if any(kernels.values()):
        result["cudnn_attention_calls_per_layer"] = kernels
    if not args.no_diffusers:
        theirs_s, theirs_params, reason = time_diffusers(config, args.frames, args.height, args.width, args.batch, args.steps)
        result["diffusers_params"] = theirs_params
        result["diffusers_step_s"] = round(theirs_s, 4) if theirs_s else None
        result["diffusers_tokens_per_s"] = round(args.batch * tokens / theirs_s, 1) if theirs_s else None
        result["speedup_vs_diffusers"] = round(theirs_s / ours_s, 3) if theirs_s else None
        result["target_speedup"] = 1.5
        if reason:
            result["diffusers_skipped"] = reason
    result["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
