"""Palette membership, the probe's view of a clip, probe targets and the Fréchet distance."""
import json

import numpy as np
import pytest

from data_pipelines.shapes_world import COLOURS, generate_clip
from sora_jax.eval.frechet import frechet_distance
from sora_jax.eval.probe_data import probe_clip
from sora_jax.eval.targets import (
    DIRECTIONS,
    attribute_hits,
    clip_objects,
    compass,
    slot_targets,
)
from sora_jax.eval.world import (
    COLOUR_NAMES,
    area_matrix,
    frame_indices,
    letterbox_shape,
    palette_membership,
    probe_inputs,
    probe_view,
    track_positions,
)


def test_membership_of_palette_and_background_colours():
    palette = np.array([[COLOURS[name] for name in COLOUR_NAMES]], np.uint8)[None]  # (1, 1, K, 3)
    membership = palette_membership(palette)[0, 0]  # (K, K)
    np.testing.assert_allclose(np.diag(membership), 1.0, atol=5e-3)  # each colour is itself (minus the reject share)
    assert membership.sum(axis=1).max() <= 1.0 + 1e-6
    grey = np.full((1, 2, 2, 3), 128, np.uint8)  # far from every palette colour
    assert palette_membership(grey).max() < 1e-3
    halfway = ((np.array(COLOURS["orange"]) + np.array(COLOURS["yellow"])) / 2).astype(np.uint8)  # the closest pair
    assert palette_membership(halfway[None, None, None]).max() < 0.5


def test_membership_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        palette_membership(np.zeros((4, 4, 3), np.uint8))


def test_area_matrix_preserves_mass():
    for source, target in ((64, 48), (32, 48), (96, 48)):
        matrix = area_matrix(source, target)
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(matrix.sum() * source / target, source, rtol=1e-5)


def test_probe_view_letterboxes_and_keeps_object_mass():
    clip = generate_clip(3, 9, 32, 64)
    view = probe_view(clip["video"], 9, 48)  # (F, S, S, K + 1)
    assert view.shape == (9, 48, 48, len(COLOUR_NAMES) + 1) and view.dtype == np.uint8
    mask = view[0, :, :, -1] > 0
    assert mask.sum() == 24 * 48 and mask[12:36].all()  # 32x64 -> 24x48, centred
    scale = (48 / 64) ** 2
    native = palette_membership(clip["video"][:1]).sum()
    assert abs(view[0, :, :, :-1].astype(float).sum() / 255 - native * scale) < 0.03 * native * scale + 1


def test_tracks_follow_the_true_centres_and_glimpses_centre_and_scale_the_object():
    sizes = {}
    for index in range(8):
        clip = probe_clip(index, "validation")
        video, meta = clip["video"], clip["meta_dict"]
        height, width = video.shape[1:3]
        inputs = probe_inputs(video, 9, 48, 16, 17)
        assert inputs["tracks"].shape == (len(COLOUR_NAMES), 17, 5) and inputs["glimpses"].shape == (len(COLOUR_NAMES), 9, 16, 16)
        h, w, top, left = letterbox_shape(height, width, 48)
        frames = frame_indices(len(video), 9)
        read, slots = track_positions(len(video), 17)
        assert (inputs["tracks"][..., 0].sum(axis=1) <= len(read)).all()  # unread slots stay unseen
        for obj in meta["objects"]:
            slot = COLOUR_NAMES.index(obj["colour"])
            for f, t in enumerate(frames):
                track_slot = slots[list(read).index(t)]
                if obj["visibility"][t] < 0.99 or not inputs["tracks"][slot, track_slot, 0]:
                    continue  # centroids of clipped or occluded objects are biased by design
                x, y = inputs["tracks"][slot, track_slot, 1:3]
                # Back to native px (x right, y down, pixel centres at +0.5): undo the letterbox.
                native = ((x + 1) / 2 * 48 - left) * width / w, ((y + 1) / 2 * 48 - top) * height / h
                assert np.hypot(native[0] - obj["positions"][t][0], native[1] - obj["positions"][t][1]) < 0.6, (index, obj["shape"])
                glimpse = inputs["glimpses"][slot, f].astype(np.float64)  # (G, G)
                grid = np.arange(16) + 0.5
                centre = (glimpse.sum(0) @ grid / glimpse.sum(), glimpse.sum(1) @ grid / glimpse.sum())
                assert np.hypot(centre[0] - 8, centre[1] - 8) < 0.8  # centred (triangles: centroid, not centre)
                sizes.setdefault(obj["size"], []).append(glimpse.sum() / 255 / 256)
    # One window per slot scaled to its area: a whole object fills the same share of its glimpse
    # whether it is small or large (its share of the frame differs by (0.17 / 0.08)^2 = 4.5x).
    assert len(sizes) >= 2
    shares = [np.median(v) for v in sizes.values()]
    assert max(shares) / min(shares) < 1.25 and 0.15 < min(shares) < 0.4, sizes


def test_track_positions_are_time_aligned():
    assert track_positions(1, 17)[1].tolist() == [0]
    assert track_positions(9, 17)[1].tolist() == list(range(0, 17, 2))  # every other slot
    assert track_positions(5, 17)[1].tolist() == [0, 4, 8, 12, 16]
    assert track_positions(17, 17)[1].tolist() == list(range(17))
    frames, slots = track_positions(33, 17)  # longer: subsampled like the view
    assert frames.tolist() == list(range(0, 33, 2)) and slots.tolist() == list(range(17))


def test_targets_from_meta():
    assert compass((1, 0)) == "right" and compass((0, 1)) == "down" and compass((-1, -1)) == "up-left"
    assert compass((0, 0)) == "none" and compass((1, 0.4)) == "right"  # 21.8 degrees: still right
    clip = generate_clip(11, 9, 48, 48)
    meta = json.loads(clip["meta"])
    objects = clip_objects(meta)
    targets = slot_targets(objects)
    assert targets["present"].sum() == len(objects) == len(meta["objects"])
    for obj in objects:
        slot = COLOUR_NAMES.index(obj["colour"])
        assert DIRECTIONS[targets["direction"][slot]] == obj["direction"]
    hits = attribute_hits(objects, [dict(objects[0], shape="star" if objects[0]["shape"] != "star" else "circle")])
    assert hits["present"][0] and not hits["shape"][0] and hits["motion"][0]
    assert not any(hits["present"][1:])


def test_frechet_distance_matches_gaussian_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20000, 4))
    b = rng.normal(size=(20000, 4)) * 2.0 + np.array([1.0, 0, 0, 0])
    # N(0, I) vs N(m, 4I): |m|^2 + tr(I + 4I - 2 * 2I) = 1 + 4 * (1 + 4 - 4) = 5.
    assert frechet_distance(a, b) == pytest.approx(5.0, rel=0.03)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(a[:1], b)
