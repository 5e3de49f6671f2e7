import math

import numpy as np
import pytest

from data_pipelines.sizing import SizingConfig, choose_size, size_clip


def _tokens(video, patch):
    pt, ph, pw = patch
    t, h, w, _ = video.shape
    return math.ceil(t / pt) * (h // ph) * (w // pw)


def test_budget_aspect_and_validity_over_many_shapes():
    config = SizingConfig(patch=(1, 8, 8), spatial_multiple=8, temporal_factor=4, max_tokens=512, max_frames=33)
    rng = np.random.default_rng(0)
    for _ in range(60):
        frames, height, width = int(rng.integers(1, 70)), int(rng.integers(16, 300)), int(rng.integers(16, 300))
        video = np.zeros((frames, height, width, 3), np.uint8)
        out = size_clip(video, config, rng)
        assert _tokens(out, config.patch) <= config.max_tokens
        assert (out.shape[0] - 1) % 4 == 0 and out.shape[0] <= min(frames, 33)
        assert out.shape[1] % 8 == 0 and out.shape[2] % 8 == 0
        assert out.shape[1] <= max(height, 8) and out.shape[2] <= max(width, 8)  # never upsampled
        rh, rw, _, _ = choose_size(out.shape[0], height, width, config)
        if min(rh, rw) > 8:  # resize keeps the aspect up to rounding; the crop loses < 8 px per axis
            assert abs(rw / rh - width / height) <= (width / height) * (1.0 / min(rh, rw)) + 1e-9
            assert 0 <= rh - out.shape[1] < 8 and 0 <= rw - out.shape[2] < 8


def test_small_clips_are_not_resized():
    config = SizingConfig(max_tokens=1024)
    video = np.random.default_rng(1).integers(0, 255, (9, 48, 64, 3)).astype(np.uint8)
    out = size_clip(video, config, np.random.default_rng(0))
    np.testing.assert_array_equal(out, video)


def test_long_clips_get_fewer_frames_not_tiny_frames():
    config = SizingConfig(patch=(1, 8, 8), max_tokens=64, min_side=16, max_frames=65)
    out = size_clip(np.zeros((65, 256, 256, 3), np.uint8), config, np.random.default_rng(0))
    assert out.shape == (16, 16, 16, 3)  # 16 frames of the smallest 16x16 frame = 64 tokens


def test_temporal_window_is_contiguous():
    config = SizingConfig(patch=(1, 8, 8), max_tokens=4 * 4, max_frames=4)
    video = np.broadcast_to(np.arange(20, dtype=np.uint8)[:, None, None, None], (20, 8, 8, 3)).copy()
    video = np.repeat(np.repeat(video, 2, axis=1), 2, axis=2)  # (20, 16, 16, 3)
    out = size_clip(video, config, np.random.default_rng(3))
    values = out[:, 0, 0, 0].astype(int)
    np.testing.assert_array_equal(np.diff(values), 1)


def test_image_with_temporal_patch_repeats_its_frame():
    config = SizingConfig(patch=(2, 8, 8), max_tokens=64)
    out = size_clip(np.full((1, 32, 32, 3), 7, np.uint8), config, np.random.default_rng(0))
    assert out.shape == (2, 32, 32, 3) and (out == 7).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(spatial_multiple=12), "multiple of patch"),
        (dict(max_tokens=3), "cannot hold even one"),
        (dict(temporal_factor=4, patch=(2, 8, 8)), "not both"),
        (dict(min_side=4), "below spatial_multiple"),
    ],
)
def test_bad_configs_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SizingConfig(**kwargs)
