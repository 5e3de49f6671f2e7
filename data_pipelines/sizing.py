"""Native-aspect sizing under a token budget, and temporal sampling.

Nothing is cropped or resized to one shape: every clip keeps its aspect ratio and is only ever made
smaller, just enough that its spacetime tokens fit the per-clip budget. The policy, in order:

1. Frames: at most `max_frames` frames are kept, taken as a contiguous window (random start) of every
   `frame_stride`-th frame. The count is then rounded down to a valid one: `1 + k * temporal_factor`
   (the causal VAE's rule; 1 means any count) and a multiple of the temporal patch `pt` (a clip with
   fewer than `pt` frames repeats its last frame, so an image works with any `pt`).
2. If even the smallest allowed frame (short side `min_side`) times that many frames is over budget,
   frames are cut further (same validity rule) until it fits.
3. Space: one scale factor `s <= 1` for both axes, the largest with
   `frames/pt * (H*s/ph) * (W*s/pw) <= max_tokens`, and with `max(H,W)*s <= max_side` when set. The
   frame is resized to `round(H*s) x round(W*s)` (area filter) and then center-cropped by less than
   `spatial_multiple` pixels per axis so both sides are multiples of it. That crop is the only loss of
   content, at most `spatial_multiple - 1` rows/columns.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class SizingConfig:
    """How clips are sized and sampled; see the module docstring for the policy."""

    patch: tuple[int, int, int] = (1, 8, 8)
    spatial_multiple: int = 8
    temporal_factor: int = 1
    max_tokens: int = 1024
    max_frames: int = 65
    frame_stride: int = 1
    min_side: int = 16
    max_side: int | None = None

    def __post_init__(self):
        pt, ph, pw = self.patch
        if min(self.patch) < 1:
            raise ValueError(f"patch sizes must be positive, got {self.patch}")
        if self.spatial_multiple % ph or self.spatial_multiple % pw:
            raise ValueError(f"spatial_multiple {self.spatial_multiple} must be a multiple of patch {self.patch[1:]}")
        if self.min_side < self.spatial_multiple:
            raise ValueError(f"min_side {self.min_side} is below spatial_multiple {self.spatial_multiple}")
        if self.temporal_factor < 1 or self.frame_stride < 1 or self.max_frames < 1:
            raise ValueError("temporal_factor, frame_stride and max_frames must be at least 1")
        if self.temporal_factor > 1 and pt > 1:
            raise ValueError("use temporal_factor (a causal VAE's 1 + k*f frames) or a temporal patch pt > 1, not both")
        if self.max_tokens < self.min_tokens_per_frame():
            raise ValueError(
                f"max_tokens {self.max_tokens} cannot hold even one {self.min_side}px frame "
                f"({self.min_tokens_per_frame()} tokens)"
            )

    def min_tokens_per_frame(self) -> int:
        """Tokens of one temporal slice at the smallest allowed size (square, `min_side` a side)."""
        side = self.min_side - self.min_side % self.spatial_multiple
        return (side // self.patch[1]) * (side // self.patch[2])


def valid_frame_count(frames: int, config: SizingConfig) -> int:
    """Largest count <= `frames` that is `1 + k*temporal_factor`; at least 1."""
    frames = max(1, frames)
    return 1 + ((frames - 1) // config.temporal_factor) * config.temporal_factor


def choose_frames(available: int, height: int, width: int, config: SizingConfig) -> int:
    """Number of frames to keep from a clip with `available` (already strided) frames."""
    frames = valid_frame_count(min(available, config.max_frames), config)
    pt = config.patch[0]
    # Step 2 of the policy: cut frames until the smallest frame size fits the budget.
    max_token_frames = config.max_tokens // config.min_tokens_per_frame()
    while frames > 1 and math.ceil(frames / pt) > max_token_frames:
        frames = valid_frame_count(frames - 1, config)
    if pt > 1 and frames >= pt:
        frames -= frames % pt
        frames = max(frames, 1)
    return frames


def choose_size(frames: int, height: int, width: int, config: SizingConfig) -> tuple[int, int, int, int]:
    """Resize target `(rh, rw)` and final crop `(ch, cw)` for a frame of `height x width`.

    Returns `(rh, rw, ch, cw)`: resize to `rh x rw` (same aspect), then center-crop to `ch x cw`.
    """
    pt, ph, pw = config.patch
    token_frames = max(1, math.ceil(frames / pt))
    scale = math.sqrt(config.max_tokens * ph * pw / (token_frames * height * width))
    if config.max_side is not None:
        scale = min(scale, config.max_side / max(height, width))
    scale = min(1.0, scale)
    m = config.spatial_multiple
    while True:
        rh, rw = max(m, round(height * scale)), max(m, round(width * scale))
        ch, cw = rh - rh % m, rw - rw % m
        if token_frames * (ch // ph) * (cw // pw) <= config.max_tokens or scale < 1e-3:
            return rh, rw, ch, cw
        scale *= 0.98  # rounding pushed it over budget; shrink a little and retry


def resize_frames(video: np.ndarray, rh: int, rw: int, ch: int, cw: int) -> np.ndarray:
    """Resize every frame of `video (T, H, W, C)` to `rh x rw` (area filter) and center-crop to `ch x cw`."""
    frames, height, width, _ = video.shape
    if (rh, rw) != (height, width):
        video = np.stack(
            [np.asarray(Image.fromarray(f).resize((rw, rh), Image.Resampling.BOX)) for f in video]
        )  # (T, rh, rw, C)
    top, left = (rh - ch) // 2, (rw - cw) // 2
    return video[:, top : top + ch, left : left + cw]  # (T, ch, cw, C)


def size_clip(video: np.ndarray, config: SizingConfig, rng: np.random.Generator) -> np.ndarray:
    """Apply the whole policy to one clip `(T, H, W, C)`: temporal window, then native-aspect resize.

    Returns a `(T', H', W', C)` array whose sizes are multiples of the patch and whose token count is
    within `config.max_tokens`.
    """
    if video.ndim != 4 or min(video.shape) < 1:
        raise ValueError(f"expected a non-empty (T, H, W, C) clip, got shape {video.shape}")
    strided = video[:: config.frame_stride]  # (T_s, H, W, C)
    _, height, width, _ = strided.shape
    frames = choose_frames(len(strided), height, width, config)
    start = int(rng.integers(0, len(strided) - frames + 1))
    window = strided[start : start + frames]  # (frames, H, W, C)
    pt = config.patch[0]
    if frames < pt:
        window = np.concatenate([window, np.repeat(window[-1:], pt - frames, axis=0)])  # (pt, H, W, C)
    rh, rw, ch, cw = choose_size(len(window), height, width, config)
    return resize_frames(window, rh, rw, ch, cw)
