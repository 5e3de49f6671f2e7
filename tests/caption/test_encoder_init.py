"""How the captioner's encoder starts: `model.identity_init` (blocks as the identity) and
`model.qk_scale` (sharper attention logits)."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from experiments.caption import get_config
from sora_jax.caption.model import Captioner, CaptionerConfig
from sora_jax.caption.task import CaptionTask


def test_identity_init_makes_the_memory_the_normalised_patch_embedding():
    config = dict(patch_dim=384, vocab_size=40, dim=48, heads=4, mlp_dim=96, encoder_depth=2, decoder_depth=1,
                  max_caption_len=16, patch=(2, 8, 8), attention="xla")
    coords = np.stack(np.meshgrid(np.arange(1), np.arange(4), np.arange(6), indexing="ij"), -1).reshape(1, -1, 3)
    segments = jnp.concatenate([jnp.ones((1, 12), jnp.int32), jnp.full((1, 12), 2, jnp.int32)], axis=1)
    tokens = jax.random.normal(jax.random.key(0), (1, 24, 384))
    args = (tokens, jnp.asarray(coords, jnp.int32), segments)
    plain = Captioner(CaptionerConfig(**config), rngs=nnx.Rngs(0))
    identity = Captioner(CaptionerConfig(**config, identity_init=True), rngs=nnx.Rngs(0))
    expected = identity.encoder_norm(identity.patch_embed(tokens))
    np.testing.assert_allclose(np.asarray(identity.encode(*args)), np.asarray(expected), atol=1e-6)
    assert np.abs(np.asarray(plain.encode(*args)) - np.asarray(expected)).mean() > 0.1  # random blocks move it
    # Only the blocks' output projections differ from the default initialisation.
    differ = [jax.tree_util.keystr(path) for path, a, b in zip(
        *zip(*jax.tree_util.tree_flatten_with_path(nnx.state(plain, nnx.Param))[0]),
        jax.tree.leaves(nnx.state(identity, nnx.Param))) if not np.array_equal(a, b)]
    assert differ == [f"['encoder'][{i}]{name}" for i in range(2) for name in
                      ("['attn']['to_out']['kernel'].value", "['mlp']['fc_out']['kernel'].value")], differ


def test_qk_scale_sharpens_every_attention_like_a_logit_temperature():
    config = dict(patch_dim=384, vocab_size=40, dim=48, heads=4, mlp_dim=96, encoder_depth=2, decoder_depth=1,
                  max_caption_len=16, patch=(2, 8, 8), attention="xla")
    coords = np.stack(np.meshgrid(np.arange(1), np.arange(4), np.arange(6), indexing="ij"), -1).reshape(1, -1, 3)
    segments = jnp.concatenate([jnp.ones((1, 12), jnp.int32), jnp.full((1, 12), 2, jnp.int32)], axis=1)
    args = (jax.random.normal(jax.random.key(0), (1, 24, 384)), jnp.asarray(coords, jnp.int32), segments)
    plain = Captioner(CaptionerConfig(**config), rngs=nnx.Rngs(0))
    sharp = Captioner(CaptionerConfig(**config, qk_scale=2.0), rngs=nnx.Rngs(0))
    attns = [b.attn for b in plain.encoder] + [a for b in plain.decoder.blocks for a in (b.self_attn, b.cross_attn)]
    for attn in attns:  # the same logits, all the factor on the query side: a temperature of 1/4
        attn.norm_q.scale[...] = jnp.full_like(attn.norm_q.scale[...], 4.0)
    np.testing.assert_allclose(np.asarray(sharp.encode(*args)), np.asarray(plain.encode(*args)), atol=1e-5)
    differ = [jax.tree_util.keystr(path) for path, a, b in zip(
        *zip(*jax.tree_util.tree_flatten_with_path(nnx.state(Captioner(CaptionerConfig(**config), rngs=nnx.Rngs(0)),
                                                              nnx.Param))[0]),
        jax.tree.leaves(nnx.state(sharp, nnx.Param))) if not np.array_equal(a, b)]
    assert len(differ) == 2 * len(attns) and all("norm_q" in p or "norm_k" in p for p in differ), differ
    default = Captioner(CaptionerConfig(**config), rngs=nnx.Rngs(0)).encode(*args)
    assert np.abs(np.asarray(sharp.encode(*args)) - np.asarray(default)).mean() > 0.05  # not a no-op


def test_qk_scale_config():
    c = get_config("tiny")
    assert c.model.qk_scale == 1.0 and CaptionTask(c).model_config.qk_scale == 1.0
    c.model.qk_scale = 2.0
    assert CaptionTask(c).model_config.qk_scale == 2.0
    c.model.qk_scale = 0.0
    with pytest.raises(ValueError, match="qk_scale must be a number > 0"):
        CaptionTask.validate_config(c)
    old = ml_collections.ConfigDict(get_config("tiny").to_dict())
    del old.model["qk_scale"]  # workdirs written before the field existed
    assert CaptionTask(old).model_config.qk_scale == 1.0
