"""`sora-jax data ...`: build, ingest, inspect and preview datasets."""
from __future__ import annotations

import argparse
import json

import numpy as np


def register(subparsers) -> None:
    """Adds the `data` command and its subcommands to the top-level parser."""
    data = subparsers.add_parser("data", help="build, ingest and inspect datasets")
    sub = data.add_subparsers(dest="data_command", required=True)

    build = sub.add_parser("build", help="build a procedural dataset as ArrayRecord")
    build.add_argument("name", choices=["shapes_world"])
    build.add_argument("--config", default="tiny", help="tiny | small | large")
    build.add_argument("--out", required=True, help="TFDS data dir to write into")
    build.set_defaults(func=run_build)

    ingest = sub.add_parser("ingest", help="ingest a folder of real videos/images with captions")
    ingest.add_argument("--videos", required=True, help="folder of mp4/webm/mov/gif/png/jpg files")
    ingest.add_argument("--captions", default=None, help="captions.jsonl (else sidecar .txt files)")
    ingest.add_argument("--out", required=True)
    ingest.add_argument("--target-fps", type=float, default=8.0)
    ingest.add_argument("--max-seconds", type=float, default=None)
    ingest.add_argument("--max-side", type=int, default=None)
    ingest.add_argument("--max-aspect", type=float, default=8.0)
    ingest.set_defaults(func=run_ingest)

    stats = sub.add_parser("stats", help="packing statistics of the Grain pipeline over a dataset")
    stats.add_argument("--data", required=True, nargs="+", help="versioned dataset dir(s)")
    stats.add_argument("--split", default="train")
    stats.add_argument("--batches", type=int, default=8)
    stats.add_argument("--seq-len", type=int, default=1024)
    stats.add_argument("--batch-size", type=int, default=4)
    stats.set_defaults(func=run_stats)

    show = sub.add_parser("show", help="contact sheet and captioned GIFs of a dataset's clips")
    show.add_argument("--data", required=True)
    show.add_argument("--split", default="train")
    show.add_argument("--count", type=int, default=16)
    show.add_argument("--out", required=True)
    show.set_defaults(func=run_show)


def run_build(args: argparse.Namespace) -> int:
    from data_pipelines.shapes_world.builder import build

    path = build(args.out, args.config)
    print(json.dumps({"dataset_dir": path}))
    return 0


def run_ingest(args: argparse.Namespace) -> int:
    from data_pipelines.video_folder.ingest import IngestConfig, run_ingest as ingest

    config = IngestConfig(
        target_fps=args.target_fps, max_seconds=args.max_seconds, max_side=args.max_side, max_aspect=args.max_aspect
    )
    report = ingest(args.videos, args.out, captions_file=args.captions, config=config)
    summary = {k: report[k] for k in ("files_read", "records_written", "counts_by_reason", "dataset_dir")}
    print(json.dumps(summary))
    return 0


def packing_report(dataset_dirs: list[str], split: str, batches: int, seq_len: int, batch_size: int) -> dict:
    """Runs the pipeline over `batches` batches and returns its packing statistics."""
    from data_pipelines import config as data_config
    from data_pipelines import pipeline
    from data_pipelines.packing import PackingStats

    c = data_config.get_data_config()
    c.sources = list(dataset_dirs)
    c.seq_len = c.max_tokens_per_clip = seq_len
    c.batch_size = batch_size
    stats = PackingStats()
    for _, batch in zip(range(batches), pipeline.build(c, split=split)):
        stats.add(batch)
    return stats.summary() | {"seq_len": seq_len, "batch_size": batch_size, "patch": list(c.patch)}


def run_stats(args: argparse.Namespace) -> int:
    print(json.dumps(packing_report(args.data, args.split, args.batches, args.seq_len, args.batch_size)))
    return 0


def read_clips(dataset_dir: str, split: str, count: int) -> list[dict]:
    """The first `count` records of a dataset split, decoded to clips."""
    from data_pipelines.sources import DecodeOptions, clip_decoder, open_source

    source, name = open_source(dataset_dir, split)
    decode = clip_decoder(name, DecodeOptions())
    return [decode(source[i]) for i in range(min(count, len(source)))]


def run_show(args: argparse.Namespace) -> int:
    from data_pipelines.preview import write_previews

    clips = read_clips(args.data, args.split, args.count)
    paths = write_previews(clips, args.out)
    print(json.dumps(paths | {"clips": len(clips), "frames": int(np.sum([len(c["video"]) for c in clips]))}))
    return 0

