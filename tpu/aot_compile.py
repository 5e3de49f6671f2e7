"""Ahead-of-time compile a config's train step and print one JSON line: memory per device, FLOPs, fit.

    python tpu/aot_compile.py --config experiments/pretrain.py:stage1_images --topology v5p-64
    python tpu/aot_compile.py --config experiments/pretrain.py:stage1_images --topology v5p:2x4x4 \\
        --attention flash_xla --config.global_batch_size=128
    python tpu/aot_compile.py --config experiments/pretrain.py:tiny --cpu-devices 8 \\
        --config.mesh.fsdp=4 --config.mesh.tensor=2 --config.mesh.data=1

Targets:
  --topology T     compile-only devices of a TPU slice that need not exist: a topology (v5p:4x4x4,
                   v5e:4x4, v6e:8x8, v4:2x2x4) or an accelerator type (v5p-64, v5litepod-16, v6e-64).
                   Needs libtpu (`pip install -e ".[tpu]"`); runs on any Linux x86 host, no TPU.
                   `source tpu/env.sh` first to compile with the same LIBTPU_INIT_ARGS as training.
  --cpu-devices N  N simulated CPU devices (what the tests use).
  (neither)        the devices this process sees, e.g. on a TPU VM the attached slice's local chips.

--attention K picks the attention kernel to compile (default: the target's, splash on TPU). Today
splash cannot be partitioned over a multi-chip mesh (the tool says so); flash_xla measures the rest.

Nothing is allocated: parameters, optimizer state, EMA and the batch are abstract (see
sora_jax/train/aot.py). Exit status: 0 compiled (and fits, when an HBM size is known), 1 does not
fit, 2 bad input or the step cannot be compiled for this target.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root


def parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="experiments/<stage>.py:<variant>")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--topology", help="TPU topology (v5p:4x4x4) or accelerator type (v5p-64)")
    target.add_argument("--cpu-devices", type=int, help="compile for N simulated CPU devices")
    parser.add_argument("--hbm-gib", type=float, default=None,
                        help="per-device memory to check against (default per TPU generation: v4 32, v5e 16, "
                             "v5p 95, v6e 32; none for CPU)")
    parser.add_argument("--attention", default=None,
                        help="attention kernel to compile (default: the target's, splash on TPU)")
    args, overrides = parser.parse_known_args(argv)
    bad = [o for o in overrides if not o.startswith("--config.")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (config overrides are --config.a.b=value)")
    return args, overrides


def set_up_backend(args: argparse.Namespace) -> None:
    """Environment that must be set before jax is imported."""
    # No persistent compilation cache (tpu/env.sh sets one for training): a cached executable would
    # make compile_seconds meaningless, and compile-only TPU executables cannot be loaded back.
    os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    if args.cpu_devices:
        os.environ["JAX_PLATFORMS"] = "cpu"
        flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "xla_force_host_platform_device_count" not in f]
        os.environ["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={args.cpu_devices}"])
    elif args.topology:
        # The host only traces and drives the compiler, on its CPU (tpu/env.sh sets "tpu" for
        # training); libtpu is loaded for the topology alone and should not look for GCE metadata.
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")


def main(argv: list[str] | None = None) -> int:
    """Runs the compile and prints the report; returns the exit status."""
    args, overrides = parse(argv)
    set_up_backend(args)
    from sora_jax.train import aot  # noqa: PLC0415 (after the environment is set)

    try:
        config = aot.load_for_aot(args.config, overrides)
        target = aot.tpu_target(args.topology, args.hbm_gib) if args.topology else aot.local_target(args.hbm_gib)
        record = aot.compile_report(config, target, args.attention)
    except (ValueError, FileNotFoundError, aot.TopologyUnavailable) as error:
        print(f"aot_compile: error: {error}", file=sys.stderr)
        return 2
    except NotImplementedError as error:
        if "Mosaic kernels cannot be automatically partitioned" not in str(error):
            raise
        print("aot_compile: error: the attention kernel (Pallas/Mosaic splash) cannot be partitioned by XLA over a "
              "multi-device mesh: sora_jax/models/attention.py must run it under shard_map. To measure the rest "
              "meanwhile, compile with another kernel: --attention flash_xla", file=sys.stderr)
        return 2
    print(json.dumps(record))
    return 1 if record["fits"] is False else 0


if __name__ == "__main__":
    sys.exit(main())
