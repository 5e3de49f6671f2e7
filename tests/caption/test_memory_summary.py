"""`model.memory_summary`: each captioned segment's memory gains its normalised max pooling as one token."""
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.caption.decode import make_decoder, teacher_forced_greedy
from sora_jax.caption.model import Captioner, CaptionerConfig, segment_max

CONFIG = dict(patch_dim=384, vocab_size=40, dim=48, heads=4, mlp_dim=96, encoder_depth=1, decoder_depth=1,
              max_caption_len=12, patch=(2, 8, 8), attention="xla", memory_summary=True)


def _batch(seed=0):
    """One row: a 16-token clip (segment 1), an 8-token clip (segment 2), 8 padding tokens."""
    grid = np.stack(np.meshgrid(np.arange(1), np.arange(4), np.arange(4), indexing="ij"), -1).reshape(-1, 3)
    coords = np.concatenate([grid, grid[:8], np.zeros((8, 3), int)])[None].astype(np.int32)  # (1, 32, 3)
    segments = np.concatenate([np.full(16, 1), np.full(8, 2), np.zeros(8)])[None].astype(np.int32)
    tokens = jax.random.normal(jax.random.key(seed), (1, 32, 384))
    return dict(tokens=tokens, coords=jnp.asarray(coords), segment_ids=jnp.asarray(segments),
                caption_segments=jnp.asarray([[1, 2, 0]], jnp.int32))


def test_memory_gains_one_pooled_token_per_captioned_segment():
    model = Captioner(CaptionerConfig(**CONFIG), rngs=nnx.Rngs(0))
    batch = _batch()
    memory, ids = model.memory(batch)
    patches = model.encode(batch["tokens"], batch["coords"], batch["segment_ids"])  # (1, 32, 48)
    assert memory.shape == (1, 35, 48) and ids[0, 32:].tolist() == [1, 2, 0]
    np.testing.assert_array_equal(np.asarray(memory[:, :32]), np.asarray(patches))
    pooled = segment_max(patches, batch["segment_ids"], batch["caption_segments"])  # (1, 3, 48)
    np.testing.assert_allclose(np.asarray(memory[:, 32:]), np.asarray(model.summary_norm(pooled)), atol=1e-6)
    # The summary changes what the decoder reads: same weights without it give other logits.
    plain = Captioner(CaptionerConfig(**CONFIG | dict(memory_summary=False)), rngs=nnx.Rngs(0))
    inputs = jnp.zeros((1, 3, 6), jnp.int32)
    assert np.abs(np.asarray(model(batch, inputs)) - np.asarray(plain(batch, inputs)))[0, :2].max() > 1e-4


def test_a_segments_caption_ignores_the_other_clips_of_its_row():
    model = Captioner(CaptionerConfig(**CONFIG), rngs=nnx.Rngs(1))
    batch = _batch()
    other = dict(batch, tokens=batch["tokens"].at[:, 16:].set(jax.random.normal(jax.random.key(9), (1, 16, 384))))
    inputs = jax.random.randint(jax.random.key(2), (1, 3, 6), 2, 40)
    first, changed = (np.asarray(model(b, inputs)) for b in (batch, other))
    np.testing.assert_allclose(first[0, 0], changed[0, 0], atol=1e-5)  # segment 1: its own patches and summary
    assert np.abs(first[0, 1] - changed[0, 1]).max() > 1e-4  # segment 2 read its new patches


def test_cached_decoding_reads_the_summary_as_teacher_forcing_does():
    model = Captioner(CaptionerConfig(**CONFIG), rngs=nnx.Rngs(3))
    batch = _batch(4)
    cached = make_decoder(model)(batch)  # (1, 3, 12)
    reference = np.asarray(teacher_forced_greedy(model, batch, jnp.asarray(cached)))
    written = np.cumsum(cached == 1, axis=-1) - (cached == 1) == 0  # up to and including the end token
    written &= np.asarray(batch["caption_segments"])[..., None] > 0
    assert written.sum() >= 4 and np.array_equal(reference[written], cached[written])
