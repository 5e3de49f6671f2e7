"""TFDS builder `shapes_world`: Shapes World clips written as ArrayRecord.

Configs are mixtures of resolutions, aspect ratios and durations (a duration of one is an image), so
the Grain pipeline sees the variety it must pack. Clip `i` of a split is `generate_clip(seed_i, ...)`
with its shape drawn from the config's mixture by the same seed, so any record can be regenerated
from its `meta` alone. Train and validation seeds never overlap.

    sora-jax data build shapes_world --config small --out DIR
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines.shapes_world import generate_clip

VALIDATION_SEED_OFFSET = 1_000_000_000
ASPECTS = (0.5, 9 / 16, 3 / 4, 1.0, 4 / 3, 16 / 9, 2.0)  # width / height, from tall 1:2 to wide 2:1


@dataclasses.dataclass
class ShapesWorldConfig(tfds.core.BuilderConfig):
    """One mixture of clip shapes and a dataset size."""

    num_train: int = 256
    num_validation: int = 32
    short_sides: tuple[int, ...] = (32, 48, 64)
    frame_counts: tuple[int, ...] = (1, 5, 9, 17)  # 1 + 4k: the causal VAE's valid lengths
    image_fraction: float = 0.3
    max_side: int = 256
    fps: float = 8.0
    aspects: tuple[float, ...] = ASPECTS
    max_objects: int = 3  # each clip shows 1 to max_objects objects


CONFIGS = (
    ShapesWorldConfig(
        name="demo", description="The CPU demo: 64 px short side, three aspects, 1/9/17 frames (few shapes, few compiles).",
        num_train=512, num_validation=32, short_sides=(64,), frame_counts=(1, 9, 17), max_side=128,
        aspects=(0.5, 1.0, 2.0),
    ),
    ShapesWorldConfig(
        name="tiny", description="CPU tests and demos: 32-128 px, 1-17 frames.",
        num_train=192, num_validation=32, short_sides=(32, 48, 64), frame_counts=(1, 5, 9, 17), max_side=128,
    ),
    ShapesWorldConfig(
        name="small", description="Laptop-scale training: 32-256 px, 1-65 frames.",
        num_train=2000, num_validation=128, short_sides=(32, 48, 64, 96, 128),
        frame_counts=(1, 5, 9, 17, 33, 65), max_side=256,
    ),
    ShapesWorldConfig(
        name="large", description="Accelerator-scale training: 64-256 px, 1-65 frames.",
        num_train=50_000, num_validation=1000, short_sides=(64, 96, 128, 160, 192, 256),
        frame_counts=(1, 5, 9, 17, 33, 49, 65), max_side=256,
    ),
    ShapesWorldConfig(
        name="single", description="One object per clip, 48-64 px, 1-17 frames: a curriculum stage for the captioner.",
        num_train=2000, num_validation=32, short_sides=(48, 64), frame_counts=(1, 9, 17), image_fraction=0.5,
        max_side=128, max_objects=1,
    ),
)


def clip_shape(seed: int, config: ShapesWorldConfig) -> tuple[int, int, int]:
    """`(frames, height, width)` of the clip with `seed`, drawn from the config's mixture.

    Sides are multiples of 8 and keep the drawn aspect within that rounding; the longer side is
    capped at `max_side` (the short side shrinks with it so the aspect is kept).
    """
    rng = np.random.default_rng([seed, 7])
    is_image = rng.random() < config.image_fraction
    videos = [f for f in config.frame_counts if f > 1] or [1]
    frames = 1 if is_image else int(rng.choice(videos))
    short = int(rng.choice(config.short_sides))
    aspect = float(rng.choice(config.aspects))
    height, width = (short, short * aspect) if aspect >= 1 else (short / aspect, short)
    scale = min(1.0, config.max_side / max(height, width))
    height, width = (max(16, int(round(s * scale / 8)) * 8) for s in (height, width))
    return frames, height, width


def split_seeds(config: ShapesWorldConfig, split: str) -> range:
    """Seeds of a split; validation seeds start far above any train seed."""
    if split == "train":
        return range(config.num_train)
    if split == "validation":
        return range(VALIDATION_SEED_OFFSET, VALIDATION_SEED_OFFSET + config.num_validation)
    raise ValueError(f"unknown split {split!r}")


class ShapesWorld(tfds.core.GeneratorBasedBuilder):
    """Procedural coloured shapes with exact ground truth; see `data_pipelines.shapes_world`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}
    BUILDER_CONFIGS = list(CONFIGS)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description="Shapes World: procedural clips and images with short and detailed captions.",
            features=tfds.features.FeaturesDict({
                "video": tfds.features.Tensor(shape=(None, None, None, 3), dtype=np.uint8, encoding="zlib"),
                "caption_short": tfds.features.Text(),
                "caption": tfds.features.Text(),
                "meta": tfds.features.Text(),
            }),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Procedural: nothing to download.
        return {split: self._generate_examples(split) for split in ("train", "validation")}

    def _generate_examples(self, split: str):
        config = self.builder_config
        for seed in split_seeds(config, split):
            frames, height, width = clip_shape(seed, config)
            yield seed, generate_clip(seed, frames, height, width, fps=config.fps, max_objects=config.max_objects)


def build(out_dir: str, config: str = "tiny") -> str:
    """Builds Shapes World `config` under `out_dir`; returns the versioned dataset directory."""
    known = [c.name for c in CONFIGS]
    if config not in known:
        raise ValueError(f"unknown shapes_world config {config!r}; known: {known}")
    builder = ShapesWorld(config=config, data_dir=out_dir, file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return str(builder.data_path)
