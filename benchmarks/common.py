"""What every benchmark shares: the dataset it runs on, the hardware line it reports, profile summaries."""
from __future__ import annotations

import collections
import glob
import os
import platform
import sys
import tempfile


def hardware() -> str:
    """One line naming the accelerator (when JAX's default backend has one), CPU and core count."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    host = f"{cpu}, {len(os.sched_getaffinity(0))} cores"
    jax = sys.modules.get("jax")  # only when the benchmark already uses JAX
    if jax is not None and jax.default_backend() != "cpu":
        devices = jax.devices()
        return f"{len(devices)}x {devices[0].device_kind} ({jax.default_backend()}), host {host}"
    return host


def top_device_ops(trace_dir: str, count: int = 20) -> list[tuple[str, float]]:
    """The `count` costliest ops of a `jax.profiler` trace, as (name, total ms) over all its steps.

    Reads the trace's XSpace through `jax.profiler.ProfileData`: device planes (GPU/TPU kernels) when
    there are any, else the host's XLA op lines (CPU).
    """
    import jax  # noqa: PLC0415

    paths = glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"no .xplane.pb under {trace_dir}")
    data = jax.profiler.ProfileData.from_file(max(paths, key=os.path.getmtime))
    planes = list(data.planes)
    device = [p for p in planes if p.name.startswith("/device:")]
    totals = collections.Counter()
    if device:  # each device plane's "XLA Ops" line, else its stream lines (kernels)
        for plane in device:
            lines = list(plane.lines)
            op_lines = [line for line in lines if line.name == "XLA Ops"]
            for line in op_lines or [line for line in lines if "Stream" in line.name]:
                for event in line.events:
                    totals[event.name] += event.duration_ns / 1e6
    else:  # XLA:CPU runs HLO ops on its tf_XLA* threads, among thread-pool bookkeeping events
        for plane in (p for p in planes if p.name == "/host:CPU"):
            for line in (line for line in plane.lines if line.name.startswith("tf_XLA")):
                for event in line.events:
                    if "::" not in event.name and not event.name.startswith("end: "):  # async op ends
                        totals[event.name] += event.duration_ns / 1e6
    return [(name, round(ms, 3)) for name, ms in totals.most_common(count)]


def shapes_world_dir(config: str, data_dir: str | None = None) -> str:
    """Versioned directory of Shapes World `config`, built once into a cache folder when missing."""
    from data_pipelines.shapes_world.builder import build

    root = data_dir or os.path.join(tempfile.gettempdir(), "sora_jax_benchmarks")
    return build(root, config)
