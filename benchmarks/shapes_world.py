"""Shapes World throughput on ONE CPU core: 17 x 64 x 64 clips generated per second.

    python -m benchmarks.shapes_world

Prints exactly one JSON line; "passed" says whether the 200 clips/s target was met. Thread-count
variables are set before numpy is imported and the process is pinned to a single core, so the
figure is per core. Seeds run consecutively, so the mix of shapes, motions and backgrounds is the
dataset's own.
"""
import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import json  # noqa: E402
import time  # noqa: E402

FRAMES, HEIGHT, WIDTH = 17, 64, 64
TARGET_CLIPS_PER_S = 200
WARMUP_CLIPS = 20
MIN_CLIPS = 300
MIN_SECONDS = 3.0


def measure():
    """Pin to one core, warm up, then time consecutive seeds for at least MIN_SECONDS."""
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    import numpy as np

    from benchmarks.common import hardware
    from data_pipelines.shapes_world import generate_clip

    for seed in range(WARMUP_CLIPS):
        generate_clip(1_000_000 + seed, FRAMES, HEIGHT, WIDTH)
    clips = 0
    start = time.perf_counter()
    while clips < MIN_CLIPS or time.perf_counter() - start < MIN_SECONDS:
        generate_clip(clips, FRAMES, HEIGHT, WIDTH)
        clips += 1
    seconds = time.perf_counter() - start
    clips_per_s = clips / seconds
    return {
        "benchmark": "shapes_world",
        "frames": FRAMES,
        "height": HEIGHT,
        "width": WIDTH,
        "clips_per_s": round(clips_per_s, 1),
        "target_clips_per_s": TARGET_CLIPS_PER_S,
        "passed": clips_per_s >= TARGET_CLIPS_PER_S,
        "ms_per_clip": round(1000 * seconds / clips, 3),
        "clips": clips,
        "seconds": round(seconds, 3),
        "core": core,
        "numpy": np.__version__,
        "hardware": hardware(),  # the process's own view: one core after pinning
    }


if __name__ == "__main__":
    print(json.dumps(measure()))
