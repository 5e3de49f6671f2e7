"""Latent records: VAE latents of clips, stored as a TFDS dataset `latents` (ArrayRecord).

The latent-encoding job (`sora-jax encode`) writes these; the Grain pipeline reads them in latent
mode. A record is `latent float32 (t, h, w, c)`, `caption_short`, `caption` and `meta` (JSON text,
the source clip's meta plus encoding details).
"""
from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds


class Latents(tfds.core.GeneratorBasedBuilder):
    """Builder over an in-memory iterable of `(key, record)` pairs given at construction."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    def __init__(self, *, splits: dict[str, Iterable[tuple[str, dict]]] | None = None, **kwargs):
        self._splits = splits or {}
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="VAE latents of clips with their captions and meta.",
            features=tfds.features.FeaturesDict({
                "latent": tfds.features.Tensor(shape=(None, None, None, None), dtype=np.float32, encoding="zlib"),
                "caption_short": tfds.features.Text(),
                "caption": tfds.features.Text(),
                "meta": tfds.features.Text(),
            }),
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        if not self._splits:
            raise ValueError("Latents needs the records to write: Latents(splits={'train': ...})")
        return {name: self._generate_examples(records) for name, records in self._splits.items()}

    def _generate_examples(self, records: Iterable[tuple[str, dict]]) -> Iterator[tuple[str, dict]]:
        for key, record in records:
            latent = np.asarray(record["latent"], np.float32)
            if latent.ndim != 4:
                raise ValueError(f"latent of record {key!r} must be (t, h, w, c), got shape {latent.shape}")
            yield key, {**record, "latent": latent}


def write_latents(out_dir: str, splits: dict[str, Iterable[tuple[str, dict]]]) -> str:
    """Writes latent records per split under `out_dir`; returns the versioned dataset directory."""
    builder = Latents(splits=splits, data_dir=out_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return str(builder.data_path)
