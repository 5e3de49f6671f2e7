"""Temporal consistency: does an object keep its identity, move smoothly and leave the rest still?

- `identity_flicker`: per prompted object and pair of consecutive frames, an event is counted when
  the object vanishes or appears in the open (not at the frame edge, not behind or out from behind
  another tracked object), or when, seen whole in both frames, its shape descriptors jump
  (compactness or area beyond the permanence tolerances, on frames where it is seen whole). The rate is
  events / (objects x frame pairs): 0 for real clips.
- `motion_jitter_px`: the median over consecutive whole-object frame triples of the centroid's
  second difference |p[t+1] - 2 p[t] + p[t-1]| (px/frame^2), with the world's gravity taken off for
  objects prompted to fall (whichever of |a - g| and |a| is smaller, so resting counts as smooth),
  averaged over objects. Real motion is piecewise smooth (bounces are single frames the median
  ignores), so real clips score ~0.1 px; shuffled frames score several px.
- `background_flicker`: mean absolute change (in [0, 1]) of pixels that are background in both of
  two consecutive frames (2 px away from any object colour): 0 for a still camera.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from sora_jax.eval.permanence import same_shape
from sora_jax.eval.tracking import Track, hidden_by
from sora_jax.eval.world import palette_membership

EDGE_MARGIN_PX = 2.0


def _near_edge(track: Track, frame: int, height: int, width: int) -> bool:
    """The object at `frame` is clipped by, or within a couple of px of, the frame edge."""
    if track.touches_edge[frame]:
        return True
    left, up, right, down = track.extents[frame]
    x, y = track.centre[frame]
    return min(x - left, y - up, width - x - right, height - y - down) <= EDGE_MARGIN_PX


def _explained(tracks, track, seen: int, other: int, height: int, width: int) -> bool:
    """A change between frame `seen` (object visible) and `other` explained by an edge or an occluder."""
    radius = float(np.nanmax(track.extents[seen]))
    return _near_edge(track, seen, height, width) or hidden_by(tracks, track.colour, other, track.centre[seen],
                                                               radius) is not None


def identity_flicker(tracks: dict[str, Track], colours: list[str], height: int, width: int) -> tuple[float, int]:
    """(rate, events) of unexplained identity changes of the objects with `colours` (module docstring).

    A prompted colour never tracked counts as one event per frame pair (it flickers out entirely).
    """
    events, pairs = 0, 0
    for colour in colours:
        track = tracks.get(colour)
        if track is None:
            continue
        present, whole = track.present, track.whole
        pairs += len(present) - 1
        for t in range(1, len(present)):
            if present[t - 1] and not present[t]:
                events += not _explained(tracks, track, t - 1, t, height, width)
            elif present[t] and not present[t - 1]:
                events += not _explained(tracks, track, t, t - 1, height, width)
            elif whole[t] and whole[t - 1]:
                events += not same_shape((track.compactness[t - 1], track.area[t - 1]),
                                         (track.compactness[t], track.area[t]))
    return (events / pairs if pairs else 0.0), events


def motion_jitter(tracks: dict[str, Track], motions: dict[str, str], gravity: float) -> float:
    """Mean over objects of the median second difference of whole-object centroids, px/frame^2."""
    jitters = []
    for colour, motion in motions.items():
        track = tracks.get(colour)
        if track is None:
            continue
        full = track.full
        triples = np.flatnonzero(full[:-2] & full[1:-1] & full[2:]) if len(full) >= 3 else np.array([], int)
        if not len(triples):
            continue
        centre = track.centre
        accel = centre[triples + 2] - 2 * centre[triples + 1] + centre[triples]  # (N, 2)
        if motion == "fall":
            falling = np.abs(accel[:, 1] - gravity) < np.abs(accel[:, 1])
            accel[:, 1] = np.where(falling, accel[:, 1] - gravity, accel[:, 1])
        jitters.append(float(np.median(np.linalg.norm(accel, axis=1))))
    return float(np.mean(jitters)) if jitters else 0.0


def background_flicker(video: np.ndarray, membership: np.ndarray | None = None) -> float:
    """Mean |change| in [0, 1] of pixels that are background in two consecutive frames: at least
    2 px from any pixel with a trace (> 0.02) of a palette colour, so anti-aliased object edges are out."""
    if len(video) < 2:
        return 0.0
    membership = palette_membership(video) if membership is None else membership  # (T, H, W, K)
    traces = (membership.sum(axis=-1) > 0.02).view(np.uint8)  # (T, H, W)
    objects = ndimage.maximum_filter(traces, size=(1, 5, 5)) > 0  # (T, H, W) grown by 2 px
    background = ~objects[1:] & ~objects[:-1]  # (T - 1, H, W)
    change = np.abs(video[1:].astype(np.float32) - video[:-1].astype(np.float32)).mean(axis=-1) / 255.0  # (T - 1, H, W)
    return float(change[background].mean()) if background.any() else 0.0
