"""Codecs: the one place generation turns pixels into what the DiT samples, and back.

A codec maps a clip `uint8 (T, H, W, 3)` to "latent frames" `float32 (t, h, w, c)` and back, and
knows which pixel frames each latent frame owns, so one known-frame specification in pixels
(`conditioning.Known`) serves both model modes:

- `PixelCodec` (config `data.mode == "pixel"`): the DiT works on RGB patches in [-1, 1]; latent
  frames are pixel frames (time and space factor 1) and encode/decode only rescale.
- `LatentCodec` (`data.mode == "latent"`): the causal VAE the latent dataset was encoded with
  (`latent_info.json` next to the dataset: `vae_workdir`, `vae_step`, per-channel `shift`/`scale`);
  the DiT sees `(posterior_mode - shift) / scale`. Latent frame 0 owns pixel frame 0 and latent
  frame j >= 1 owns pixel frames `tf*(j-1)+1 .. tf*j`; by causality the first `1 + tf*k` pixel
  frames fix the first `k + 1` latent frames exactly. Encoding and decoding go chunk by chunk in
  time (`ChunkedVAE`), so clips of any length fit in bounded memory.
"""
from __future__ import annotations

import json
import os

import numpy as np

PIXEL_SCALE = 127.5  # uint8 <-> [-1, 1], as in training (sora_jax.train.batch)


def to_unit(video: np.ndarray) -> np.ndarray:
    """uint8 `(T, H, W, 3)` -> float32 in [-1, 1]."""
    return np.asarray(video, np.float32) / PIXEL_SCALE - 1.0


def to_uint8(video: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> uint8, rounded to nearest (so `to_uint8(to_unit(x)) == x` exactly)."""
    return np.clip(np.rint((np.asarray(video, np.float32) + 1.0) * PIXEL_SCALE), 0, 255).astype(np.uint8)


class PixelCodec:
    """Identity codec of pixel-mode models: latent frames are frames scaled to [-1, 1]."""

    mode = "pixel"
    time_factor = 1
    space_factor = 1

    def __init__(self, channels: int = 3):
        self.channels = channels

    def latent_frames(self, frames: int) -> int:
        return frames

    def pixel_frames(self, latent_frames: int) -> int:
        return latent_frames

    def owned_frames(self, latent_frame: int) -> range:
        """Pixel frames latent frame `latent_frame` stands for."""
        return range(latent_frame, latent_frame + 1)

    def shape_problems(self, frames: int, height: int, width: int) -> list[str]:
        """Why `(frames, height, width)` cannot be represented (empty when it can)."""
        problems = [] if frames >= 1 else [f"frames must be at least 1, got {frames}"]
        for name, size in (("height", height), ("width", width)):
            if size < 1:
                problems.append(f"{name} must be positive, got {size}")
        return problems

    def encode(self, video: np.ndarray) -> np.ndarray:
        """uint8 `(T, H, W, 3)` -> `(T, H, W, 3)` float32 in [-1, 1]."""
        return to_unit(video)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """`(t, h, w, 3)` -> uint8 `(t, h, w, 3)`."""
        return to_uint8(latents)


class LatentCodec:
    """The causal VAE plus the latent dataset's per-channel normalisation."""

    mode = "latent"

    def __init__(self, vae, shift, scale, *, chunk_latent_frames: int | None = None):
        from sora_jax.models.vae import ChunkedVAE

        self.config = vae.config
        self.channels = self.config.latent_channels
        self.shift = np.asarray(shift, np.float32).reshape(-1)  # (c,)
        self.scale = np.asarray(scale, np.float32).reshape(-1)  # (c,)
        for name, value in (("shift", self.shift), ("scale", self.scale)):
            if value.shape != (self.channels,):
                raise ValueError(f"latent_info {name} has {value.size} values; the VAE has {self.channels} channels")
        if np.any(self.scale <= 0):
            raise ValueError("latent_info scale values must be positive")
        self.chunked = ChunkedVAE(vae, chunk_latent_frames=chunk_latent_frames)

    @property
    def time_factor(self) -> int:
        return self.config.time_factor

    @property
    def space_factor(self) -> int:
        return self.config.space_factor

    def latent_frames(self, frames: int) -> int:
        return 1 + (frames - 1) // self.time_factor

    def pixel_frames(self, latent_frames: int) -> int:
        return 1 + (latent_frames - 1) * self.time_factor

    def owned_frames(self, latent_frame: int) -> range:
        """Pixel frames latent frame `latent_frame` stands for (frame 0 alone, then `tf` each)."""
        if latent_frame == 0:
            return range(0, 1)
        tf = self.time_factor
        return range(tf * (latent_frame - 1) + 1, tf * latent_frame + 1)

    def shape_problems(self, frames: int, height: int, width: int) -> list[str]:
        """Why `(frames, height, width)` does not fit the VAE, naming the nearest valid sizes."""
        from sora_jax.models.vae import size_problems

        if min(frames, height, width) < 1:
            return [f"frames, height and width must be positive, got {(frames, height, width)}"]
        return size_problems((frames, height, width), self.config)

    def encode(self, video: np.ndarray) -> np.ndarray:
        """uint8 `(T, H, W, 3)` of a valid shape -> normalised posterior mode `(t, h, w, c)`."""
        posterior = self.chunked.encode(to_unit(video)[None], policy="error")
        latents = np.asarray(posterior.mode())[0]  # (t, h, w, c)
        return (latents - self.shift) / self.scale  # (t, h, w, c)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Normalised `(t, h, w, c)` -> uint8 `(1 + (t-1)*tf, h*sf, w*sf, 3)`, chunk by chunk."""
        raw = np.asarray(latents, np.float32) * self.scale + self.shift  # (t, h, w, c)
        return to_uint8(self.chunked.decode(raw[None], clip=True)[0])  # (T, H, W, 3)


def read_latent_info(dataset_dir: str) -> dict:
    """`latent_info.json` of a latent dataset (written by `sora-jax encode`); clear errors when absent."""
    path = os.path.join(dataset_dir, "latent_info.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"latent-mode model: {path} not found; the latent dataset must come from "
                                "`sora-jax encode`")
    with open(path) as f:
        info = json.load(f)
    missing = {"vae_workdir", "shift", "scale"} - set(info)
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}")
    return info


def make_codec(config) -> PixelCodec | LatentCodec:
    """The codec of a trained DiT run's `config`: pixel, or latent with the VAE its data was encoded by."""
    if config.data.mode == "pixel":
        return PixelCodec()
    if config.data.mode != "latent":
        raise ValueError(f"data.mode must be 'pixel' or 'latent', got {config.data.mode!r}")
    if not config.data.sources:
        raise ValueError("latent-mode model: config.data.sources is empty, so its VAE cannot be found")
    from data_pipelines.sources import resolve_source
    from sora_jax.train.restore import load_trained

    info = read_latent_info(resolve_source(config.data.sources[0]))
    vae_run = load_trained(info["vae_workdir"], info.get("vae_step"), ema=True)
    vae = getattr(vae_run.model, "vae", vae_run.model)
    return LatentCodec(vae, info["shift"], info["scale"])
