"""Jitted autoregressive decoding for the caption stage (captioner and prompt upsampler).

Greedy (`temperature == 0`) or sampled at a temperature, with a key-value cache: the memory is
encoded and its cross-attention keys/values projected once, then each step runs the decoder on one
new token per sequence. A fixed-length recompute would re-run the whole prefix every step,
`O(T^2)` token passes for a `T`-token caption instead of `T` (T is 50-200 words here). The loop is a
`lax.while_loop` that stops as soon as every sequence has written its end token.

Models plug in through two members: `model.memory(batch) -> (memory (B, L, D), memory_segment_ids
(B, L))` and `model.decoder` (a `TextDecoder`). `batch["caption_segments"] (B, S)` says which memory
segment each of the S decoder sequences of a row captions (0 = no caption wanted). A model may also
have `model.context(memory, memory_ids, query_segments) -> (B, S, D) or None`, added to every
decoder input of a sequence (the captioner's `memory_summary`).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.text.tokenizers import EOS_ID, PAD_ID


def _choose(logits: jax.Array, temperature: jax.Array, rng: jax.Array) -> jax.Array:
    """Argmax of `logits (B, S, V)` when temperature is 0, else a sample at that temperature."""
    sampled = jax.random.categorical(rng, logits / jnp.maximum(temperature, 1e-6), axis=-1)  # (B, S)
    return jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1)).astype(jnp.int32)  # (B, S)


def decode_tokens(model, batch: dict, temperature: jax.Array, rng: jax.Array, max_len: int | None = None) -> jax.Array:
    """Caption token ids `(B, S, T)` (end token, then padding) for every wanted sequence of `batch`.

    To be called inside `jax.jit` (see `make_decoder`). `max_len` defaults to the decoder's.
    """
    decoder = model.decoder
    max_len = max_len or decoder.max_len
    memory, memory_ids = model.memory(batch)
    memory_kv = decoder.memory_kv(memory)
    query_segments = batch["caption_segments"]  # (B, S)
    context = model.context(memory, memory_ids, query_segments) if hasattr(model, "context") else None
    rows, segments = query_segments.shape
    graphdef, params = nnx.split(decoder)

    def body(state):
        position, token, cache, out, finished, key = state
        # A fresh module per iteration: the loop body is its own trace level.
        logits, cache = nnx.merge(graphdef, params).step(token, position, cache, memory_kv, query_segments, memory_ids,
                                                         context)
        key, sub = jax.random.split(key)
        chosen = jnp.where(finished, PAD_ID, _choose(logits, temperature, sub))  # (B, S)
        out = jax.lax.dynamic_update_slice_in_dim(out, chosen[..., None], position, axis=2)  # (B, S, T)
        return position + 1, chosen, cache, out, finished | (chosen == EOS_ID), key

    def not_done(state):
        return (state[0] < max_len) & ~jnp.all(state[4])

    start = jnp.full((rows, segments), decoder.bos_id, jnp.int32)  # (B, S)
    out = jnp.zeros((rows, segments, max_len), jnp.int32)  # (B, S, T)
    cache = decoder.init_cache(rows, segments, memory.dtype)
    state = (jnp.int32(0), start, cache, out, query_segments == 0, rng)
    return jax.lax.while_loop(not_done, body, state)[3]


def make_decoder(model: nnx.Module, max_len: int | None = None) -> Callable:
    """`decode(batch, temperature=0.0, seed=0) -> np.ndarray (B, S, T)` jitted once per batch shape.

    Uses `nnx.split` -> `jax.jit` -> `nnx.merge`, so the weights are an argument, not a constant.
    """
    graphdef, params = nnx.split(model)

    @jax.jit
    def run(params, batch, temperature, rng):
        return decode_tokens(nnx.merge(graphdef, params), batch, temperature, rng, max_len)

    def decode(batch: dict, temperature: float = 0.0, seed: int = 0) -> np.ndarray:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        arrays = {k: jnp.asarray(v) for k, v in batch.items()}
        return np.asarray(run(params, arrays, jnp.float32(temperature), jax.random.key(seed)))

    return decode


def teacher_forced_greedy(model, batch: dict, targets: jax.Array) -> jax.Array:
    """Reference decoding by fixed-length recompute: argmax after each true prefix, `(B, S, T)`.

    With a model's own greedy outputs as `targets` this equals cached greedy decoding, which is
    how the cache is tested.
    """
    from sora_jax.caption.model import teacher_forcing_inputs  # noqa: PLC0415

    logits = model(batch, teacher_forcing_inputs(targets, model.decoder.bos_id))  # (B, S, T, V)
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)  # (B, S, T)
