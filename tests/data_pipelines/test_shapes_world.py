"""Shapes World: determinism, shapes, caption/meta agreement, physics, occlusion, anti-aliasing."""
import functools
import json
import math

import numpy as np
import pytest

from data_pipelines.shapes_world import (
    BACKGROUND_COLOURS,
    BACKGROUNDS,
    COLOURS,
    MOTION_VERBS,
    MOTIONS,
    SHAPES,
    SIZES,
    generate_clip,
)
from data_pipelines.shapes_world.scene import SHAPE_GEOMETRY

CORPUS_SEEDS = range(150)


def _clip(seed, frames=17, height=64, width=64, **kwargs):
    record = generate_clip(seed, frames, height, width, **kwargs)
    return record, json.loads(record["meta"])


@functools.lru_cache(maxsize=None)
def _corpus():
    """150 clips of 17 x 64 x 64, shared by the tests that check properties over many scenes."""
    return [_clip(seed) for seed in CORPUS_SEEDS]


def _objects(motion):
    return [(meta, obj) for _, meta in _corpus() for obj in meta["objects"] if obj["motion"] == motion]


def _name(obj):
    return f"the {obj['colour']} {obj['shape']}"


def _world(meta, obj):
    """World positions (T, 2): screen positions plus camera offsets."""
    return np.array(obj["positions"]) + np.array(meta["camera"]["offsets"])


@pytest.mark.parametrize("args", [(0, 17, 64, 64, 8.0), (7, 5, 16, 256, 24.0), (123, 1, 32, 32, 8.0)])
def test_same_arguments_give_bit_identical_clips(args):
    seed, frames, height, width, fps = args
    first = generate_clip(seed, frames, height, width, fps=fps)
    np.random.seed(999)  # global numpy state must not matter
    np.random.random(10)
    second = generate_clip(seed, frames, height, width, fps=fps)
    assert first["video"].tobytes() == second["video"].tobytes()
    assert (first["caption_short"], first["caption"], first["meta"]) == (
        second["caption_short"], second["caption"], second["meta"])


def test_different_seeds_give_different_clips():
    records = [generate_clip(seed, 9, 32, 32) for seed in range(12)]
    assert len({record["video"].tobytes() for record in records}) == 12
    assert len({record["meta"] for record in records}) == 12
    assert len({record["caption"] for record in records}) >= 11


@pytest.mark.parametrize("frames,height,width", [
    (17, 64, 64), (1, 64, 64), (1, 16, 16), (5, 16, 256), (4, 256, 32), (9, 48, 80), (2, 17, 23)])
def test_video_shape_and_dtype(frames, height, width):
    for seed in range(4):
        record, meta = _clip(seed, frames, height, width)
        assert record["video"].shape == (frames, height, width, 3)
        assert record["video"].dtype == np.uint8
        assert (meta["frames"], meta["height"], meta["width"]) == (frames, height, width)
        assert len(meta["camera"]["offsets"]) == frames
        assert 1 <= len(meta["objects"]) <= 3
        for obj in meta["objects"]:
            for key in ("positions", "velocities", "angles", "visibility", "in_frame"):
                assert len(obj[key]) == frames, key


def test_vocabularies():
    assert {"circle", "square", "triangle", "star"} <= set(SHAPES)
    assert len(COLOURS) >= 6 and len(set(COLOURS.values())) == len(COLOURS)
    assert SIZES["small"] < SIZES["medium"] < SIZES["large"]
    assert tuple(BACKGROUNDS) == ("solid", "gradient", "texture")
    assert set(MOTIONS) == {"static", "linear", "bounce", "fall", "rotate"} == set(MOTION_VERBS)
    metas = [meta for _, meta in _corpus()]
    objects = [obj for meta in metas for obj in meta["objects"]]
    assert {obj["shape"] for obj in objects} == set(SHAPES)
    assert {obj["motion"] for obj in objects} == set(MOTIONS)
    assert {obj["colour"] for obj in objects} == set(COLOURS)
    assert {meta["background"]["kind"] for meta in metas} == set(BACKGROUNDS)
    assert sum(meta["camera"]["pan"] for meta in metas) >= 15


def test_detailed_caption_mentions_every_object_and_motion():
    checked = 0
    for record, meta in _corpus():
        caption = record["caption"]
        for obj in meta["objects"]:
            assert f"{obj['size']} {obj['colour']} {obj['shape']}" in caption
            assert f"{obj['colour']} {obj['shape']}" in record["caption_short"]
            sentence = next(part for part in caption.split(". ") if part.startswith(_name(obj).capitalize()))
            assert MOTION_VERBS[obj["motion"]] in sentence, (sentence, obj["motion"])
            checked += 1
        assert ("The camera pans " + str(meta["camera"]["direction"])) in caption or not meta["camera"]["pan"]
    assert checked >= 250


def test_caption_reports_bounce_and_floor_frames_from_meta():
    checked = 0
    for record, meta in _corpus():
        for obj in meta["objects"]:
            if obj["motion"] == "bounce":
                wall, frame = obj["bounce_walls"][0], obj["bounces"][0]
                assert f"the {wall} wall at frame {frame}" in record["caption"]
                checked += 1
            if obj["motion"] == "fall" and obj["bounces"]:
                assert f"at frame{'s' if len(obj['bounces']) > 1 else ''} {obj['bounces'][0]}" in record["caption"]
                checked += 1
    assert checked >= 20


def test_occlusion_caption_names_both_objects_with_behind():
    events = 0
    for record, meta in _corpus():
        sentences = record["caption"].split(". ")
        for event in meta["occlusions"]:
            occluded, occluder = _name(meta["objects"][event["occluded"]]), _name(meta["objects"][event["occluder"]])
            first, last = event["frames"]
            span = "throughout the clip" if (first, last) == (0, meta["frames"] - 1) else f"frame {first}"
            phrase = [s for s in sentences
                      if s.startswith(occluded.capitalize()) and f"behind {occluder} " in s and span in s]
            assert len(phrase) == 1, (event, record["caption"])
            events += 1
    assert events >= 40


def test_single_frame_is_a_still_image():
    for seed in range(30):
        record, meta = _clip(seed, 1, 48, 40)
        assert not meta["camera"]["pan"]
        for obj in meta["objects"]:
            assert obj["motion"] == "static"
            assert obj["velocities"] == [[0.0, 0.0]]
            assert f"{_name(obj).capitalize()} is " in record["caption"]
        for word in ("moves", "bounces", "falls", "spins", "pans", "stays still", "frame "):
            assert word not in record["caption"], (word, record["caption"])


def test_linear_motion_has_constant_velocity():
    objects = _objects("linear")
    assert len(objects) >= 20
    for meta, obj in objects:
        velocities = np.array(obj["velocities"])  # (T, 2) screen px/frame
        assert np.all(velocities == velocities[0])
        steps = np.diff(np.array(obj["positions"]), axis=0)  # (T - 1, 2)
        np.testing.assert_allclose(steps, velocities[1:], atol=2e-3)
        assert np.abs(velocities[0] + np.array(meta["camera"]["velocity"])).max() > 0.05


def test_bounce_keeps_objects_inside_the_walls():
    objects = _objects("bounce")
    assert len(objects) >= 15
    for meta, obj in objects:
        world = _world(meta, obj)  # (T, 2)
        left, up, right, down = obj["extents"]
        x0, y0, x1, y1 = meta["world_box"]
        assert np.all(world[:, 0] - left >= x0 - 1e-3) and np.all(world[:, 0] + right <= x1 + 1e-3)
        assert np.all(world[:, 1] - up >= y0 - 1e-3) and np.all(world[:, 1] + down <= y1 + 1e-3)
        assert len(obj["bounces"]) >= 1
        velocities = np.array(obj["velocities"]) + np.array(meta["camera"]["velocity"])  # (T, 2) world
        for frame, wall in zip(obj["bounces"], obj["bounce_walls"]):
            axis = 0 if wall in ("left", "right") else 1
            heading_out = 1 if wall in ("right", "bottom") else -1
            assert velocities[frame, axis] * heading_out < 0  # moving away from the wall it hit
        if not meta["camera"]["pan"]:
            assert min(obj["in_frame"]) >= 0.9999  # the rendered coverage never leaves the frame


def test_fall_accelerates_by_gravity_between_bounces():
    objects = _objects("fall")
    assert len(objects) >= 10
    steps = bounces = 0
    for meta, obj in objects:
        gravity = obj["gravity"]
        assert gravity > 0 and 0 < obj["restitution"] < 1
        vy = np.array(obj["velocities"])[:, 1]  # (T,) px/frame
        rest = obj["rest_frame"] if obj["rest_frame"] is not None else meta["frames"]
        for frame in range(meta["frames"] - 1):
            if frame + 1 not in obj["bounces"] and frame + 1 < rest:
                assert vy[frame + 1] - vy[frame] == pytest.approx(gravity, abs=3e-4)
                steps += 1
        for frame in obj["bounces"]:
            if frame >= rest:
                continue  # it bounced and settled between two frames
            assert vy[frame] - vy[frame - 1] < gravity - 1e-3  # the floor's upward kick
            bounces += 1
        floor = meta["world_box"][3] - obj["extents"][3]
        assert np.all(_world(meta, obj)[:, 1] <= floor + 1e-3)
    assert steps >= 100 and bounces >= 8


def test_occluded_object_shows_the_occluder_colour_at_its_centre():
    checked = 0
    for record, meta in _corpus():
        if meta["scenario"] != "pass_behind":
            continue
        occluder, passer = meta["objects"][0], meta["objects"][1]
        assert occluder["depth"] < passer["depth"]
        assert meta["depth_order"].index(0) < meta["depth_order"].index(1)
        assert any(e["occluder"] == 0 and e["occluded"] == 1 for e in meta["occlusions"])
        if any(obj["depth"] < occluder["depth"] for obj in meta["objects"][2:]):
            continue  # a third, nearer object could be the one covering the passer's centre
        gaps = np.linalg.norm(np.array(passer["positions"]) - np.array(occluder["positions"]), axis=1)  # (T,)
        frame = int(gaps.argmin())
        x, y = passer["positions"][frame]
        pixel = record["video"][frame, int(y), int(x)].astype(int)
        assert passer["visibility"][frame] < 1.0
        assert np.abs(pixel - occluder["rgb"]).max() <= 2, (pixel, occluder["rgb"])
        checked += 1
    assert checked >= 25


def test_occlusions_happen_in_many_multi_object_clips():
    multi = [meta for _, meta in _corpus() if len(meta["objects"]) > 1]
    with_occlusion = [meta for meta in multi if meta["occlusions"]]
    assert len(multi) >= 60
    assert len(with_occlusion) / len(multi) >= 0.4
    for meta in with_occlusion:
        for event in meta["occlusions"]:
            depth = {obj["id"]: obj["depth"] for obj in meta["objects"]}
            assert depth[event["occluder"]] < depth[event["occluded"]]
            first, last = event["frames"]
            visibility = meta["objects"][event["occluded"]]["visibility"][first:last + 1]
            assert min(visibility) < 1.0
            assert event["min_visibility"] == pytest.approx(min(visibility), abs=1e-4)


def test_visibility_is_measured_on_the_render():
    for _, meta in _corpus():
        for obj in meta["objects"]:
            visibility, in_frame = np.array(obj["visibility"]), np.array(obj["in_frame"])
            assert np.all((0 <= visibility) & (visibility <= in_frame + 1e-4) & (in_frame <= 1))
            covered = {f for e in meta["occlusions"] if e["occluded"] == obj["id"]
                       for f in range(e["frames"][0], e["frames"][1] + 1)}
            free = [f for f in range(meta["frames"]) if f not in covered]
            # Without occlusion only the frame edges can hide an object (fringe overlaps are tiny).
            np.testing.assert_allclose(visibility[free], in_frame[free], atol=0.02)
            if len(meta["objects"]) == 1:
                np.testing.assert_array_equal(visibility, in_frame)


def test_render_agrees_with_meta_positions():
    checked = 0
    for record, meta in _corpus()[:60]:
        for obj in meta["objects"]:
            for frame in range(0, meta["frames"], 4):
                if obj["visibility"][frame] < 1.0 or obj["radius"] < 5:
                    continue
                image = record["video"][frame].astype(int)  # (H, W, 3)
                mask = np.abs(image - obj["rgb"]).max(axis=-1) <= 2  # (H, W) solid interior pixels
                rows, columns = np.nonzero(mask)
                centroid = np.array([columns.mean() + 0.5, rows.mean() + 0.5])
                assert np.linalg.norm(centroid - obj["positions"][frame]) < 0.6
                checked += 1
    assert checked >= 100


def _analytic_area(shape, radius):
    geometry = SHAPE_GEOMETRY[shape]
    if geometry.folds == 0:
        return math.pi * radius**2
    return geometry.folds * radius * radius * geometry.second_radius * math.sin(math.pi / geometry.folds)


def test_anti_aliased_edges_have_intermediate_values_and_exact_area():
    seen = set()
    for seed in range(400):
        record, meta = _clip(seed, 2, 64, 64)
        obj = meta["objects"][0]
        if len(meta["objects"]) > 1 or meta["background"]["kind"] != "solid" or obj["shape"] in seen:
            continue
        if min(obj["in_frame"]) < 1:
            continue
        seen.add(obj["shape"])
        background = np.array(BACKGROUND_COLOURS[meta["background"]["colours"][0]])
        channel = int(np.abs(np.array(obj["rgb"]) - background).argmax())
        alpha = (record["video"][0, :, :, channel] - background[channel]) / (obj["rgb"][channel] - background[channel])
        edge = (alpha > 0.05) & (alpha < 0.95)  # (H, W)
        assert edge.sum() >= 2 * math.pi * obj["radius"] * 0.5  # roughly a pixel per unit of perimeter
        assert alpha.min() >= -0.01 and alpha.max() <= 1.01
        assert alpha.sum() == pytest.approx(_analytic_area(obj["shape"], obj["radius"]), rel=0.03)
    assert seen == set(SHAPES)


def test_camera_pan_shifts_the_world():
    pans = [meta for _, meta in _corpus() if meta["camera"]["pan"]]
    assert len(pans) >= 15
    for meta in pans:
        offsets, velocity = np.array(meta["camera"]["offsets"]), np.array(meta["camera"]["velocity"])
        np.testing.assert_allclose(offsets, np.arange(meta["frames"])[:, None] * velocity, atol=1e-3)
        for obj in meta["objects"]:
            if obj["motion"] == "static":
                world = _world(meta, obj)
                np.testing.assert_allclose(world, world[:1].repeat(len(world), axis=0), atol=1e-3)
                np.testing.assert_allclose(obj["velocities"], -velocity[None].repeat(meta["frames"], 0), atol=1e-4)


def test_pan_moves_the_background_with_the_camera():
    for seed in range(400):
        record, meta = _clip(seed, 3, 32, 64)
        if meta["camera"]["pan"] and meta["background"]["kind"] == "texture":
            break
    shift = np.array(meta["camera"]["offsets"][2]) - np.array(meta["camera"]["offsets"][0])
    video = record["video"].astype(float)
    later = np.roll(video[2], shift=tuple(np.round(shift[::-1]).astype(int)), axis=(0, 1))
    # Away from the borders and objects, frame 2 shifted back by the pan matches frame 0.
    margin = 8
    difference = np.abs(later - video[0])[margin:-margin, margin:-margin].mean()
    unshifted = np.abs(video[2] - video[0])[margin:-margin, margin:-margin].mean()
    assert np.linalg.norm(shift) >= 1.0
    assert difference < 0.5 * unshifted


def test_max_objects_is_respected():
    assert {len(_clip(seed, 3, 32, 32, max_objects=1)[1]["objects"]) for seed in range(20)} == {1}
    counts = {len(_clip(seed, 3, 32, 32, max_objects=5)[1]["objects"]) for seed in range(60)}
    assert counts == {1, 2, 3, 4, 5}


@pytest.mark.parametrize("args,kwargs", [
    ((0, 0, 64, 64), {}), ((0, -3, 64, 64), {}), ((0, 8, 15, 64), {}), ((0, 8, 64, 8), {}),
    ((-1, 8, 64, 64), {}), ((0, 8, 64, 64), {"fps": 0.0}), ((0, 8, 64, 64), {"max_objects": 0}),
    ((0, 8, 64, 64), {"max_objects": 7})])
def test_bad_arguments_raise_value_error(args, kwargs):
    with pytest.raises(ValueError):
        generate_clip(*args, **kwargs)


def test_non_integer_sizes_raise_type_error():
    with pytest.raises(TypeError):
        generate_clip(0, 8.5, 64, 64)


@pytest.mark.parametrize("seed", [3, 11, 42])
def test_object_ids_are_the_visible_pixels_of_each_object(seed):
    from data_pipelines.shapes_world.render import object_ids, render_scene
    from data_pipelines.shapes_world.scene import sample_scene

    scene = sample_scene(seed, 5, 64, 96, 8.0, 3)
    video, stats = render_scene(scene)
    ids = object_ids(scene)  # (T, H, W)
    assert ids.shape == video.shape[:3] and ids.min() >= -1 and ids.max() < len(scene.objects)
    for k, obj in enumerate(scene.objects):
        for t in range(scene.frames):
            mine = ids[t] == k
            visible = stats.area[k, t] * stats.visibility[k, t]  # px, occlusion and frame edges removed
            assert abs(mine.sum() - visible) <= 0.1 * stats.area[k, t] + 3
            # A labelled pixel is at least half this object's colour, so no channel is off by more than
            # half the range; in all but the smallest footprints most pixels are the colour itself.
            distance = np.abs(video[t][mine].astype(int) - np.array(COLOURS[obj.colour])).max(-1)
            assert np.all(distance <= 128)
            if mine.sum() >= 30:
                assert np.median(distance) <= 2
