"""Segment-masked attention kernels: agreement with the reference, and forward+backward speed.

    python -m benchmarks.attention [--length 16384 --segments 4 --heads 12 --head-dim 128]
                                   [--implementations cudnn,cudnn_packed,flash_xla] [--dtype bfloat16]

Correctness: at `--check-length` tokens, two rows (row 0: three segments of unequal length then
padding; row 1: one full-length segment) in `--dtype`, each implementation's output and query/key/
value gradients against `reference_attention` in float32 on the same (rounded) inputs, over real
query rows; max abs errors are reported. Speed: one row of `--length` tokens split into `--segments`
equal segments, jitted forward+backward (gradient of a weighted sum), median of `--repeats` after a
warm-up. Useful FLOPs count only in-segment blocks (forward 4 n^2 d per head and segment, backward
2.5x that, as FlashAttention-2 counts them), so a kernel that skips cross-segment blocks is not
credited for work it did not need. An implementation that fails reports its error instead.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import hardware, top_device_ops
from sora_jax.models.attention import attention, reference_attention

DTYPES = {"bfloat16": jnp.bfloat16, "float16": jnp.float16, "float32": jnp.float32}


def check_rows(length: int, heads: int, head_dim: int, dtype, seed: int = 0):
    """Two rows: three unequal segments then padding, and one full-length segment."""
    rng = np.random.default_rng(seed)
    q, k, v = (jnp.asarray(rng.normal(size=(2, length, heads, head_dim)), dtype) for _ in range(3))
    ids = np.zeros((2, length), np.int32)
    a, b, c = length // 2, length // 4, length // 8
    ids[0, :a], ids[0, a : a + b], ids[0, a + b : a + b + c] = 1, 2, 3
    ids[1] = 1
    return q, k, v, jnp.asarray(ids)


def errors(implementation: str, q, k, v, ids) -> dict:
    """Max abs error of output and q/k/v gradients against the float32 reference, real rows only."""
    real = (ids > 0)[..., None, None]
    weights = jax.random.normal(jax.random.key(1), q.shape, jnp.float32) * real

    def loss(fn, q_, k_, v_):
        return jnp.sum(fn(q_, k_, v_, ids, ids).astype(jnp.float32) * weights)

    def run(fn, *args):
        out = jax.jit(lambda *a: fn(*a, ids, ids))(*args)
        grads = jax.jit(jax.grad(lambda *a: loss(fn, *a), argnums=(0, 1, 2)))(*args)
        return out, grads

    f32 = [x.astype(jnp.float32) for x in (q, k, v)]
    ref_out, ref_grads = run(reference_attention, *f32)
    out, grads = run(lambda *a: attention(*a, implementation=implementation), q, k, v)
    mask = np.asarray(ids > 0)
    result = {"out": float(np.abs(np.asarray(out, np.float32) - np.asarray(ref_out))[mask].max())}
    for name, g, r in zip("qkv", grads, ref_grads):
        result[f"d{name}"] = float(np.abs(np.asarray(g, np.float32) - np.asarray(r)).max())
    result["ref_out_scale"] = float(np.abs(np.asarray(ref_out))[mask].max())
    return result


def time_fwd_bwd(implementation: str, length: int, segments: int, heads: int, head_dim: int, dtype,
                 repeats: int, profile_dir: str | None = None):
    """Median seconds of a jitted fwd+bwd over one row of equal segments, and with `profile_dir`
    the costliest ops of one more traced call (else None)."""
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.normal(size=(1, length, heads, head_dim)), dtype) for _ in range(3))
    ids = jnp.asarray(np.repeat(np.arange(1, segments + 1), length // segments)[None].astype(np.int32))

    @jax.jit
    def step(q, k, v):
        def loss(q, k, v):
            return jnp.sum(attention(q, k, v, ids, ids, implementation).astype(jnp.float32))
        return jax.grad(loss, argnums=(0, 1, 2))(q, k, v)

    jax.block_until_ready(step(q, k, v))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(q, k, v))
        times.append(time.perf_counter() - start)
    if not profile_dir:
        return float(np.median(times)), None
    with jax.profiler.trace(profile_dir):
        jax.block_until_ready(step(q, k, v))
    return float(np.median(times)), top_device_ops(profile_dir, 8)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--length", type=int, default=16384)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head-dim", type=int, default=128)
    parser.add_argument("--dtype", default="bfloat16", choices=sorted(DTYPES))
    parser.add_argument("--check-length", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--implementations", default="auto")
    parser.add_argument("--profile", default=None, help="trace one more step of each here; report top ops")
    args = parser.parse_args(argv)
    if args.length % args.segments:
        raise SystemExit(f"--length {args.length} must be a multiple of --segments {args.segments}")

    dtype = DTYPES[args.dtype]
    n = args.length // args.segments
    fwd_flops = 4.0 * args.heads * args.head_dim * n * n * args.segments
    result = {"benchmark": "attention", "backend": jax.default_backend(), "hardware": hardware(),
              "length": args.length, "segments": args.segments, "heads": args.heads, "head_dim": args.head_dim,
              "dtype": args.dtype, "check_length": args.check_length, "implementations": {}}
    check = check_rows(args.check_length, args.heads, args.head_dim, dtype)
    for implementation in args.implementations.split(","):
        entry = {}
        try:
            entry["max_abs_error"] = errors(implementation, *check)
            profile = args.profile and os.path.join(args.profile, implementation)
            seconds, top = time_fwd_bwd(implementation, args.length, args.segments, args.heads, args.head_dim, dtype,
                                        args.repeats, profile)
            if top:
                entry["top_ops_ms"] = top
            entry["fwd_bwd_ms"] = round(seconds * 1e3, 3)
            entry["useful_tflops"] = round(3.5 * fwd_flops / seconds / 1e12, 2)
        except Exception as error:  # noqa: BLE001 - a kernel the platform lacks is reported, not fatal
            entry["error"] = f"{type(error).__name__}: {str(error)[:400]}"
        result["implementations"][implementation] = entry
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
