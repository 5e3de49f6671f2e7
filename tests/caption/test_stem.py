"""The captioner's conv stem over packed patches equals a CNN over each clip's whole frames."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sora_jax.caption.stem import ConvStem, check_stem, neighbour_table, windowed
from sora_jax.models.dit.patchify import patchify

PATCH = (2, 8, 8)
WIDTHS = (4, 6, 5, 7)


def _whole_frames(stem: ConvStem, clip: np.ndarray) -> np.ndarray:
    """Reference: the stem's convs over whole frames with SAME padding, then per-patch projection; with
    `stem.motion` the frames first gain their differences from the previous frame (zero for frame 0)."""
    x = jnp.asarray(clip)  # (T, H, W, C)
    diff = x - jnp.concatenate([x[:1], x[:-1]])  # (T, H, W, C): zero for frame 0
    conv2d = functools.partial(jax.lax.conv_general_dilated, padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    for i, conv in enumerate(stem.convs):
        stride = 1 if i == 0 else 2  # SAME is what the stem means by 3x3 and 2x2 kernels alike
        x = conv2d(x, conv.kernel[...], (stride, stride)) + conv.bias[...]
        if i == 0 and stem.motion:
            x = x + conv2d(diff, stem.motion_conv.kernel[...], (1, 1))
        x = jax.nn.gelu(x)
    tokens, _, _ = patchify(np.asarray(x), (stem.patch[0], 1, 1))  # (N, pt * C)
    return np.asarray(stem.project(jnp.asarray(tokens)))


def _row(clips, length, patch=PATCH):
    tokens, coords, segments = [], [], []
    for k, clip in enumerate(clips):
        t, c, _ = patchify(clip, patch)
        tokens.append(t)
        coords.append(c)
        segments.append(np.full(len(t), k + 1, np.int32))
    pad = length - sum(len(t) for t in tokens)
    tokens.append(np.full((pad, tokens[0].shape[1]), 0.7, np.float32))  # padding must not leak in
    coords.append(np.zeros((pad, 3), np.int32))
    segments.append(np.zeros(pad, np.int32))
    return np.concatenate(tokens)[None], np.concatenate(coords)[None], np.concatenate(segments)[None]


@pytest.mark.parametrize("deep_kernel", [2, 3])
def test_conv_stem_over_packed_patches_equals_whole_frame_cnn(deep_kernel):
    rng = np.random.default_rng(0)
    clips = [rng.uniform(-1, 1, shape).astype(np.float32)
             for shape in [(4, 16, 24, 3), (2, 8, 8, 3), (2, 24, 16, 3), (2, 16, 16, 3)]]
    stem = ConvStem(PATCH, 3, WIDTHS, 16, dtype=jnp.float32, rngs=nnx.Rngs(0), deep_kernel=deep_kernel)
    tokens, coords, segments = _row(clips, 40)
    out = np.asarray(stem(jnp.asarray(tokens), jnp.asarray(coords), jnp.asarray(segments)))[0]  # (L, 16)
    start = 0
    for clip in clips:
        want = _whole_frames(stem, clip)
        np.testing.assert_allclose(out[start:start + len(want)], want, atol=1e-5, rtol=0)
        start += len(want)


@pytest.mark.parametrize("patch", [(2, 8, 8), (1, 8, 8)])
def test_motion_stem_equals_whole_frame_cnn_over_frames_and_their_differences(patch):
    rng = np.random.default_rng(1)
    clips = [rng.uniform(-1, 1, shape).astype(np.float32)  # a 6-frame clip, an image pair, a one-frame image
             for shape in [(6, 16, 24, 3), (2, 8, 16, 3), (patch[0], 16, 8, 3)]]
    stem = ConvStem(patch, 3, WIDTHS, 16, dtype=jnp.float32, rngs=nnx.Rngs(0), motion=True)
    plain = ConvStem(patch, 3, WIDTHS, 16, dtype=jnp.float32, rngs=nnx.Rngs(0))
    tokens, coords, segments = (jnp.asarray(a) for a in _row(clips, 40 * (3 - patch[0]), patch))
    # The difference kernel starts at zero: switched on, the stem is the plain one it was.
    np.testing.assert_array_equal(np.asarray(stem(tokens, coords, segments)), np.asarray(plain(tokens, coords, segments)))
    kernel = stem.motion_conv.kernel
    kernel[...] = jax.random.normal(jax.random.key(3), kernel.shape) * 0.3
    out = np.asarray(stem(tokens, coords, segments))[0]  # (L, 16)
    start = 0
    for clip in clips:
        want = _whole_frames(stem, clip)
        np.testing.assert_allclose(out[start:start + len(want)], want, atol=1e-5, rtol=0)
        start += len(want)
    # The differences matter: a still clip and a moving one with the same last frames read differently.
    still = np.repeat(clips[0][-1:], 6, axis=0)
    assert np.abs(_whole_frames(stem, still)[-4:] - _whole_frames(stem, clips[0])[-4:]).max() > 1e-3


@pytest.mark.parametrize("size, stride, bias", [(3, 1, True), (3, 2, True), (2, 2, True), (3, 1, False)])
def test_windowed_matmul_equals_the_conv_and_its_gradients(size, stride, bias):
    conv = nnx.Conv(3, 5, (size, size), strides=stride, padding="VALID", use_bias=bias, rngs=nnx.Rngs(1))
    if bias:
        conv.bias[...] = jnp.arange(5.0)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 9, 9, 3)), jnp.float32)

    def loss(apply, conv, x):
        return (apply(conv, x) ** 2 * jnp.arange(5.0)).sum()

    np.testing.assert_allclose(windowed(conv, x), conv(x), atol=1e-5)
    reference = nnx.grad(functools.partial(loss, lambda c, v: c(v)), argnums=(0, 1))(conv, x)
    ours = nnx.grad(functools.partial(loss, windowed), argnums=(0, 1))(conv, x)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_windowed_refuses_convs_it_would_compute_wrongly():
    with pytest.raises(ValueError, match="padding='SAME'"):
        windowed(nnx.Conv(3, 5, (3, 3), padding="SAME", rngs=nnx.Rngs(0)), jnp.zeros((1, 8, 8, 3)))
    with pytest.raises(ValueError, match="strides"):
        windowed(nnx.Conv(3, 5, (3, 3), strides=(1, 2), padding="VALID", rngs=nnx.Rngs(0)), jnp.zeros((1, 8, 8, 3)))


def test_neighbour_table_stays_inside_each_clip():
    # Two 2x2-token clips side by side in one row: no token may see the other clip or padding.
    coords = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1]] * 2 + [[0, 0, 0]], np.int32)[None]
    segments = np.array([1, 1, 1, 1, 2, 2, 2, 2, 0], np.int32)[None]
    indices, exists = (np.asarray(a)[0] for a in neighbour_table(jnp.asarray(coords), jnp.asarray(segments)))
    assert exists.sum(axis=1).tolist() == [4] * 8 + [0]  # each token: itself and 3 neighbours; padding none
    for i in range(8):
        assert set(indices[i][exists[i]] // 4) == {i // 4}
    assert indices[5, 1 * 3 + 0] == 4 and exists[5, 3] and not exists[4, 3]  # left of (0,0,1) in clip 2 is 4


@pytest.mark.parametrize("patch,widths,kernel", [((1, 8, 6), (4, 4, 4, 4), 2), ((1, 6, 6), (4, 4), 2),
                                                ((2, 8, 8), (4, 4, 4), 2), ((2, 8, 8), (4, 4, 4, 4), 5)])
def test_check_stem_names_the_bad_field(patch, widths, kernel):
    with pytest.raises(ValueError, match="patch|stem_widths|stem_kernel"):
        check_stem(patch, widths, kernel)


def test_captioner_config_reads_the_stem_and_old_workdirs_are_linear():
    from sora_jax.caption.task import captioner_config
    from sora_jax.train.config import load_config

    c = load_config("experiments/caption.py:tiny", ["model.stem='conv'", "model.stem_motion=True"])
    conv = captioner_config(c, 100)
    assert (conv.stem, conv.stem_widths, conv.patch, conv.channels) == ("conv", (16, 32, 64, 128), (2, 8, 8), 3)
    assert conv.stem_motion is True
    with c.unlocked():  # a config.json from before them
        del c.model["stem"], c.model["stem_widths"], c.model["frame_position"], c.model["stem_motion"]
    old = captioner_config(c, 100)
    assert old.stem == "linear" and old.frame_position is False and old.stem_motion is False
