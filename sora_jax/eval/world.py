"""Reading Shapes World clips: palette membership maps and the probe's fixed-size view of a clip.

Every object in Shapes World has one of the nine colours of `COLOURS`, and the colours of one
clip's objects are distinct, so a colour names an object. The evaluation reads clips through that
palette:

- `palette_membership(video)`: for each pixel, a soft assignment to the nine object colours with a
  reject option ("none": background or anything far from every palette colour). It is a softmax
  over `-d_k^2 / (2 sigma^2)` for the RGB distance `d_k` to colour k, plus a "none" logit at the
  distance `REJECT_DISTANCE`: a pixel counts for colour k when k is its nearest palette colour and
  lies closer than about `REJECT_DISTANCE`. The closest two palette colours (orange and yellow) are
  76 RGB units apart, so `sigma = 12` separates them; every background colour is at least 110
  away from the colours drawn on it (scene.MIN_CONTRAST).
- `probe_view(video, frames, size)`: the probe's input. Any clip `(T, H, W, 3)` becomes
  `frames` frames chosen by nearest index on `linspace(0, T - 1, frames)` (an image repeats its one
  frame; a long clip is subsampled, which speeds motion up but keeps its direction and kind), and
  each frame's membership maps are area-resampled so the longer side is `size` and letterboxed
  into a `size x size` square (the aspect is kept, so directions keep their angles). A frame mask
  channel marks the letterboxed frame, so the walls are visible to the probe.
"""
from __future__ import annotations

import numpy as np

from data_pipelines.shapes_world import COLOURS

COLOUR_NAMES = tuple(COLOURS)
PALETTE = np.array([COLOURS[name] for name in COLOUR_NAMES], np.float32)  # (K, 3)
SIGMA = 12.0
REJECT_DISTANCE = 40.0


def palette_membership(video: np.ndarray) -> np.ndarray:
    """Soft membership of each pixel of `video uint8 (T, H, W, 3)` in the 9 palette colours.

    Returns float32 `(T, H, W, K)`, each pixel's memberships summing to at most 1 (the rest is
    "none"). Raises ValueError for anything but a `(T, H, W, 3)` array.
    """
    video = np.asarray(video)
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"a clip must be (T, H, W, 3), got shape {video.shape}")
    pixels = video.astype(np.float32)  # (T, H, W, 3)
    # |p - c|^2 = |p|^2 - 2 p.c + |c|^2, one matmul instead of a (T, H, W, K, 3) difference.
    squared = np.square(pixels).sum(-1, keepdims=True) - 2 * pixels @ PALETTE.T + np.square(PALETTE).sum(-1)  # (T, H, W, K)
    membership = np.zeros(squared.shape, np.float32)  # (T, H, W, K)
    # Pixels farther than REJECT_DISTANCE + 4 sigma from every colour have memberships below 1e-4:
    # skip them (most of a frame is background), which makes this several times faster.
    near = squared.min(axis=-1) < (REJECT_DISTANCE + 4 * SIGMA) ** 2  # (T, H, W)
    logits = np.maximum(squared[near], 0.0) * np.float32(-1 / (2 * SIGMA**2))  # (N, K)
    reject = np.float32(-(REJECT_DISTANCE**2) / (2 * SIGMA**2))
    peak = np.maximum(logits.max(axis=-1, keepdims=True), reject)  # (N, 1)
    weights = np.exp(logits - peak)  # (N, K)
    membership[near] = weights / (weights.sum(axis=-1, keepdims=True) + np.exp(reject - peak))
    return membership


def area_matrix(source: int, target: int) -> np.ndarray:
    """`(target, source)` weights of area resampling: output pixel i averages the input span it covers."""
    edges = np.arange(target + 1) * (source / target)  # (target + 1,)
    left = np.maximum(edges[:-1, None], np.arange(source)[None, :])  # (target, source)
    right = np.minimum(edges[1:, None], np.arange(source)[None, :] + 1)
    overlap = np.clip(right - left, 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def frame_indices(length: int, frames: int) -> np.ndarray:
    """The `frames` frame indices the probe reads from a clip of `length` frames (nearest on a linspace)."""
    return np.rint(np.linspace(0, length - 1, frames)).astype(np.int64)  # (frames,)


def letterbox_shape(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(h, w, top, left) of a `height x width` frame scaled into a `size x size` square, aspect kept."""
    scale = size / max(height, width)
    h, w = max(1, round(height * scale)), max(1, round(width * scale))
    return h, w, (size - h) // 2, (size - w) // 2


def probe_view(video: np.ndarray, frames: int, size: int) -> np.ndarray:
    """The probe's view of a clip: uint8 `(frames, size, size, K + 1)` (memberships, then frame mask) x 255.

    Stored as uint8 so batches stay small; `ProbeTask.host_batch` scales it back to [0, 1].
    """
    video = np.asarray(video)
    membership = palette_membership(video[frame_indices(len(video), frames)])  # (F, H, W, K)
    height, width = video.shape[1:3]
    h, w, top, left = letterbox_shape(height, width, size)
    rows, columns = area_matrix(height, h), area_matrix(width, w)  # (h, H), (w, W)
    resized = np.tensordot(rows, membership, axes=(1, 1))  # (h, F, W, K)
    resized = np.tensordot(columns, resized, axes=(1, 2)).transpose(2, 1, 0, 3)  # (F, h, w, K)
    view = np.zeros((frames, size, size, len(PALETTE) + 1), np.float32)  # (F, S, S, K + 1)
    view[:, top : top + h, left : left + w, :-1] = resized
    view[:, top : top + h, left : left + w, -1] = 1.0
    return np.rint(np.clip(view, 0.0, 1.0) * 255).astype(np.uint8)
