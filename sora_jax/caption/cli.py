"""`sora-jax caption --workdir CAPTIONER_WORKDIR --data DATASET_DIR --out OUT_DIR`: re-caption a dataset.

Every record of every split gains a generated detailed caption (in `caption`; the original moves to
`caption_original`); rerunning resumes where a previous run stopped. See `sora_jax.caption.recaption`.
"""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Adds the `caption` subcommand to the `sora-jax` parser."""
    caption = subparsers.add_parser("caption", help="re-caption a dataset with a trained captioner (resumable)")
    caption.add_argument("--workdir", required=True, help="the captioner's training workdir")
    caption.add_argument("--data", required=True, help="dataset directory (DIR/<name>/<config>/<version>) or shapes_world:CONFIG")
    caption.add_argument("--out", required=True, help="output directory (the new dataset and its progress files)")
    caption.add_argument("--chunk", type=int, default=16, help="clips captioned between progress saves")
    caption.add_argument("--rows", type=int, default=4, help="packed rows decoded at once")
    caption.add_argument("--no-progress", action="store_true", help="no progress bar")
    caption.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sora_jax.caption.recaption import recaption  # noqa: PLC0415 (keeps `sora-jax --help` light)

    if args.chunk < 1 or args.rows < 1:
        raise ValueError("--chunk and --rows must be at least 1")
    recaption(args.workdir, args.data, args.out, chunk=args.chunk, rows=args.rows, show_progress=not args.no_progress)
    return 0
