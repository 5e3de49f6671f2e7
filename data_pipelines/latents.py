"""Latent records: VAE latents of clips, stored as a TFDS dataset `latents` (ArrayRecord).

The latent-encoding job (`sora-jax encode`) writes these; the Grain pipeline reads them in latent
mode. A record is `latent float32 (t, h, w, c)`, `caption_short`, `caption` and `meta` (JSON text,
the source clip's meta plus encoding details).

With `sora-jax encode --text-encoder SPEC` (a frozen encoder: `minilm`, `t5:DIR`) each record also
holds the embeddings of its captions' real tokens, `caption_embedding float16 (n, D)` and
`caption_short_embedding float16 (n_short, D)`, and `latent_info.json` beside the records has a
`text_encoder` entry `{spec, name, dim, max_len, dtype, fields}`. How the two kinds of dataset
differ: the builder's feature dict is chosen per dataset (`Latents(text_dim=D)` adds the two
fields), and `dataset_info.json` records which one a dataset has. One builder name, one version
and one directory layout (`OUT/latents/1.0.0`) serve both, so every reader finds either kind the
same way; a TFDS builder config would have moved the files one directory down. Records without
the flag are byte-for-byte what they were before it existed.
"""
from __future__ import annotations

import json
import os
from typing import Iterable, Iterator

import numpy as np
import tensorflow_datasets as tfds

LATENT_INFO = "latent_info.json"
EMBEDDING_FIELDS = ("caption_embedding", "caption_short_embedding")  # caption key + "_embedding"


class Latents(tfds.core.GeneratorBasedBuilder):
    """Builder over an in-memory iterable of `(key, record)` pairs given at construction.

    `text_dim`: when set, records also carry `caption_embedding` and `caption_short_embedding`,
    float16 `(n, text_dim)` (see the module docstring).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    def __init__(self, *, splits: dict[str, Iterable[tuple[str, dict]]] | None = None, text_dim: int | None = None,
                 **kwargs):
        if text_dim is not None and text_dim < 1:
            raise ValueError(f"text_dim must be positive, got {text_dim}")
        self._splits, self._text_dim = splits or {}, text_dim
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        features = {
            "latent": tfds.features.Tensor(shape=(None, None, None, None), dtype=np.float32, encoding="zlib"),
            "caption_short": tfds.features.Text(),
            "caption": tfds.features.Text(),
            "meta": tfds.features.Text(),
        }
        if self._text_dim is not None:
            for name in EMBEDDING_FIELDS:
                features[name] = tfds.features.Tensor(shape=(None, self._text_dim), dtype=np.float16, encoding="zlib")
        return tfds.core.DatasetInfo(
            builder=self,
            description="VAE latents of clips with their captions (and, optionally, caption embeddings) and meta.",
            features=tfds.features.FeaturesDict(features),
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
            record = {**record, "latent": latent}
            if self._text_dim is not None:
                for name in EMBEDDING_FIELDS:
                    embedding = np.asarray(record[name], np.float16)  # (n, D)
                    if embedding.ndim != 2 or embedding.shape[1] != self._text_dim:
                        raise ValueError(f"{name} of record {key!r} must be (n, {self._text_dim}), "
                                         f"got {embedding.shape}")
                    record[name] = embedding
            yield key, record


def write_latents(out_dir: str, splits: dict[str, Iterable[tuple[str, dict]]], text_dim: int | None = None) -> str:
    """Writes latent records per split under `out_dir`; returns the versioned dataset directory.

    `text_dim`: the width of the records' caption embeddings, when they have them.
    """
    builder = Latents(splits=splits, text_dim=text_dim, data_dir=out_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return str(builder.data_path)


def read_text_info(dataset_dir: str) -> dict | None:
    """The `text_encoder` entry of the `latent_info.json` in `dataset_dir` (a versioned latents
    dataset directory), or None when the records carry no caption embeddings."""
    path = os.path.join(dataset_dir, LATENT_INFO)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f).get("text_encoder")
