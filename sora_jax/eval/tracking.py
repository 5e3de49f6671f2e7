"""Classical tracking of Shapes World objects by colour: what physics, permanence and consistency read.

Each palette colour names at most one object per clip, so tracking is segmentation: per frame, the
pixels whose soft palette membership (`world.palette_membership`) for colour k exceeds 0.5 form a
mask; its largest 8-connected component, grown by one pixel to take in the anti-aliased fringe, is
the object. Its membership-weighted centroid (sub-pixel, in the meta's convention: pixel (i, j) is
centred at (j + 0.5, i + 0.5)), soft area, extents from the centroid and compactness
J = 2 pi sum(m r^2) / A^2 (1 for a disc, about 1.05 for a square, 1.2 for a triangle, more for the
star) are recorded per frame.

A frame is "full" for an object when its area is at least 85% of the object's reference area (the
90th percentile over frames) and it is not clipped by the frame edge (two or more fully covered
pixels on the border); shape descriptors are compared only on "whole" frames (95%). centroids and shape descriptors
of partly hidden or clipped objects are biased, so fits and shape checks use full frames only.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from sora_jax.eval.world import COLOUR_NAMES, palette_membership

MIN_AREA = 2.0  # px; smaller blobs are noise
FULL_FRACTION = 0.85
WHOLE_FRACTION = 0.95
PRESENT_FRACTION = 0.1  # of the reference area: below this the object counts as gone
_EIGHT = np.ones((3, 3), bool)


@dataclasses.dataclass
class Track:
    """One colour's object through a clip; per-frame arrays have length T (NaN where absent)."""

    colour: str
    area: np.ndarray  # (T,) soft area, px
    centre: np.ndarray  # (T, 2) x, y px
    extents: np.ndarray  # (T, 4) reach left, up, right, down from the centroid, px (as meta's extents)
    compactness: np.ndarray  # (T,) J, 1 for a disc
    touches_edge: np.ndarray  # (T,) bool
    reference_area: float = 0.0

    @property
    def present(self) -> np.ndarray:
        """(T,) bool: the object is seen (at least 10% of its reference area)."""
        return np.nan_to_num(self.area) >= max(MIN_AREA, PRESENT_FRACTION * self.reference_area)

    @property
    def full(self) -> np.ndarray:
        """(T,) bool: seen whole (>= 85% of its reference area, not touching the edge)."""
        return (np.nan_to_num(self.area) >= FULL_FRACTION * self.reference_area) & ~self.touches_edge & self.present

    @property
    def whole(self) -> np.ndarray:
        """(T,) bool: seen entirely (>= 95% of its reference area, not clipped): where shape is compared."""
        return (np.nan_to_num(self.area) >= WHOLE_FRACTION * self.reference_area) & ~self.touches_edge & self.present


def _component(mask: np.ndarray):
    """The largest 8-connected component of a boolean frame mask, grown by one pixel, as
    (row slice, column slice, mask within them); None if the frame mask is empty."""
    labels, count = ndimage.label(mask, structure=_EIGHT)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]  # (count,)
    best = 1 + int(np.argmax(sizes))
    rows, columns = ndimage.find_objects(labels, max_label=best)[best - 1]
    height, width = mask.shape
    rows = slice(max(rows.start - 1, 0), min(rows.stop + 1, height))  # room for the one-pixel growth
    columns = slice(max(columns.start - 1, 0), min(columns.stop + 1, width))
    # A 3x3 maximum filter is the 8-connected dilation (and much cheaper than binary_dilation per call).
    return rows, columns, ndimage.maximum_filter((labels[rows, columns] == best).view(np.uint8), size=3) > 0


def _measure(weights: np.ndarray, component) -> tuple:
    """Area, centroid, extents, compactness and edge contact of one component's soft weights."""
    height, width = weights.shape
    rows, columns, inside = component
    w = np.where(inside, weights[rows, columns], 0.0)  # (h, w) crop
    area = float(w.sum())
    grid_y = (np.arange(rows.start, rows.stop) + 0.5)[:, None]  # (h, 1)
    grid_x = (np.arange(columns.start, columns.stop) + 0.5)[None, :]  # (1, w)
    cx, cy = float((w * grid_x).sum() / area), float((w * grid_y).sum() / area)
    moment = float((w * ((grid_x - cx) ** 2 + (grid_y - cy) ** 2)).sum())
    # Reach of the half-covered pixels from the centroid (each such pixel spans [j, j + 1)).
    ys, xs = np.nonzero(w > 0.5) if (w > 0.5).any() else np.nonzero(inside)
    left, right = cx - (columns.start + xs.min()), columns.start + xs.max() + 1 - cx
    up, down = cy - (rows.start + ys.min()), rows.start + ys.max() + 1 - cy
    # Clipped by the frame: fully covered pixels on the border (a shape merely touching it leaves
    # only anti-aliased, partial pixels there).
    solid = w >= 0.95
    border = np.zeros_like(solid)
    if rows.start == 0:
        border[0] |= solid[0]
    if rows.stop == height:
        border[-1] |= solid[-1]
    if columns.start == 0:
        border[:, 0] |= solid[:, 0]
    if columns.stop == width:
        border[:, -1] |= solid[:, -1]
    edge = int(border.sum()) >= 2
    return area, (cx, cy), (left, up, right, down), 2 * np.pi * moment / max(area * area, 1e-9), edge


def track_clip(video: np.ndarray, membership: np.ndarray | None = None) -> dict[str, Track]:
    """Tracks every palette colour seen in `video uint8 (T, H, W, 3)`; returns {colour: Track}.

    A colour is tracked when some frame holds a component of at least `MIN_AREA` px.
    """
    membership = palette_membership(video) if membership is None else membership  # (T, H, W, K)
    frames = len(membership)
    tracks = {}
    for slot, colour in enumerate(COLOUR_NAMES):
        weights = membership[..., slot]  # (T, H, W)
        if weights.max() <= 0.5:
            continue
        track = Track(colour, np.full(frames, np.nan), np.full((frames, 2), np.nan), np.full((frames, 4), np.nan),
                      np.full(frames, np.nan), np.zeros(frames, bool))
        for t in range(frames):
            component = _component(weights[t] > 0.5)
            if component is None:
                continue
            area, centre, extents, compactness, edge = _measure(weights[t], component)
            if area >= MIN_AREA:
                track.area[t], track.centre[t], track.extents[t] = area, centre, extents
                track.compactness[t], track.touches_edge[t] = compactness, edge
        if np.any(np.nan_to_num(track.area) >= MIN_AREA):
            track.reference_area = float(np.nanpercentile(track.area, 90))
            tracks[colour] = track
    return tracks


def hidden_by(tracks: dict[str, Track], colour: str, frame: int, position: np.ndarray, radius: float) -> str | None:
    """The colour of a tracked object whose centre lies within reach of `position` at `frame`
    (within its own extent plus `radius`): what an object gone at `position` may be behind."""
    for other, track in tracks.items():
        if other == colour or not track.present[frame]:
            continue
        reach = float(np.max(track.extents[frame])) + radius
        if np.linalg.norm(track.centre[frame] - position) <= reach:
            return other
    return None
