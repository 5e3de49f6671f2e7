"""The captioner's frame-position input: where a patch sits in its own frame, whatever the resolution."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.caption.model import POSITION_FEATURES, Captioner, CaptionerConfig, frame_position_features


def _grid(frames, height, width):
    t, h, w = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    return np.stack([t, h, w], -1).reshape(-1, 3)


def _row():
    """Segment 1: a 2x2x4 grid; segment 2: a 1x6x12 grid (three times finer); then 4 padding tokens."""
    coords = np.concatenate([_grid(2, 2, 4), _grid(1, 6, 12), np.zeros((4, 3), int)]).astype(np.int32)
    segments = np.concatenate([np.full(16, 1), np.full(72, 2), np.zeros(4)]).astype(np.int32)
    return coords[None], segments[None]


def _index(coords, segments, segment, t, h, w):
    hits = np.flatnonzero((segments[0] == segment) & np.all(coords[0] == (t, h, w), axis=-1))
    assert hits.size == 1
    return int(hits[0])


def test_features_depend_on_the_place_in_the_frame_not_the_resolution():
    coords, segments = _row()
    f = np.asarray(frame_position_features(jnp.asarray(coords), jnp.asarray(segments)))[0]  # (L, F)
    assert f.shape == (92, POSITION_FEATURES)
    at = lambda *key: f[_index(coords, segments, *key)]  # noqa: E731
    # The top-left cell of the 2x4 grid covers the same part of the frame as cell (1, 1) of the 6x12 one.
    np.testing.assert_allclose(at(1, 0, 0, 0), at(2, 0, 1, 1), atol=1e-6)
    assert not np.allclose(at(1, 0, 0, 0), at(2, 0, 0, 0), atol=1e-3)
    # Mirrored cells: the sine features of height and width change sign, the cosines do not.
    spatial = 2 * 4  # two axes x four harmonics
    np.testing.assert_allclose(at(1, 0, 0, 0)[:spatial], -at(1, 0, 1, 3)[:spatial], atol=1e-6)
    half = POSITION_FEATURES // 2
    np.testing.assert_allclose(at(1, 0, 0, 0)[half:half + spatial], at(1, 0, 1, 3)[half:half + spatial], atol=1e-6)
    # The frame index changes only the time features; the first harmonic orders left to right.
    assert not np.allclose(at(1, 0, 0, 0), at(1, 1, 0, 0), atol=1e-3)
    np.testing.assert_allclose(at(1, 0, 0, 0)[:spatial], at(1, 1, 0, 0)[:spatial], atol=1e-6)
    lefts = [at(2, 0, 3, w)[4] for w in range(12)]  # sin(pi/2 * u_w), u_w from -11/12 to 11/12
    assert np.all(np.diff(lefts) > 0)


def test_switching_frame_position_on_changes_nothing_until_trained():
    coords, segments = _row()
    tokens = jax.random.normal(jax.random.key(0), (1, 92, 2 * 8 * 8 * 3))
    config = dict(patch_dim=384, vocab_size=40, dim=48, heads=4, mlp_dim=96, encoder_depth=1, decoder_depth=1,
                  max_caption_len=16, patch=(2, 8, 8), attention="xla")
    plain = Captioner(CaptionerConfig(**config), rngs=nnx.Rngs(0))
    placed = Captioner(CaptionerConfig(**config, frame_position=True), rngs=nnx.Rngs(0))
    args = (tokens, jnp.asarray(coords), jnp.asarray(segments))
    np.testing.assert_array_equal(np.asarray(plain.encode(*args)), np.asarray(placed.encode(*args)))
    placed.position_embed.kernel.value = jax.random.normal(jax.random.key(1), (POSITION_FEATURES, 48))
    moved = np.abs(np.asarray(placed.encode(*args)) - np.asarray(plain.encode(*args)))[0, :88]
    assert moved.min(axis=-1).max() > 0 and moved.mean() > 1e-2
