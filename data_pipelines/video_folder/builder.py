"""TFDS builder for `video_folder`: validated real videos stored still encoded, one record per file.

Records hold the original file bytes (`video_encoded`), so the dataset is as small as the source
folder and decoding (resampling, resizing) happens in the data workers via `decode.decode_record`.
The builder is fed by `ingest.run_ingest`, which validates files first and passes only accepted
ones as `VideoFolderExample`s. An already built dataset is read back without this class:
`tfds.builder_from_directory(dataset_dir).as_data_source(split="train")`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds


@dataclasses.dataclass(frozen=True)
class VideoFolderExample:
    """One accepted file: where to read it and what to store next to its bytes.

    `key` (the path relative to the videos folder) is the unique, deterministic TFDS key; `sha256`
    is the digest seen at validation time, re-checked when the bytes are written.
    """

    key: str
    path: str
    format: str
    caption: str
    caption_short: str
    meta: dict
    sha256: str


def video_folder_features() -> tfds.features.FeaturesDict:
    """Feature spec of a stored record (see the module docstring for what each field holds)."""
    return tfds.features.FeaturesDict({
        # Raw file bytes as an object scalar: stored verbatim, read back as Python bytes.
        "video_encoded": tfds.features.Tensor(shape=(), dtype=np.object_),
        "format": tfds.features.Text(),  # lowercase extension without the dot: mp4, webm, gif, ...
        "caption_short": tfds.features.Text(),
        "caption": tfds.features.Text(),
        # JSON: source_path, format, fps, frames, height, width, duration_s, codec, target_fps,
        # max_seconds, max_frames, max_side, sha256, size_bytes.
        "meta": tfds.features.Text(),
    })


class VideoFolder(tfds.core.GeneratorBasedBuilder):
    """Real videos, GIFs and stills from a folder, stored encoded with captions and probe metadata.

    Args (constructor, besides the usual TFDS ones such as data_dir and file_format):
      examples: accepted files to write (empty when only reading a built dataset).
      ingest_metadata: JSON-able dict saved as the dataset's metadata.json (ingest config,
        fingerprint, decode settings) and readable back as `info.metadata`.
    """

    name = "video_folder"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Original encoded bytes, format, captions and JSON meta per file."}

    def __init__(
        self,
        *,
        examples: Sequence[VideoFolderExample] = (),
        ingest_metadata: dict | None = None,
        **kwargs,
    ):
        keys = [example.key for example in examples]
        if len(set(keys)) != len(keys):
            raise ValueError("VideoFolder examples must have unique keys")
        self._examples = tuple(examples)
        self._ingest_metadata = dict(ingest_metadata or {})
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Validated real videos/GIFs/stills, stored still encoded, with captions.",
            features=video_folder_features(),
            metadata=tfds.core.MetadataDict(self._ingest_metadata),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # inputs are local files handed over by ingest
        return {"train": self._generate_examples()}

    def _generate_examples(self) -> Iterator[tuple[str, dict]]:
        for example in self._examples:
            data = Path(example.path).read_bytes()
            # The file must be exactly what was validated; anything else would store unchecked bytes.
            if hashlib.sha256(data).hexdigest() != example.sha256:
                raise RuntimeError(f"{example.path} changed between validation and writing; re-run ingest")
            yield example.key, {
                "video_encoded": data,
                "format": example.format,
                "caption_short": example.caption_short,
                "caption": example.caption,
                "meta": json.dumps(example.meta, sort_keys=True),
            }
