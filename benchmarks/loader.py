"""Packed rows/s and tokens/s of the Grain pipeline by worker count.

    python -m benchmarks.loader [--config small] [--workers 0 1 2] [--batches 24]

Each worker count runs the full pipeline (read, decode, size, patchify, pack, batch) after a short
warm-up; the machine's cores bound what more workers can give.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time

from benchmarks.common import hardware, shapes_world_dir
from data_pipelines import config as data_config
from data_pipelines import pipeline


def measure(c, batches: int, warmup: int = 2) -> dict:
    """Rows/s and tokens/s over `batches` batches after `warmup` batches."""
    it = iter(pipeline.build(c))
    for _ in range(warmup):
        next(it)
    start, rows, real = time.perf_counter(), 0, 0
    for batch in itertools.islice(it, batches):
        rows += batch["segment_ids"].shape[0]
        real += int((batch["segment_ids"] > 0).sum())
    seconds = time.perf_counter() - start
    return {"rows_per_s": round(rows / seconds, 2), "tokens_per_s": round(rows * c.seq_len / seconds, 1),
            "real_tokens_per_s": round(real / seconds, 1)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="small")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--bins", type=int, default=256)
    parser.add_argument("--batches", type=int, default=256)
    args = parser.parse_args(argv)

    c = data_config.get_data_config()
    c.sources = [shapes_world_dir(args.config, args.data_dir)]
    c.seq_len = c.max_tokens_per_clip = args.seq_len
    c.batch_size, c.packing_bins = args.batch_size, args.bins
    by_workers = {}
    for workers in args.workers:
        c.worker_count = workers
        by_workers[str(workers)] = measure(c, args.batches)
    result = {"benchmark": "loader", "dataset": f"shapes_world:{args.config}", "seq_len": args.seq_len,
              "batch_size": args.batch_size, "packing_bins": args.bins, "patch": list(c.patch), "by_workers": by_workers,
              "hardware": hardware()}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
