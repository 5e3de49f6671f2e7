"""Physics, permanence and temporal consistency: real suite clips score (near) perfect, and each
corruption scores worse on the metric meant to catch it. Thresholds are the calibrated ones in the
metric modules (docs/eval.md)."""
import numpy as np
import pytest

from sora_jax.eval.corruptions import CORRUPTIONS, corrupt, deletion_target
from sora_jax.eval.harness import aggregate, score_clip
from sora_jax.eval.physics import RESIDUAL_PX, fall_positions, fold
from sora_jax.eval.suite import load_suite, reference_clip


@pytest.fixture(scope="module")
def suite():
    entries = load_suite()
    return entries, [reference_clip(e) for e in entries]


def _score(entries, videos):
    return aggregate([score_clip(e, v, None) for e, v in zip(entries, videos)])


@pytest.fixture(scope="module")
def real(suite):
    entries, clips = suite
    return _score(entries, [c["video"] for c in clips])


def _subset(suite, keep):
    entries, clips = suite
    chosen = [(e, c) for e, c in zip(entries, clips) if keep(e)]
    return [e for e, _ in chosen], [c for _, c in chosen]


def _corrupted(suite, name, keep):
    entries, clips = _subset(suite, keep)
    return entries, clips, _score(entries, [corrupt(name, c, e["occlusions"]) for e, c in zip(entries, clips)])


def test_models_reproduce_the_world():
    times = np.arange(9.0)
    np.testing.assert_allclose(fold(5.0, 3.0, 0.0, 10.0, times)[:4], [5, 8, 9, 6])  # reflects at 10
    heights = fall_positions(0.0, 2.0, 0.5, 16.0, np.arange(12.0))
    assert heights[4] == 16.0 and heights.max() <= 16.0 and np.all(np.diff(heights[:5]) > 0)


def test_real_clips_score_near_perfect(real):
    assert real["physics"]["pass_rate"] == 1.0 and real["physics"]["evaluable"] >= 45
    assert real["physics"]["mean_residual_px"] < 0.25 * RESIDUAL_PX
    assert real["permanence"]["pass_rate"] == 1.0 and real["permanence"]["events"] >= 10
    assert real["consistency"]["identity_flicker"] < 0.01
    assert real["consistency"]["motion_jitter_px"] < 0.5
    assert real["consistency"]["background_flicker"] < 1e-4


def _has_fall(entry):
    return any(obj["motion"] == "fall" for obj in entry["objects"])


def test_gravity_removed_fails_physics(suite):
    entries, _, corrupted = _corrupted(suite, "gravity_removed", _has_fall)
    assert len(entries) >= 4
    assert corrupted["physics"]["per_motion"]["fall"] == 0.0
    assert _score(*_subset(suite, _has_fall)[:1], [c["video"] for c in _subset(suite, _has_fall)[1]]) \
        ["physics"]["per_motion"]["fall"] == 1.0


def test_motion_reversed_fails_falls(suite):
    _, _, corrupted = _corrupted(suite, "motion_reversed", _has_fall)
    assert corrupted["physics"]["per_motion"]["fall"] <= 0.25


def test_object_deleted_fails_permanence_and_flickers(suite, real):
    entries, clips, corrupted = _corrupted(suite, "object_deleted", lambda e: True)
    assert corrupted["permanence"]["pass_rate"] <= 0.2
    assert corrupted["permanence"]["returned_rate"] <= 0.2
    # Deleted in the open (prompts without occlusions): it vanishes without an edge or occluder.
    open_deletions = _score(*_subset(suite, lambda e: not e["occlusions"])[:1],
                            [corrupt("object_deleted", c, []) for c in _subset(suite, lambda e: not e["occlusions"])[1]])
    assert open_deletions["consistency"]["identity_flicker"] > 5 * max(real["consistency"]["identity_flicker"], 0.002)
    colour, start = deletion_target(clips[0]["meta_dict"], entries[0]["occlusions"])
    assert colour in [o["colour"] for o in entries[0]["objects"]] and 0 < start < entries[0]["frames"]


def test_frames_shuffled_fail_consistency_and_physics(suite, real):
    _, _, corrupted = _corrupted(suite, "frames_shuffled", lambda e: True)
    assert corrupted["consistency"]["motion_jitter_px"] > 10 * real["consistency"]["motion_jitter_px"]
    assert corrupted["physics"]["pass_rate"] < 0.6
    assert corrupted["physics"]["mean_residual_px"] > 10 * real["physics"]["mean_residual_px"]


def test_colours_swapped_lose_the_prompted_objects(suite):
    entries, clips = _subset(suite, lambda e: True)
    swapped = corrupt("colours_swapped", clips[0], entries[0]["occlusions"])
    result = score_clip(entries[0], swapped, None)
    assert all(f["reason"] == "object not found" for f in result["physics"])  # no prompted colour is there
    assert set(result["trajectories"]) == set()


def test_unknown_corruption_is_a_clear_error(suite):
    _, clips = suite
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt("blurred", clips[0])
    assert len(CORRUPTIONS) == 5
