"""Fixed-shape clip batches for training the VAE: every step sees videos and images together.

The VAE is convolutional, so it trains on crops: each element is a `frames x size x size` video crop
of one record and a single-frame image crop (a random frame of the same record; an image record is
its own frame). Frames are a contiguous window (a clip shorter than the window repeats its last
frame, which the causal VAE sees as a still continuation); frames smaller than the crop are first
scaled up so their short side equals it (area filter down, bicubic up, aspect kept), then cropped at
a random position. Pipeline: source -> shard -> shuffle -> repeat -> decode -> crop -> batch.
"""
from __future__ import annotations

import dataclasses
import functools

import grain
import numpy as np
from absl import flags
from PIL import Image

from data_pipelines.sources import DecodeOptions, clip_decoder, open_source


@dataclasses.dataclass(frozen=True)
class ClipBatchConfig:
    """Crop shape, batch size and shuffling of VAE training batches."""

    sources: tuple[str, ...]
    frames: int = 9
    size: int = 64
    batch_size: int = 4
    seed: int = 0
    num_epochs: int | None = None
    worker_count: int = 0  # Grain worker processes decoding and cropping (0 = in the training process)

    def __post_init__(self):
        if not self.sources:
            raise ValueError("clip batches need at least one source")
        if self.frames < 1 or self.size < 8 or self.batch_size < 1 or self.worker_count < 0:
            raise ValueError(f"frames >= 1, size >= 8, batch_size >= 1 and worker_count >= 0 required, got {self}")


def _fit(frame: np.ndarray, size: int) -> np.ndarray:
    """Scales a frame `(H, W, 3)` so its short side is at least `size`, keeping the aspect."""
    height, width = frame.shape[:2]
    scale = size / min(height, width)
    if scale <= 1.0:
        return frame
    target = (max(size, round(width * scale)), max(size, round(height * scale)))
    return np.asarray(Image.fromarray(frame).resize(target, Image.Resampling.BICUBIC))


def crop_clip(clip: dict, rng: np.random.Generator, c: ClipBatchConfig) -> dict:
    """A `(frames, size, size, 3)` video crop and a `(1, size, size, 3)` image crop of one clip."""
    video = clip["video"]  # (T, H, W, 3)
    start = int(rng.integers(0, max(1, len(video) - c.frames + 1)))
    window = video[start : start + c.frames]  # (<=frames, H, W, 3)
    if len(window) < c.frames:
        window = np.concatenate([window, np.repeat(window[-1:], c.frames - len(window), axis=0)])
    window = np.stack([_fit(f, c.size) for f in window])  # (frames, H', W', 3)
    top = int(rng.integers(0, window.shape[1] - c.size + 1))
    left = int(rng.integers(0, window.shape[2] - c.size + 1))
    image = _fit(video[int(rng.integers(0, len(video)))], c.size)  # (H'', W'', 3)
    itop = int(rng.integers(0, image.shape[0] - c.size + 1))
    ileft = int(rng.integers(0, image.shape[1] - c.size + 1))
    return {
        "video": window[:, top : top + c.size, left : left + c.size],  # (frames, size, size, 3)
        "image": image[None, itop : itop + c.size, ileft : ileft + c.size],  # (1, size, size, 3)
    }


class PhotoClips:
    """Random-access source of camera clips over the sample photographs (`data_pipelines.photos`):
    record `i` is a deterministic pan/zoom clip of `frames` frames at twice the crop size."""

    def __init__(self, split: str, frames: int, size: int):
        self.split, self.frames, self.size = split, frames, size
        self.length = 100_000 if split == "train" else 256

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        from data_pipelines.photos import _photo, camera_clip, photo_names  # noqa: PLC0415

        names = photo_names(self.split)
        rng = np.random.default_rng([int(index), 11])
        video = camera_clip(_photo(names[int(index) % len(names)]), self.frames, 2 * self.size, 2 * self.size, rng)
        return {"video": video}  # (frames, 2*size, 2*size, 3)


def _clip_dataset(path: str, c: ClipBatchConfig, split: str):
    """Decoded clips of one source: a built dataset, or "photos" (camera clips over sample photos)."""
    if path == "photos":
        return grain.MapDataset.source(PhotoClips(split, c.frames, c.size))
    source, name = open_source(path, split)
    return grain.MapDataset.source(source).map(clip_decoder(name, DecodeOptions()))


def build_clip_batches(c: ClipBatchConfig, split: str = "train", process_index: int = 0, process_count: int = 1):
    """Grain IterDataset of `{"video": (B, frames, size, size, 3), "image": (B, 1, size, size, 3)}` uint8.

    A source is a built clip dataset (path or spec) or `"photos"`: camera clips over the sample
    photographs of scikit-image and scikit-learn (train and validation use different photos).
    With `worker_count > 0`, that many processes decode and crop: the same crops (each element's
    randomness comes from its index), batched in a different, still deterministic order.
    In-process, an accelerator outruns the loader: the tiny VAE trained at 7.5 steps/s of 32 crops
    on an H200, its GPU mostly idle."""
    datasets = []
    for index, path in enumerate(c.sources):
        ds = _clip_dataset(path, c, split)[process_index::process_count]
        ds = ds.seed(c.seed + index).shuffle().repeat(c.num_epochs)
        datasets.append(ds)
    ds = datasets[0] if len(datasets) == 1 else grain.MapDataset.mix(datasets)
    ds = ds.seed(c.seed).random_map(functools.partial(crop_clip, c=c))
    it = ds.to_iter_dataset().batch(c.batch_size, drop_remainder=True)
    if c.worker_count > 0:
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()  # Grain's workers read absl flags; our CLIs use argparse.
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=c.worker_count))
    return it
