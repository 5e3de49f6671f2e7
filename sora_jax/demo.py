"""`sora-jax demo` (what `make demo` runs): the system on its embedded data, end to end so far.

Builds the tiny Shapes World, runs the Grain patch-n-pack pipeline over it and prints the packing
statistics, and writes a contact sheet and captioned GIFs of sample clips to the output folder.
"""
from __future__ import annotations

import argparse
import json
import os
import time


def register(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="build tiny Shapes World, pack it, write previews")
    demo.add_argument("--out", default="demo_out", help="output folder")
    demo.add_argument("--config", default="tiny", help="Shapes World config to build")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from data_pipelines.cli import packing_report, read_clips
    from data_pipelines.preview import write_previews
    from data_pipelines.shapes_world.builder import build

    out = os.path.abspath(args.out)
    start = time.perf_counter()
    print(f"[1/3] building Shapes World '{args.config}' into {out}/data ...", flush=True)
    dataset_dir = build(os.path.join(out, "data"), args.config)
    print(f"      done in {time.perf_counter() - start:.1f}s: {dataset_dir}", flush=True)

    print("[2/3] packing spacetime patches with the Grain pipeline ...", flush=True)
    report = packing_report([dataset_dir], "train", batches=8, seq_len=1024, batch_size=4)
    for key, value in report.items():
        print(f"      {key:>18}: {value:.3f}" if isinstance(value, float) else f"      {key:>18}: {value}")

    print("[3/3] writing previews ...", flush=True)
    paths = write_previews(read_clips(dataset_dir, "train", 16), os.path.join(out, "samples"))
    with open(os.path.join(out, "packing_stats.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"      contact sheet: {paths['contact_sheet']}")
    for gif in paths["gifs"]:
        print(f"      gif: {gif}")
    print(f"demo finished in {time.perf_counter() - start:.1f}s; outputs in {out}")
    return 0
