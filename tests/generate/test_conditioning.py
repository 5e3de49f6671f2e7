"""Known-frame specifications of every mode (pixel codec; the latent rule is in test_codec)."""
import numpy as np
import pytest

from sora_jax.generate.codec import PixelCodec
from sora_jax.generate.conditioning import (
    Known,
    blend_latents,
    encode_known,
    extend,
    image_to_video,
    interpolate,
    loop_bridge,
)


class GroupedCodec(PixelCodec):
    """Pixel codec with the causal VAE's frame ownership (time factor 4), for the placement rules."""

    time_factor = 4

    def latent_frames(self, frames):
        return 1 + (frames - 1) // 4

    def pixel_frames(self, latent_frames):
        return 1 + (latent_frames - 1) * 4

    def owned_frames(self, j):
        return range(0, 1) if j == 0 else range(4 * j - 3, 4 * j + 1)

    def encode(self, video):
        return super().encode(video[::4])  # one latent frame per group: its last pixel frame


def clip(frames, value=0, size=(8, 16)):
    video = np.zeros((frames, *size, 3), np.uint8)
    video[...] = (value + 10 * np.arange(frames))[:, None, None, None] % 256
    return video


def test_image_to_video_and_extension_masks():
    image = clip(1, 200)[0]
    known = image_to_video(image, 9)
    assert known.shape == (9, 8, 16) and known.mask.tolist() == [True] + [False] * 8
    np.testing.assert_array_equal(known.frames[0], image)
    given = clip(3, 50)
    forward, backward = extend(given, 7, "forward"), extend(given, 7, "backward")
    assert forward.mask.tolist() == [1, 1, 1, 0, 0, 0, 0] and backward.mask.tolist() == [0, 0, 0, 0, 1, 1, 1]
    np.testing.assert_array_equal(forward.frames[:3], given)
    np.testing.assert_array_equal(backward.frames[4:], given)
    with pytest.raises(ValueError, match="needs a clip shorter than that; the clip has 3"):
        extend(given, 3, "forward")
    with pytest.raises(ValueError, match="direction must be one of"):
        extend(given, 7, "sideways")


def test_interpolation_places_both_ends_and_holds_images_per_latent_frame():
    first, last = clip(1, 10), clip(1, 90)
    known = interpolate(first, last, 9, PixelCodec())
    assert np.flatnonzero(known.mask).tolist() == [0, 8]
    np.testing.assert_array_equal(known.frames[8], last[0])
    # With frames grouped by 4, the closing image stands for the whole last latent frame (5..8).
    grouped = interpolate(first, last, 9, GroupedCodec())
    assert np.flatnonzero(grouped.mask).tolist() == [0, 5, 6, 7, 8]
    assert encode_known(grouped, GroupedCodec())[1].tolist() == [True, False, True]
    clips = interpolate(clip(3, 10), clip(2, 90), 9, PixelCodec())
    assert np.flatnonzero(clips.mask).tolist() == [0, 1, 2, 7, 8]
    with pytest.raises(ValueError, match="leaves none to generate"):
        interpolate(clip(3), clip(3), 6, PixelCodec())
    with pytest.raises(ValueError, match="same frame size"):
        interpolate(clip(1), clip(1, size=(8, 8)), 9, PixelCodec())


def test_loop_bridge_joins_the_end_to_the_start():
    video = clip(9, 0)
    known, head, tail = loop_bridge(video, 6, PixelCodec(), overlap_latent=2)
    assert (head, tail) == (2, 2) and known.mask.tolist() == [1, 1, 0, 0, 1, 1]
    np.testing.assert_array_equal(known.frames[:2], video[-2:])
    np.testing.assert_array_equal(known.frames[4:], video[:2])
    known, head, tail = loop_bridge(video, 9, GroupedCodec())  # whole latent frames: 1 at the head, 4 at the tail
    assert (head, tail) == (1, 4) and known.mask.tolist() == [1, 0, 0, 0, 0, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="needs more than 5 frames"):
        loop_bridge(video, 5, GroupedCodec())


def test_encode_known_pixel_values_and_blend_ramp():
    video = clip(5, 30)
    latents, mask = encode_known(Known(video, np.array([1, 0, 1, 0, 0], bool)), PixelCodec())
    assert mask.tolist() == [True, False, True, False, False]
    np.testing.assert_array_equal(latents[[0, 2]], video[[0, 2]].astype(np.float32) / np.float32(127.5) - 1.0)
    assert np.all(latents[[1, 3, 4]] == 0)
    empty_latents, empty_mask = encode_known(Known(video, np.zeros(5, bool)), PixelCodec())
    assert not empty_mask.any() and empty_latents.shape == (5, 8, 16, 3) and not empty_latents.any()
    a, b = np.zeros((5, 2, 2, 4), np.float32), np.ones((5, 2, 2, 4), np.float32)
    np.testing.assert_allclose(blend_latents(a, b)[:, 0, 0, 0], [0.0, 0.25, 0.5, 0.75, 1.0])
    with pytest.raises(ValueError, match="one shape"):
        blend_latents(a, b[:4])
    with pytest.raises(ValueError, match="Known needs frames"):
        Known(video, np.zeros(4, bool))
