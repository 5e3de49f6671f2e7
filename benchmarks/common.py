"""What every benchmark shares: the dataset it runs on and the hardware line it reports."""
from __future__ import annotations

import os
import platform
import tempfile


def hardware() -> str:
    """One line naming the CPU and core count this process may use."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {len(os.sched_getaffinity(0))} cores"


def shapes_world_dir(config: str, data_dir: str | None = None) -> str:
    """Versioned directory of Shapes World `config`, built once into a cache folder when missing."""
    from data_pipelines.shapes_world.builder import build

    root = data_dir or os.path.join(tempfile.gettempdir(), "sora_jax_benchmarks")
    return build(root, config)
