"""The `sora-jax` command: one entry point, a subcommand per stage.

    sora-jax data build shapes_world --config small --out DIR
    sora-jax data ingest --videos DIR [--captions FILE] --out DIR
    sora-jax data stats --data DATASET_DIR
    sora-jax data show --data DATASET_DIR --out DIR
    sora-jax train --config experiments/pretrain.py:tiny --workdir DIR [--config.steps=100 ...]
    sora-jax encode --vae-workdir DIR --data DIR --out DIR
    sora-jax caption --workdir CAPTIONER_DIR --data DIR --out DIR
    sora-jax generate --workdir DIR --prompt "..." --frames N --height H --width W --out FILE
    sora-jax eval --workdir DIR --probe-workdir DIR [--vae-workdir DIR] --out DIR [--compare DIR2]
    sora-jax demo --out DIR

Bad input ends with a one-line error and exit status 2, not a traceback.
"""
from __future__ import annotations

import argparse
import sys

from data_pipelines import cli as data_cli
from sora_jax import demo
from sora_jax.caption import cli as caption_cli
from sora_jax.encode import cli as encode_cli
from sora_jax.eval import cli as eval_cli
from sora_jax.generate import cli as generate_cli
from sora_jax.train import cli as train_cli


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sora-jax", description=__doc__.split("\n")[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    data_cli.register(subparsers)
    train_cli.register(subparsers)
    encode_cli.register(subparsers)
    caption_cli.register(subparsers)
    generate_cli.register(subparsers)
    eval_cli.register(subparsers)
    demo.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parses `argv` and runs the chosen subcommand; returns the exit status."""
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args, extra) if getattr(args, "accepts_overrides", False) else args.func(args)
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        print(f"sora-jax {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
