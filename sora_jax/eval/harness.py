"""Scoring clips against the prompt suite: prompt following, Fréchet distance, physics, permanence
and temporal consistency, per clip and aggregated.

`generate_clips(generate_fn, entries)` asks any generator for the suite's clips through one plain
callable `generate_fn(prompt, frames, height, width, seed) -> uint8 (T, H, W, 3)`, so the harness
does not depend on how generation is built. `score_clips(entries, videos, reader)` computes every
metric; the same call on the suite's real reference clips gives the ceiling the report shows next
to the model (real clips score near perfect).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from sora_jax.eval.consistency import background_flicker, identity_flicker, motion_jitter
from sora_jax.eval.frechet import frechet_distance
from sora_jax.eval.permanence import permanence
from sora_jax.eval.physics import fit_motion, world_gravity
from sora_jax.eval.probe import ProbeReader
from sora_jax.eval.probe_data import SEED_BASES, still_clip
from sora_jax.eval.targets import ATTRIBUTES, attribute_hits, decode_slots
from sora_jax.eval.tracking import track_clip
from sora_jax.eval.world import palette_membership

GenerateFn = Callable[[str, int, int, int, int], np.ndarray]
ALTERNATE_SEED_OFFSET = 100_000  # real clips of the suite's shapes from other seeds: the Fréchet floor


def check_video(video, entry: dict) -> np.ndarray:
    """The generated clip as uint8 `(T, H, W, 3)` of the entry's shape; ValueError naming the mismatch."""
    video = np.asarray(video)
    expected = (entry["frames"], entry["height"], entry["width"], 3)
    if video.shape != expected:
        raise ValueError(f"prompt {entry['id']}: generator returned shape {video.shape}, expected {expected}")
    if video.dtype != np.uint8:
        raise ValueError(f"prompt {entry['id']}: generator returned {video.dtype}, expected uint8")
    return video


PROMPT_FIELDS = ("prompt", "prompt_short")


def generate_clips(generate_fn: GenerateFn, entries: list[dict], seed: int = 0, field: str = "prompt") -> list[np.ndarray]:
    """One clip per suite entry from `generate_fn(text, frames, height, width, seed)`, the text being the
    entry's detailed `prompt` or its `prompt_short` (`field`; the scoring always uses the entry's objects)."""
    if field not in PROMPT_FIELDS:
        raise ValueError(f"prompt field must be one of {PROMPT_FIELDS}, got {field!r}")
    return [check_video(generate_fn(e[field], e["frames"], e["height"], e["width"], seed), e) for e in entries]


def alternate_real_clips(entries: list[dict]) -> list[np.ndarray]:
    """Real still-camera clips of the suite's shapes from other seeds (the real-vs-real Fréchet floor)."""
    return [still_clip(SEED_BASES["suite"] + ALTERNATE_SEED_OFFSET + i, e["frames"], e["height"], e["width"])["video"]
            for i, e in enumerate(entries)]


def score_clip(entry: dict, video: np.ndarray, probe_objects: list[dict] | None) -> dict:
    """Every per-clip metric of one clip for its suite entry (see the module docstrings of each metric)."""
    membership = palette_membership(video)  # (T, H, W, K)
    tracks = track_clip(video, membership)
    height, width, fps = entry["height"], entry["width"], entry["fps"]
    result = {"id": entry["id"]}
    if probe_objects is not None:
        result["probe"] = probe_objects
        result["hits"] = attribute_hits(entry["objects"], probe_objects)
    fits = []
    if entry["frames"] >= 3:
        for obj in entry["objects"]:
            track = tracks.get(obj["colour"])
            if track is not None:
                fit = fit_motion(track, obj["motion"], height, width, fps)
                fits.append({"colour": fit.colour, "motion": fit.motion, "residual_px": fit.residual_px,
                             "passed": fit.passed, "frames_used": fit.frames_used, "reason": fit.reason,
                             "evaluable": fit.frames_used >= 3 and np.isfinite(fit.residual_px)})
            else:
                fits.append({"colour": obj["colour"], "motion": obj["motion"], "residual_px": None, "passed": False,
                             "frames_used": 0, "reason": "object not found", "evaluable": False})
    result["physics"] = fits
    result["permanence"] = permanence(tracks, entry["occlusions"], entry["frames"])
    colours = [obj["colour"] for obj in entry["objects"]]
    rate, events = identity_flicker(tracks, colours, height, width)
    motions = {obj["colour"]: obj["motion"] for obj in entry["objects"]}
    result["consistency"] = {
        "identity_flicker": rate, "flicker_events": events,
        "motion_jitter_px": motion_jitter(tracks, motions, world_gravity(height, fps)),
        "background_flicker": background_flicker(video, membership),
    }
    result["trajectories"] = {c: t.centre.tolist() for c, t in tracks.items() if c in colours}
    return result


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def aggregate(clips: list[dict]) -> dict:
    """Suite-level figures from per-clip results (means and pass rates; None where nothing applies)."""
    out = {"clips": len(clips)}
    if clips and "hits" in clips[0]:
        hits = {name: [h for c in clips for h in c["hits"][name]] for name in ATTRIBUTES}
        out["prompt_following"] = {"accuracy": _mean([h for name in ATTRIBUTES for h in hits[name]]),
                                   "per_attribute": {name: _mean(hits[name]) for name in ATTRIBUTES}}
    fits = [f for c in clips for f in c["physics"]]
    evaluable = [f for f in fits if f["evaluable"]]
    out["physics"] = {
        "pass_rate": _mean([f["passed"] for f in evaluable]),
        "mean_residual_px": _mean([f["residual_px"] for f in evaluable]),
        "per_motion": {m: _mean([f["passed"] for f in evaluable if f["motion"] == m])
                       for m in sorted({f["motion"] for f in evaluable})},
        "evaluable": len(evaluable), "objects": len(fits),
    }
    events = [e for c in clips for e in c["permanence"]["events"]]
    out["permanence"] = {"pass_rate": _mean([e["passed"] for e in events]), "events": len(events),
                         "returned_rate": _mean([e["returned"] for e in events])}
    out["consistency"] = {name: _mean([c["consistency"][name] for c in clips])
                          for name in ("identity_flicker", "motion_jitter_px", "background_flicker")}
    return out


def score_clips(entries: list[dict], videos: list[np.ndarray], reader: ProbeReader | None = None,
                reference_features: np.ndarray | None = None) -> dict:
    """Per-clip results and their aggregate; with a probe `reader`, prompt following and (given the
    real clips' features) the Fréchet distance to them. Returns {"summary", "clips", "features"}."""
    if len(entries) != len(videos):
        raise ValueError(f"{len(videos)} clips for {len(entries)} prompts")
    outputs = reader.read(videos) if reader is not None else None
    clips = []
    for i, (entry, video) in enumerate(zip(entries, videos)):
        objects = None
        if outputs is not None:
            objects = decode_slots(outputs["present"][i], outputs["shape"][i], outputs["motion"][i],
                                   outputs["direction"][i])
        clips.append(score_clip(entry, video, objects))
    summary = aggregate(clips)
    features = outputs["features"] if outputs is not None else None
    if features is not None and reference_features is not None:
        summary["frechet"] = frechet_distance(features, reference_features)
    return {"summary": summary, "clips": clips, "features": features}
