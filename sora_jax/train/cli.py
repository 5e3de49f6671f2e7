"""`sora-jax train --config experiments/<stage>.py:<variant> --workdir DIR [--config.a.b=value ...]`."""
from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    train = subparsers.add_parser("train", help="train a stage from an experiment config (resumes in its workdir)")
    train.add_argument("--config", required=True, help="experiments/<stage>.py:<variant>")
    train.add_argument("--workdir", required=True)
    train.add_argument("--coordinator", default=None, help="host:port of process 0 (multi-process runs)")
    train.add_argument("--num-processes", type=int, default=None)
    train.add_argument("--process-id", type=int, default=None)
    train.set_defaults(func=run, accepts_overrides=True)


def initialize_distributed(args: argparse.Namespace) -> None:
    """`jax.distributed.initialize`: explicit for local multi-process runs, automatic on TPU pods/SLURM."""
    import jax

    if args.coordinator:
        # Cross-process collectives on CPU go through gloo (no effect on accelerator backends).
        # Nothing may touch the backend before initialize(), so no platform check here.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)
    elif args.num_processes:
        jax.distributed.initialize()


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    initialize_distributed(args)
    from sora_jax.train.config import load_config
    from sora_jax.train.loop import TrainingDiverged, train

    config = load_config(args.config, overrides)
    try:
        summary = train(config, args.workdir)
    except TrainingDiverged as error:
        print(f"sora-jax train: stopped: {error}", file=sys.stderr)
        return 3
    print(json.dumps(summary))
    return 0
