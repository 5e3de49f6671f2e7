import dataclasses

import numpy as np
import pytest

from data_pipelines.clips import ClipBatchConfig, build_clip_batches, crop_clip


def test_clip_batches_have_fixed_shapes_and_come_from_the_data(tiny_shapes_world):
    c = ClipBatchConfig(sources=(tiny_shapes_world,), frames=5, size=32, batch_size=3)
    it = iter(build_clip_batches(c))
    batch = next(it)
    assert batch["video"].shape == (3, 5, 32, 32, 3) and batch["image"].shape == (3, 1, 32, 32, 3)
    assert batch["video"].dtype == np.uint8 and batch["video"].std() > 5  # real content, not padding
    state = it.get_state()
    following = next(it)
    again = iter(build_clip_batches(c))
    again.set_state(state)
    np.testing.assert_array_equal(next(again)["video"], following["video"])


def test_worker_processes_give_the_same_batches(tiny_shapes_world):
    """Grain workers make the crops the training process would (each element's randomness comes from
    its index): 2 workers batch elements 0,2,4 / 1,3,5 / ..., so 4 batches hold the same 12 crops."""
    c = ClipBatchConfig(sources=(tiny_shapes_world,), frames=5, size=32, batch_size=3)

    def crops(config):
        it = iter(build_clip_batches(config))
        batches = [next(it) for _ in range(4)]
        pairs = [(v.tobytes(), i.tobytes()) for b in batches for v, i in zip(b["video"], b["image"])]
        return pairs, sorted(pairs)

    (inline_order, inline), (worker_order, workers) = crops(c), crops(dataclasses.replace(c, worker_count=2))
    assert inline == workers and len(set(inline)) == 12
    assert worker_order == crops(dataclasses.replace(c, worker_count=2))[0]  # deterministic order
    with pytest.raises(ValueError, match="worker_count"):
        dataclasses.replace(c, worker_count=-1)


def test_crop_keeps_pixels_and_window():
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (12, 40, 50, 3)).astype(np.uint8)
    out = crop_clip({"video": video}, np.random.default_rng(1), ClipBatchConfig(sources=("x",), frames=4, size=32))
    crop = out["video"]
    # The crop is an exact window of the original (no resize when frames are big enough).
    found = [(t, y, x) for t in range(9) for y in range(9) for x in range(19)
             if np.array_equal(video[t : t + 4, y : y + 32, x : x + 32], crop)]
    assert len(found) == 1


def test_short_and_small_clips_are_extended_and_scaled_up():
    video = np.full((2, 16, 24, 3), 100, np.uint8)
    out = crop_clip({"video": video}, np.random.default_rng(0), ClipBatchConfig(sources=("x",), frames=5, size=32))
    assert out["video"].shape == (5, 32, 32, 3) and out["image"].shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(out["video"][4], out["video"][1])  # last frame repeated


def test_bad_config():
    with pytest.raises(ValueError):
        ClipBatchConfig(sources=())


def test_photo_clips_are_camera_motion_over_held_out_photos():
    from data_pipelines.photos import photo_clips, photo_names

    assert set(photo_names("train")).isdisjoint(photo_names("validation"))
    clips = photo_clips("validation", 3, 9, 32, 48, seed=1)
    assert clips.shape == (3, 9, 32, 48, 3) and clips.dtype == np.uint8
    np.testing.assert_array_equal(clips, photo_clips("validation", 3, 9, 32, 48, seed=1))  # deterministic
    step = np.abs(np.diff(clips.astype(np.float32), axis=1)).mean()  # consecutive frames
    apart = np.abs(clips[:, :1].astype(np.float32) - clips[:, -1:]).mean()  # first vs last frame
    assert 0.3 < step < apart  # the camera moves smoothly: small steps adding up
    assert clips.std() > 20  # real image content, not a flat fill


def test_photos_source_in_clip_batches():
    from data_pipelines.clips import ClipBatchConfig, build_clip_batches

    config = ClipBatchConfig(sources=("photos",), frames=5, size=16, batch_size=2)
    batch = next(iter(build_clip_batches(config, "validation")))
    assert batch["video"].shape == (2, 5, 16, 16, 3) and batch["image"].shape == (2, 1, 16, 16, 3)
    assert batch["video"].std() > 10
