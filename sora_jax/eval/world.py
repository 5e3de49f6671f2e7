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
- `probe_inputs(video, frames, size, glimpse, track_frames)`: the view plus, per colour slot, what an
  object-centric reader needs at the clip's native resolution (the view's area resampling blurs a
  6-pixel star into a blob): its track (per frame: seen, centroid in view coordinates, mass, fraction
  of its largest mass) and its glimpses, a `glimpse x glimpse` window centred on its centroid in
  every frame at one scale per slot (1.8 x the radius of a disc of its largest mass), so the object sits still
  and equally large in every glimpse whatever its size and motion, and rotation is what changes.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

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
    return resample_view(palette_membership(video[frame_indices(len(video), frames)]), size)


def resample_view(membership: np.ndarray, size: int) -> np.ndarray:
    """Native memberships `(F, H, W, K)` -> the letterboxed uint8 view `(F, size, size, K + 1)`."""
    frames, height, width = membership.shape[:3]
    h, w, top, left = letterbox_shape(height, width, size)
    rows, columns = area_matrix(height, h), area_matrix(width, w)  # (h, H), (w, W)
    resized = np.tensordot(rows, membership, axes=(1, 1))  # (h, F, W, K)
    resized = np.tensordot(columns, resized, axes=(1, 2)).transpose(2, 1, 0, 3)  # (F, h, w, K)
    view = np.zeros((frames, size, size, len(PALETTE) + 1), np.float32)  # (F, S, S, K + 1)
    view[:, top : top + h, left : left + w, :-1] = resized
    view[:, top : top + h, left : left + w, -1] = 1.0
    return np.rint(np.clip(view, 0.0, 1.0) * 255).astype(np.uint8)

GLIMPSE_REACH = 1.8  # glimpse half-width / radius of the slot's largest mass (a star's tips reach 1.54)
MIN_GLIMPSE_HALF = 3.0  # px: the smallest glimpse half-width (a few-pixel object keeps its fringe)
MIN_SEEN_MASS = 0.25  # px of membership for an object to count as seen in a frame
TRACK_FEATURES = 5  # per slot and frame: seen, x, y, log1p(mass), mass / largest mass


def slot_tracks(membership: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-slot tracks of native memberships `(F, H, W, K)`.

    Returns `tracks (K, F, 5)` float32 (seen, x, y in the view's [-1, 1] coordinates, log1p of the
    mass in view pixels, mass / the slot's largest mass), and the native centroids `(F, K, 2)`
    (row, column pixel indices) and masses `(F, K)` the glimpses use.
    """
    height, width = membership.shape[1:3]
    mass = membership.sum(axis=(1, 2))  # (F, K)
    rows = np.einsum("fhwk,h->fk", membership, np.arange(height, dtype=np.float32))  # (F, K)
    columns = np.einsum("fhwk,w->fk", membership, np.arange(width, dtype=np.float32))  # (F, K)
    seen = mass >= MIN_SEEN_MASS  # (F, K)
    safe = np.where(seen, mass, 1.0)
    centroids = np.stack([rows / safe, columns / safe], axis=-1)  # (F, K, 2)
    h, w, top, left = letterbox_shape(height, width, size)
    scale = size / max(height, width)
    y = ((centroids[..., 0] + 0.5) * (h / height) + top) / size * 2 - 1  # (F, K)
    x = ((centroids[..., 1] + 0.5) * (w / width) + left) / size * 2 - 1  # (F, K)
    peak = np.maximum(mass.max(axis=0, keepdims=True), 1e-6)  # (1, K)
    tracks = np.stack([seen, np.where(seen, x, 0.0), np.where(seen, y, 0.0),
                       np.log1p(mass * scale**2), mass / peak], axis=-1)  # (F, K, 5)
    return tracks.transpose(1, 0, 2).astype(np.float32), centroids, mass


def slot_glimpses(membership: np.ndarray, centroids: np.ndarray, mass: np.ndarray, glimpse: int) -> np.ndarray:
    """`(K, F, G, G)` float32 windows of each seen slot's membership centred on its centroid (module docstring)."""
    frames, _, _, slots = membership.shape
    out = np.zeros((slots, frames, glimpse, glimpse), np.float32)
    offsets = (np.arange(glimpse, dtype=np.float32) + 0.5) / glimpse * 2 - 1  # (G,) in [-1, 1]
    for k in np.flatnonzero(mass.max(axis=0) >= MIN_SEEN_MASS):
        half = max(GLIMPSE_REACH * np.sqrt(mass[:, k].max() / np.pi), MIN_GLIMPSE_HALF)
        step = 2 * half / glimpse  # native px per glimpse px
        for f in np.flatnonzero(mass[:, k] >= MIN_SEEN_MASS):
            plane = membership[f, :, :, k]  # (H, W)
            if step > 1.5:  # shrinking: low-pass first so the bilinear samples do not alias
                plane = ndimage.gaussian_filter(plane, sigma=0.4 * step)
            row, column = centroids[f, k]
            grid = np.meshgrid(row + half * offsets, column + half * offsets, indexing="ij")  # 2 x (G, G)
            out[k, f] = ndimage.map_coordinates(plane, grid, order=1, mode="constant", cval=0.0)
    return out


def track_positions(length: int, slots: int) -> tuple[np.ndarray, np.ndarray]:
    """Which frames of a `length`-frame clip the track reads, and the time-aligned slots (of `slots`)
    they fill: every frame of a clip of at most `slots` frames, at slot round(t (slots-1)/(length-1))
    (a 9-frame clip fills every other slot of 17, the rest stay unseen, so speeds keep their
    meaning); a longer clip is subsampled like the view (`frame_indices`)."""
    if length == 1:
        return np.zeros(1, np.int64), np.zeros(1, np.int64)
    if length <= slots:
        frames = np.arange(length)
        return frames, np.rint(frames * (slots - 1) / (length - 1)).astype(np.int64)
    return frame_indices(length, slots), np.arange(slots)


def probe_inputs(video: np.ndarray, frames: int, size: int, glimpse: int, track_frames: int) -> dict:
    """The probe's inputs of a clip (module docstring), as uint8 x 255 except tracks:

    views `(frames, size, size, K + 1)`, tracks float32 `(K, track_frames, 5)` (time-aligned,
    `track_positions`), glimpses `(K, frames, G, G)`.
    """
    video = np.asarray(video)
    view_frames = frame_indices(len(video), frames)
    read, slots = track_positions(len(video), track_frames)
    needed = np.unique(np.concatenate([view_frames, read]))  # each frame's memberships computed once
    all_membership = palette_membership(video[needed])  # (N, H, W, K)
    membership = all_membership[np.searchsorted(needed, view_frames)]  # (F, H, W, K)
    _, centroids, mass = slot_tracks(membership, size)
    glimpses = slot_glimpses(membership, centroids, mass, glimpse)  # (K, F, G, G)
    tracks = np.zeros((len(PALETTE), track_frames, TRACK_FEATURES), np.float32)  # (K, Ft, 5)
    tracks[:, slots] = slot_tracks(all_membership[np.searchsorted(needed, read)], size)[0]
    return {"views": resample_view(membership, size), "tracks": tracks,
            "glimpses": np.rint(np.clip(glimpses, 0.0, 1.0) * 255).astype(np.uint8)}
