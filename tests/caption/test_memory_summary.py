"""`model.memory_summary`: every decoder input of a caption gains its segment's max-pooled memory."""
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


def _with_random_projection(model, seed):
    """The summary projection starts at zero; give it weights so that the path is exercised."""
    kernel = model.summary_proj.kernel
    kernel[...] = jax.random.normal(jax.random.key(seed), kernel.shape) * 0.3
    return model


def test_the_summary_starts_silent_and_is_the_pooled_memory_of_each_captioned_segment():
    batch, inputs = _batch(), jnp.zeros((1, 3, 6), jnp.int32)
    model = Captioner(CaptionerConfig(**CONFIG), rngs=nnx.Rngs(0))
    plain = Captioner(CaptionerConfig(**CONFIG | dict(memory_summary=False)), rngs=nnx.Rngs(0))
    # Zero projection: switched on (say for a stage started from an earlier one's weights), nothing changes.
    np.testing.assert_array_equal(np.asarray(model(batch, inputs)), np.asarray(plain(batch, inputs)))
    _with_random_projection(model, 5)
    memory, ids = model.memory(batch)
    context = model.context(memory, ids, batch["caption_segments"])  # (1, 3, 48)
    pooled = segment_max(memory, ids, batch["caption_segments"])
    np.testing.assert_allclose(np.asarray(context), np.asarray(model.summary_proj(model.summary_norm(pooled))),
                               atol=1e-6)
    assert np.abs(np.asarray(model(batch, inputs)) - np.asarray(plain(batch, inputs)))[0, :2].max() > 1e-4


def test_a_segments_caption_ignores_the_other_clips_of_its_row():
    model = _with_random_projection(Captioner(CaptionerConfig(**CONFIG), rngs=nnx.Rngs(1)), 6)
    batch = _batch()
    other = dict(batch, tokens=batch["tokens"].at[:, 16:].set(jax.random.normal(jax.random.key(9), (1, 16, 384))))
    inputs = jax.random.randint(jax.random.key(2), (1, 3, 6), 2, 40)
    first, changed = (np.asarray(model(b, inputs)) for b in (batch, other))
    np.testing.assert_allclose(first[0, 0], changed[0, 0], atol=1e-5)  # segment 1: its own patches and summary
    assert np.abs(first[0, 1] - changed[0, 1]).max() > 1e-4  # segment 2 read its new patches


def test_cached_decoding_adds_the_summary_as_teacher_forcing_does():
    model = _with_random_projection(Captioner(CaptionerConfig(**CONFIG), rngs=nnx.Rngs(3)), 7)
    batch = _batch(4)
    cached = make_decoder(model)(batch)  # (1, 3, 12)
    reference = np.asarray(teacher_forced_greedy(model, batch, jnp.asarray(cached)))
    written = np.cumsum(cached == 1, axis=-1) - (cached == 1) == 0  # up to and including the end token
    written &= np.asarray(batch["caption_segments"])[..., None] > 0
    assert written.sum() >= 4 and np.array_equal(reference[written], cached[written])
    # Without the summary in the cached loop, the decoded captions would differ.
    blank = make_decoder(Captioner(CaptionerConfig(**CONFIG), rngs=nnx.Rngs(3)))(batch)
    assert not np.array_equal(blank, cached)
