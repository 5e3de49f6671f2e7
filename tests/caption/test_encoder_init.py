"""`model.identity_init`: the captioner's encoder blocks start as the identity."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.caption.model import Captioner, CaptionerConfig


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
