"""Transformer parts of the caption stage: a segment-masked encoder block and an autoregressive
text decoder that cross-attends to the encoder output of its own segment.

The encoder reuses the DiT's `Attention` (q/k RMS norm, 3D RoPE from coordinates, the project's
one attention dispatch point). The decoder's cross-attention also goes through that dispatch point:
decoder sequence k of a row has query segment id k + 1 and attends only to that segment's patches.
Causal self-attention is not a segment mask, so it calls `jax.nn.dot_product_attention` with
`is_causal` (training) or a length mask over the key-value cache (decoding).

Decoding keeps a key-value cache (`init_cache` / `step`): each new token costs one token's work
instead of re-running the whole prefix, and the cross-attention keys and values of the memory are
projected once per caption (`memory_kv`), not once per token.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sora_jax.models.attention import attention
from sora_jax.models.dit.layers import MLP, Attention, LayerNorm, dense


def layer_norm(dim: int, eps: float, rngs: nnx.Rngs) -> LayerNorm:
    """Affine LayerNorm computed in float32 (the DiT's)."""
    return LayerNorm(dim, eps=eps, affine=True, rngs=rngs)


class EncoderBlock(nnx.Module):
    """Pre-norm block: segment-masked self-attention (with RoPE when given) and an MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, *, eps: float, dtype, implementation: str, rngs: nnx.Rngs):
        self.attn_norm = layer_norm(dim, eps, rngs)
        self.attn = Attention(dim, heads, dim, eps=eps, dtype=dtype, implementation=implementation, rngs=rngs)
        self.mlp_norm = layer_norm(dim, eps, rngs)
        self.mlp = MLP(dim, mlp_dim, dtype=dtype, rngs=rngs)

    def start_as_identity(self) -> None:
        """Zeroes the output projections of attention and MLP: the block passes its input through
        unchanged until trained (as adaLN-Zero does for the DiT's blocks)."""
        for layer in (self.attn.to_out, self.mlp.fc_out):
            layer.kernel[...] = jnp.zeros_like(layer.kernel[...])

    def __call__(self, x: jax.Array, segment_ids: jax.Array, rope=None) -> jax.Array:
        h = self.attn_norm(x)
        x = x + self.attn(h, segment_ids, h, segment_ids, rope)  # (B, L, D)
        return x + self.mlp(self.mlp_norm(x))  # (B, L, D)


class DecoderAttention(Attention):
    """The DiT's attention parameters (q/k RMS norm), called piecewise: causally over the caption
    with a KV cache, or across to the clip memory."""

    def __init__(self, dim: int, heads: int, *, eps: float, dtype, rngs: nnx.Rngs):
        super().__init__(dim, heads, dim, eps=eps, dtype=dtype, implementation="xla", rngs=rngs)

    def query(self, x: jax.Array) -> jax.Array:
        return self.norm_q(self.to_q(x)).reshape(*x.shape[:-1], self.heads, -1)  # (..., L, H, Dh)

    def keys_values(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        k = self.norm_k(self.to_k(x)).reshape(*x.shape[:-1], self.heads, -1)  # (..., L, H, Dh)
        v = self.to_v(x).reshape(*x.shape[:-1], self.heads, -1)  # (..., L, H, Dh)
        return k, v

    def output(self, heads_out: jax.Array) -> jax.Array:
        return self.to_out(heads_out.reshape(*heads_out.shape[:-2], -1))  # (..., L, D)


class DecoderBlock(nnx.Module):
    """Pre-norm block: causal self-attention, cross-attention to its segment's memory, MLP."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, *, eps: float, dtype, implementation: str, rngs: nnx.Rngs):
        self.implementation = implementation
        self.self_norm = layer_norm(dim, eps, rngs)
        self.self_attn = DecoderAttention(dim, heads, eps=eps, dtype=dtype, rngs=rngs)
        self.cross_norm = layer_norm(dim, eps, rngs)
        self.cross_attn = DecoderAttention(dim, heads, eps=eps, dtype=dtype, rngs=rngs)
        self.mlp_norm = layer_norm(dim, eps, rngs)
        self.mlp = MLP(dim, mlp_dim, dtype=dtype, rngs=rngs)

    def _cross(self, x, memory_kv, query_segments, memory_segment_ids):
        """Cross-attention of `x (B, S, T, D)` (sequence k of a row = segment query_segments[k])."""
        batch, segments, length, dim = x.shape
        q = self.cross_attn.query(self.cross_norm(x)).reshape(batch, segments * length, self.cross_attn.heads, -1)
        q_ids = jnp.repeat(query_segments, length, axis=1)  # (B, S*T)
        out = attention(q, *memory_kv, q_ids, memory_segment_ids, self.implementation)  # (B, S*T, H, Dh)
        return self.cross_attn.output(out).reshape(batch, segments, length, dim)  # (B, S, T, D)

    def __call__(self, x, memory_kv, query_segments, memory_segment_ids) -> jax.Array:
        """Teacher-forced pass over whole sequences `x (B, S, T, D)`."""
        batch, segments, length, dim = x.shape
        h = self.self_norm(x).reshape(batch * segments, length, dim)  # (B*S, T, D)
        q, (k, v) = self.self_attn.query(h), self.self_attn.keys_values(h)  # (B*S, T, H, Dh)
        out = jax.nn.dot_product_attention(q, k, v, is_causal=True)  # (B*S, T, H, Dh)
        x = x + self.self_attn.output(out).reshape(batch, segments, length, dim)  # (B, S, T, D)
        x = x + self._cross(x, memory_kv, query_segments, memory_segment_ids)
        return x + self.mlp(self.mlp_norm(x))  # (B, S, T, D)

    def step(self, x, position, cache, memory_kv, query_segments, memory_segment_ids):
        """One new token per sequence, `x (B, S, 1, D)` at `position`; returns it and the updated cache."""
        batch, segments, _, dim = x.shape
        h = self.self_norm(x).reshape(batch * segments, 1, dim)  # (B*S, 1, D)
        q, (k_new, v_new) = self.self_attn.query(h), self.self_attn.keys_values(h)  # (B*S, 1, H, Dh)
        k = jax.lax.dynamic_update_slice_in_dim(cache["k"], k_new.astype(cache["k"].dtype), position, axis=1)
        v = jax.lax.dynamic_update_slice_in_dim(cache["v"], v_new.astype(cache["v"].dtype), position, axis=1)
        seen = (jnp.arange(k.shape[1]) <= position)[None, None, None, :]  # (1, 1, 1, T)
        out = jax.nn.dot_product_attention(q, k.astype(q.dtype), v.astype(q.dtype), mask=seen)  # (B*S, 1, H, Dh)
        x = x + self.self_attn.output(out).reshape(batch, segments, 1, dim)  # (B, S, 1, D)
        x = x + self._cross(x, memory_kv, query_segments, memory_segment_ids)
        return x + self.mlp(self.mlp_norm(x)), {"k": k, "v": v}


class TextDecoder(nnx.Module):
    """Token and position embeddings, decoder blocks, and a head over the caption vocabulary.

    The start token is id `vocab_size` (one extra embedding row); logits cover `vocab_size` ids.
    Sequences are laid out `(B, S, T)`: sequence k of row b captions segment `query_segments[b, k]`
    of that row's memory (0 = unused sequence).
    """

    def __init__(self, vocab_size: int, dim: int, depth: int, heads: int, mlp_dim: int, max_len: int, *,
                 eps: float, dtype, implementation: str, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.02)
        self.vocab_size, self.max_len, self.heads = vocab_size, max_len, heads
        self.bos_id = vocab_size
        self.tokens = nnx.Embed(vocab_size + 1, dim, embedding_init=nnx.with_partitioning(init, ("vocab", "embed")),
                                rngs=rngs)
        self.positions = nnx.Embed(max_len, dim, embedding_init=nnx.with_partitioning(init, (None, "embed")), rngs=rngs)
        self.blocks = nnx.List([DecoderBlock(dim, heads, mlp_dim, eps=eps, dtype=dtype, implementation=implementation,
                                             rngs=rngs) for _ in range(depth)])
        self.norm = layer_norm(dim, eps, rngs)
        self.head = dense(dim, vocab_size, ("embed", "vocab"), dtype=dtype, rngs=rngs)

    def memory_kv(self, memory: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
        """Cross-attention keys and values `(B, L, H, Dh)` of `memory (B, L, D)`, one pair per block."""
        return [block.cross_attn.keys_values(memory) for block in self.blocks]

    def __call__(self, inputs, memory_kv, query_segments, memory_segment_ids, context=None) -> jax.Array:
        """Logits `(B, S, T, V)` for teacher-forced `inputs (B, S, T)` (start token first); `context (B, S, D)`,
        when given, is added to every input of its sequence."""
        length = inputs.shape[-1]
        x = self.tokens(inputs) + self.positions(jnp.arange(length))  # (B, S, T, D)
        if context is not None:
            x = x + context[:, :, None, :].astype(x.dtype)  # (B, S, T, D)
        for block, kv in zip(self.blocks, memory_kv):
            x = block(x, kv, query_segments, memory_segment_ids)
        return self.head(self.norm(x)).astype(jnp.float32)  # (B, S, T, V)

    def init_cache(self, batch: int, segments: int, dtype=jnp.float32) -> list[dict]:
        """Empty key-value caches `(B*S, max_len, H, Dh)`, one per block."""
        dim = self.positions.embedding.shape[-1]
        shape = (batch * segments, self.max_len, self.heads, dim // self.heads)
        return [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in self.blocks]

    def step(self, token, position, cache, memory_kv, query_segments, memory_segment_ids, context=None):
        """Logits `(B, S, V)` of the token after `token (B, S)` at `position`, and the new caches."""
        x = (self.tokens(token) + self.positions(position))[:, :, None, :]  # (B, S, 1, D)
        if context is not None:
            x = x + context[:, :, None, :].astype(x.dtype)  # (B, S, 1, D)
        new_cache = []
        for block, layer_cache, kv in zip(self.blocks, cache, memory_kv):
            x, layer_cache = block.step(x, position, layer_cache, kv, query_segments, memory_segment_ids)
            new_cache.append(layer_cache)
        return self.head(self.norm(x))[:, :, 0].astype(jnp.float32), new_cache  # (B, S, V)
