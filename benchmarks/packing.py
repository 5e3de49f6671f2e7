"""Token fill of packing against padding each batch to its longest sample.

    python -m benchmarks.packing [--config small] [--seq-len 4096] [--batches 64]

Fill = real tokens / token slots. Packing: the pipeline's first-fit rows. Padding baseline: the same
stream of sized clips, `batch_size` per batch, each padded to the longest clip of its batch (what a
non-packing loader does at best without cropping). Target: packing fill of at least 97%.
"""
from __future__ import annotations

import argparse
import functools
import itertools
import json
import time


from benchmarks.common import hardware, shapes_world_dir
from data_pipelines import config as data_config
from data_pipelines import pipeline
from data_pipelines.packing import PackingStats
from sora_jax.text.tokenizers import get_tokenizer


def padded_fill(c, clips: int) -> float:
    """Fill when the same sized clips are batched `batch_size` at a time and padded to the longest."""
    ds = pipeline._source_dataset(0, c.sources[0], c, "train", 0, 1)
    prepare = functools.partial(pipeline._prepare_pixels, c=c, tokenizer=get_tokenizer(c.tokenizer))
    lengths = [len(e["tokens"]) for e in itertools.islice(ds.seed(c.seed).random_map(prepare), clips)]
    batches = [lengths[i : i + c.batch_size] for i in range(0, len(lengths) - c.batch_size + 1, c.batch_size)]
    return float(sum(map(sum, batches)) / sum(len(b) * max(b) for b in batches))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="small")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--bins", type=int, default=256)
    parser.add_argument("--batches", type=int, default=160)
    parser.add_argument("--algorithm", default="best_fit", choices=["best_fit", "first_fit"])
    args = parser.parse_args(argv)

    c = data_config.get_data_config()
    c.sources = [shapes_world_dir(args.config, args.data_dir)]
    c.seq_len = c.max_tokens_per_clip = args.seq_len
    c.batch_size, c.packing_bins, c.packing = args.batch_size, args.bins, args.algorithm
    start = time.perf_counter()
    stats = PackingStats()
    for batch in itertools.islice(pipeline.build(c), args.batches):
        stats.add(batch)
    summary = stats.summary()
    result = {
        "benchmark": "packing",
        "dataset": f"shapes_world:{args.config}",
        "seq_len": args.seq_len,
        "patch": list(c.patch),
        "packing": args.algorithm,
        "packing_bins": args.bins,
        "rows": summary["rows"],
        "packed_fill": round(summary["token_fill"], 4),
        "padded_fill": round(padded_fill(c, summary["videos"] + summary["images"]), 4),
        "segments_per_row": round(summary["segments_per_row"], 2),
        "target_packed_fill": 0.97,
        "seconds": round(time.perf_counter() - start, 1),
        "hardware": hardware(),
    }
    result["meets_target"] = result["packed_fill"] >= 0.97
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
