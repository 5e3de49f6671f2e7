"""Training data specs of the caption stage.

The captioner must generalise to clips it never saw, and Shapes World `tiny` has only 192 training
clips. `shapes_world_n:CONFIG:N` names Shapes World `CONFIG`'s clip mixture with `N` training clips
(seeds 0..N-1; its validation split is `CONFIG`'s, seeds from the builder's validation offset, so
held-out clips never overlap training ones). It is built once with the real TFDS builder under
`$SORA_JAX_DATA/data` (16 s and 12 MB for `tiny:2000` on one CPU core). Any other spec is handed to
`data_pipelines.sources.resolve_source` unchanged.
"""
from __future__ import annotations

import dataclasses
import os

PREFIX = "shapes_world_n:"


def resolve_caption_source(spec: str) -> str:
    """A dataset directory for `spec` (see the module docstring); builds `shapes_world_n:` specs once."""
    from data_pipelines.sources import data_root, resolve_source  # noqa: PLC0415

    if not spec.startswith(PREFIX):
        return resolve_source(spec)
    config_name, _, count = spec[len(PREFIX):].partition(":")
    from data_pipelines.shapes_world.builder import CONFIGS, ShapesWorld  # noqa: PLC0415

    known = {c.name: c for c in CONFIGS}
    if config_name not in known or not count.isdigit() or int(count) < 1:
        raise ValueError(f"bad data source {spec!r}: expected {PREFIX}CONFIG:N with CONFIG in {sorted(known)}, N >= 1")
    config = dataclasses.replace(known[config_name], name=f"{config_name}_{int(count)}", num_train=int(count),
                                 description=f"Shapes World {config_name} mixture, {int(count)} training clips.")
    builder = ShapesWorld(config=config, data_dir=os.path.join(data_root(), "data"), file_format="array_record")
    if not os.path.exists(os.path.join(str(builder.data_path), "dataset_info.json")):
        import tensorflow_datasets as tfds  # noqa: PLC0415

        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return str(builder.data_path)
