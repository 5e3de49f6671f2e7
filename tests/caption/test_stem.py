"""The captioner's conv stem: it reads each patch in the layout `patchify` writes, it is local to
its token (packing stays exact), a fresh one leaves the linear embedding unchanged, and a bad stem
name fails in the config check."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sora_jax.caption.model import ConvStem
from sora_jax.models.dit.patchify import patchify
from sora_jax.train.config import load_config

PATCH = (2, 8, 8)


@pytest.fixture(scope="module")
def stem():
    stem = ConvStem(PATCH, 3, 4, 16, dtype=jnp.float32, rngs=nnx.Rngs(0))
    stem.out.kernel.value = jax.random.normal(jax.random.key(1), stem.out.kernel.value.shape)  # fresh: zeros
    return stem


def test_fresh_stem_adds_nothing():
    fresh = ConvStem(PATCH, 3, 4, 16, dtype=jnp.float32, rngs=nnx.Rngs(0))
    tokens = jax.random.normal(jax.random.key(2), (2, 5, 2 * 8 * 8 * 3))
    assert float(jnp.abs(fresh(tokens)).max()) == 0.0


def test_stem_reads_patches_in_patchify_layout(stem):
    video = np.asarray(jax.random.normal(jax.random.key(3), (2, 8, 16, 3)), np.float32)  # two patches side by side
    tokens, _, grid = patchify(video, PATCH)
    assert grid == (1, 1, 2)
    features = stem.conv1(jnp.asarray(tokens).reshape(2, 2, 8, 8, 3).transpose(0, 2, 3, 1, 4).reshape(2, 8, 8, 6))
    for j, left in enumerate((0, 8)):  # the same convolution over that patch's pixels, frames as channels
        image = video[:, :, left:left + 8].transpose(1, 2, 0, 3).reshape(1, 8, 8, 6)
        np.testing.assert_allclose(features[j], stem.conv1(jnp.asarray(image))[0], atol=1e-5)


def test_stem_is_local_to_each_token(stem):
    tokens = jax.random.normal(jax.random.key(4), (1, 6, 2 * 8 * 8 * 3))
    changed = tokens.at[0, 2].add(1.0)
    before, after = stem(tokens), stem(changed)
    moved = np.abs(np.asarray(after - before)).max(axis=-1)[0]  # (6,)
    assert moved[2] > 1e-2 and np.all(np.delete(moved, 2) == 0.0), moved


def test_bad_stem_name_fails_config_check():
    with pytest.raises(ValueError, match="model.stem must be one of"):
        load_config("experiments/caption.py:tiny", ["model.stem='resnet'"])
