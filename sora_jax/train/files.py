"""Workdir files on local disks or object stores (`gs://bucket/run`), through `etils.epath`.

Orbax writes checkpoints to either itself and tensorboardX writes `gs://` event files itself (with
google-cloud-storage, in the `tpu` extra). The trainer's own small files (config.json,
metrics.jsonl, sample GIFs) go through here; `gs://` paths need gcsfs (also in the `tpu` extra).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager

from etils import epath

REMOTE_PREFIXES = ("gs://", "s3://")


def is_remote(path: str) -> bool:
    return str(path).startswith(REMOTE_PREFIXES)


def absolute(path: str) -> str:
    """`path` made absolute when local; object-store URLs are already absolute."""
    return str(path) if is_remote(path) else os.path.abspath(path)


def join(*parts: str) -> str:
    return str(epath.Path(parts[0]).joinpath(*parts[1:])) if is_remote(parts[0]) else os.path.join(*parts)


def makedirs(path: str) -> None:
    epath.Path(path).mkdir(parents=True, exist_ok=True)


def exists(path: str) -> bool:
    return epath.Path(path).exists()


def read_text(path: str) -> str:
    return epath.Path(path).read_text()


def write_text(path: str, text: str) -> None:
    epath.Path(path).write_text(text)


def write_sample_json(workdir: str, step: int, name: str, report: dict) -> str:
    """Writes `report` as `samples/step_XXXXXXX/name` under `workdir` (local or remote); returns the path."""
    out_dir = join(workdir, "samples", f"step_{step:07d}")
    makedirs(out_dir)
    path = join(out_dir, name)
    write_text(path, json.dumps(report, indent=2))
    return path


@contextmanager
def local_dir(path: str):
    """A local directory standing for `path`: itself when local; for a remote path, a temporary
    directory whose files are copied to `path` when the block ends."""
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)
        yield path
        return
    staging = tempfile.mkdtemp(prefix="sora_jax_")
    try:
        yield staging
        makedirs(path)
        for name in os.listdir(staging):
            epath.Path(os.path.join(staging, name)).copy(epath.Path(path) / name, overwrite=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
