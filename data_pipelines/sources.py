"""Opening built datasets as random-access Grain sources, and turning their records into clips.

Every dataset the project writes is a TFDS dataset directory of ArrayRecord files. Its name in
`dataset_info.json` says which record schema it has, and `to_clip` turns each schema into the one
in-memory contract the pipeline works on:

- clip (pixel mode): `video uint8 (T, H, W, 3)`, `caption_short`, `caption`, `meta` (JSON text);
- latent (latent mode): `latent float (t, h, w, c)` plus the same captions and meta.
"""
from __future__ import annotations

import dataclasses
import glob
import os
from typing import Any, Callable

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines.shapes_world.live import LiveShapesWorld, is_live

CLIP_DATASETS = ("shapes_world", "video_folder")
LATENT_DATASETS = ("latents",)


@dataclasses.dataclass(frozen=True)
class DecodeOptions:
    """Decode-time options for encoded videos (the video_folder dataset).

    `None` means "as ingest configured it" (stored in each record's meta), not "off".
    """

    target_fps: float | None = None
    max_frames: int | None = None
    max_side: int | None = None


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def data_root() -> str:
    """Where named procedural datasets are built on first use: `$SORA_JAX_DATA` or ~/.cache/sora_jax."""
    return os.environ.get("SORA_JAX_DATA", os.path.join(os.path.expanduser("~"), ".cache", "sora_jax"))


def resolve_source(spec: str) -> str:
    """A dataset directory from a source spec: a path, or `shapes_world:CONFIG` (built once, cached).

    A path may also be the `--out` directory a job wrote one dataset into (`OUT/<name>/<version>`).
    `shapes_world_live:CONFIG` (rendered on demand, see `shapes_world.live`) has no directory and is
    returned unchanged for `open_source`.
    """
    if is_live(spec):
        return spec
    if spec.startswith("shapes_world:"):
        from data_pipelines.shapes_world.builder import build  # noqa: PLC0415

        return build(os.path.join(data_root(), "data"), spec.split(":", 1)[1])
    if not os.path.exists(os.path.join(spec, "dataset_info.json")):
        found = sorted(glob.glob(os.path.join(spec, "*", "*", "dataset_info.json")))
        if len(found) == 1:
            return os.path.dirname(found[0])
    return spec


def open_source(dataset_dir: str, split: str):
    """Random-access source over one built dataset split; returns `(source, dataset_name)`.

    `dataset_dir` may also be a `resolve_source` spec such as `shapes_world:tiny`, or
    `shapes_world_live:tiny` (clips rendered when read, no end; `shapes_world.live`). Raises
    FileNotFoundError with the path when it is not a built dataset, and ValueError naming the
    available splits when `split` is missing.
    """
    dataset_dir = resolve_source(dataset_dir)
    if is_live(dataset_dir):
        return LiveShapesWorld(dataset_dir.split(":", 1)[1], split), "shapes_world"
    if not os.path.exists(os.path.join(dataset_dir, "dataset_info.json")):
        raise FileNotFoundError(
            f"{dataset_dir} is not a built dataset (no dataset_info.json); build one with "
            "`sora-jax data build shapes_world --out DIR` or `sora-jax data ingest`"
        )
    builder = tfds.builder_from_directory(dataset_dir)
    if split not in builder.info.splits:
        raise ValueError(f"split {split!r} not in {dataset_dir}; available: {sorted(builder.info.splits)}")
    return builder.as_data_source(split=split), builder.info.name


def clip_decoder(dataset_name: str, options: DecodeOptions) -> Callable[[dict], dict]:
    """Function turning one stored record of `dataset_name` into the in-memory contract."""
    if dataset_name == "shapes_world":
        return _decode_raw_clip
    if dataset_name == "video_folder":
        from data_pipelines.video_folder.decode import decode_record  # PyAV only where needed

        def decode_encoded(record: dict) -> dict:
            return decode_record(
                record, target_fps=options.target_fps, max_frames=options.max_frames, max_side=options.max_side
            )

        return decode_encoded
    if dataset_name in LATENT_DATASETS:
        return _decode_latent
    raise ValueError(f"no decoder for dataset {dataset_name!r}; known: {CLIP_DATASETS + LATENT_DATASETS}")


def _decode_raw_clip(record: dict) -> dict:
    return {
        "video": np.asarray(record["video"], dtype=np.uint8),  # (T, H, W, 3)
        "caption_short": _text(record["caption_short"]),
        "caption": _text(record["caption"]),
        "meta": _text(record["meta"]),
    }


def _decode_latent(record: dict) -> dict:
    return {
        "latent": np.asarray(record["latent"], dtype=np.float32),  # (t, h, w, c)
        "caption_short": _text(record["caption_short"]),
        "caption": _text(record["caption"]),
        "meta": _text(record["meta"]),
    }
