"""Object permanence: an object hidden behind another for some frames comes back, the same colour
and shape.

An expected occlusion comes from the prompt's ground truth (the suite stores each occlusion event
of its reference clip whose hidden object is at most half visible and whose end is before the last
frame, so the object must be seen again). The tracked object (its colour is its identity) passes
when it is seen in some frame after the event, and its shape descriptors after match those before:
compactness J within `compactness_tolerance(area)` and soft area within a factor `AREA_RATIO`
(both calibrated on real clips, docs/eval.md), compared on frames where the object is seen whole;
when it is never seen whole on one side, only its return is checked. An object deleted, or replaced
by a clearly different shape while hidden, fails.
"""
from __future__ import annotations

import numpy as np

from sora_jax.eval.tracking import Track

AREA_RATIO = 1.35


def compactness_tolerance(area: float) -> float:
    """Allowed change of compactness J for an object of `area` px: pixelation and rotation make J of
    small objects noisy (about +-0.15 at 25 px, +-0.02 at 150 px on real clips)."""
    return 0.05 + 1.0 / np.sqrt(max(area, 1.0))


def shape_descriptor(track: Track, frames: np.ndarray) -> tuple[float, float] | None:
    """(median compactness, median area) over the given frames where the object is seen whole; None if none."""
    chosen = frames[track.whole[frames]]
    if len(chosen) == 0:
        return None
    return float(np.median(track.compactness[chosen])), float(np.median(track.area[chosen]))


def same_shape(before: tuple[float, float], after: tuple[float, float]) -> bool:
    """Whether two shape descriptors describe the same object (module docstring tolerances)."""
    ratio = after[1] / max(before[1], 1e-9)
    tolerance = compactness_tolerance(min(before[1], after[1]))
    return abs(after[0] - before[0]) <= tolerance and 1 / AREA_RATIO <= ratio <= AREA_RATIO


def check_occlusion(tracks: dict[str, Track], event: dict, frames: int) -> dict:
    """Verdict on one expected occlusion `{"occluded", "occluder", "frames": [first, last]}` (colours).

    Returns the event with `seen_before`, `hidden_frames` (frames in [first, last] where the object is
    not seen), `returned`, `same_shape` (None when it cannot be compared) and `passed`.
    """
    first, last = event["frames"]
    result = dict(event, seen_before=False, hidden_frames=0, returned=False, same_shape=None, passed=False)
    track = tracks.get(event["occluded"])
    if track is None:
        return result
    indices = np.arange(frames)
    before = shape_descriptor(track, indices[:first]) if first > 0 else None
    result["seen_before"] = bool(track.present[:first].any())
    result["hidden_frames"] = int((~track.present[first : last + 1]).sum())
    after_frames = indices[last + 1 :]
    result["returned"] = bool(track.present[after_frames].any())
    after = shape_descriptor(track, after_frames) if result["returned"] else None
    if before is not None and after is not None:
        result["same_shape"] = same_shape(before, after)
    result["passed"] = result["returned"] and result["same_shape"] is not False
    return result


def permanence(tracks: dict[str, Track], events: list[dict], frames: int) -> dict:
    """All expected occlusions of a clip: {"events": [...], "passed": count, "total": count}."""
    checked = [check_occlusion(tracks, event, frames) for event in events]
    return {"events": checked, "passed": sum(e["passed"] for e in checked), "total": len(checked)}
