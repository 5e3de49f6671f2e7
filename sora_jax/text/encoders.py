"""Text encoders behind one interface: `encoder(text_tokens, text_segment_ids) -> (B, Lt, text_dim)`.

`TokenEmbeddingEncoder` is the tiny trainable one (tests, CPU demos, and the default until the
text issue brings the pretrained MiniLM and T5 encoders). It reads packed text rows: positions are
counted within each segment, so a caption embeds the same wherever it sits in a row.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def segment_positions(segment_ids: jax.Array) -> jax.Array:
    """Position of every token within its own segment, `(B, L)` int32, for contiguous segments."""
    index = jnp.arange(segment_ids.shape[-1], dtype=jnp.int32)  # (L,)
    previous = jnp.pad(segment_ids[:, :-1], ((0, 0), (1, 0)), constant_values=-1)  # (B, L)
    starts = jnp.where(segment_ids != previous, index, 0)  # (B, L)
    return index - jax.lax.cummax(starts, axis=1)  # (B, L)


class TokenEmbeddingEncoder(nnx.Module):
    """Token embedding plus in-segment position embedding, layer-normalised; tiny and trainable."""

    def __init__(self, vocab_size: int, dim: int, max_len: int = 512, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.02)
        self.max_len = max_len
        self.tokens = nnx.Embed(vocab_size, dim, embedding_init=nnx.with_partitioning(init, ("vocab", "embed")), rngs=rngs)
        self.positions = nnx.Embed(max_len, dim, embedding_init=nnx.with_partitioning(init, (None, "embed")), rngs=rngs)
        self.norm = nnx.LayerNorm(dim, scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("norm",)),
                                  bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("norm",)), rngs=rngs)

    def __call__(self, text_tokens: jax.Array, text_segment_ids: jax.Array) -> jax.Array:
        positions = jnp.minimum(segment_positions(text_segment_ids), self.max_len - 1)  # (B, Lt)
        return self.norm(self.tokens(text_tokens) + self.positions(positions))  # (B, Lt, dim)
