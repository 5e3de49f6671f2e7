"""Blockwise ("flash") attention written in plain JAX, for backends without a fused kernel (CPU).

XLA's dense attention materialises `(B, H, L, L)` scores and walks them several times; on CPU those
passes, not the matmuls, dominate. Here queries go block by block: the forward keeps only the
log-sum-exp per query, and the backward recomputes the block's probabilities instead of storing
them (the FlashAttention recurrences, with a custom VJP). The segment mask is applied per block,
exactly as the dense path applies it. Internally everything is head-major `(B, H, L, D)`.

Every matmul is written in a form XLA:CPU runs on its fast (YNNPACK) path: `A @ B` or `A @ B^T`
with `A` row-major. A product contracting the query axis of a `(bq, Lk)` block on its left operand
(`P^T dO`, `dS^T Q`, the textbook backward) falls back to a generic batched dot 4x slower, so the
backward accumulates `dV^T = dO^T P` and `dK^T = Q^T dS` from `dO` and `Q` transposed once per call.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

_MASKED = -1e30


def _blocks(x: jax.Array, block: int, axis: int) -> jax.Array:
    """Splits `axis` of `x` into `(n, block)` and moves `n` to the front for `lax.map`/`lax.scan`."""
    shape = x.shape[:axis] + (x.shape[axis] // block, block) + x.shape[axis + 1 :]
    return jnp.moveaxis(x.reshape(shape), axis, 0)


def _unblocks(x: jax.Array, axis: int) -> jax.Array:
    """Inverse of `_blocks`."""
    x = jnp.moveaxis(x, 0, axis)
    return x.reshape(x.shape[:axis] + (-1,) + x.shape[axis + 2 :])


def _scores(q_block, k, q_ids, kv_ids, scale):
    """Masked logits `(B, H, bq, Lk)` of a query block `(B, H, bq, D)` against keys `(B, H, Lk, D)`."""
    logits = jnp.einsum("bhqd,bhkd->bhqk", q_block, k, preferred_element_type=jnp.float32) * scale
    same = q_ids[:, None, :, None] == kv_ids[:, None, None, :]  # (B, 1, bq, Lk)
    return jnp.where(same, logits, _MASKED)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def flash_attention(q, k, v, q_ids, kv_ids, block: int):
    """Segment-masked attention, head-major: `q (B, H, Lq, D)` (Lq a multiple of `block`), `k, v (B, H, Lk, D)`."""
    return _forward(q, k, v, q_ids, kv_ids, block)[0]


def _forward(q, k, v, q_ids, kv_ids, block):
    scale = q.shape[-1] ** -0.5

    def one(_, args):
        q_block, ids = args
        s = _scores(q_block, k, ids, kv_ids, scale)  # (B, H, bq, Lk)
        m = jnp.max(s, axis=-1, keepdims=True)  # (B, H, bq, 1)
        p = jnp.exp(s - m)
        l = jnp.sum(p, axis=-1, keepdims=True)  # (B, H, bq, 1)
        # Normalising the (bq, D) output instead of the (bq, Lk) probabilities saves a pass.
        out = jnp.einsum("bhqk,bhkd->bhqd", p.astype(v.dtype), v, preferred_element_type=jnp.float32) / l
        return None, (out.astype(q.dtype), (m + jnp.log(l))[..., 0])  # (B, H, bq, D), (B, H, bq)

    _, (out, lse) = jax.lax.scan(one, None, (_blocks(q, block, 2), _blocks(q_ids, block, 1)))
    return _unblocks(out, 2), lse  # (B, H, Lq, D), (nq, B, H, bq)


def _fwd(q, k, v, q_ids, kv_ids, block):
    out, lse = _forward(q, k, v, q_ids, kv_ids, block)
    return out, (q, k, v, q_ids, kv_ids, out, lse)


def _bwd(block, residuals, d_out):
    q, k, v, q_ids, kv_ids, out, lse = residuals
    scale = q.shape[-1] ** -0.5
    d_out = d_out.astype(jnp.float32)
    delta = jnp.sum(d_out * out.astype(jnp.float32), axis=-1)  # (B, H, Lq)
    k32, v32 = k.astype(jnp.float32), v.astype(jnp.float32)

    def step(carry, args):
        dk_t, dv_t = carry  # (B, H, D, Lk) each
        q_block, q_block_t, ids, do_block, do_block_t, lse_block, delta_block = args
        p = jnp.exp(_scores(q_block, k, ids, kv_ids, scale) - lse_block[..., None])  # (B, H, bq, Lk)
        dv_t = dv_t + jnp.einsum("bhdq,bhqk->bhdk", do_block_t, p)
        dp = jnp.einsum("bhqd,bhkd->bhqk", do_block, v32)  # (B, H, bq, Lk)
        ds = p * (dp - delta_block[..., None]) * scale  # (B, H, bq, Lk)
        dk_t = dk_t + jnp.einsum("bhdq,bhqk->bhdk", q_block_t, ds)
        return (dk_t, dv_t), jnp.einsum("bhqk,bhkd->bhqd", ds, k32)  # dq block (B, H, bq, D)

    q32 = q.astype(jnp.float32)
    transposed_blocks = lambda x: _blocks(x.swapaxes(2, 3), block, 3)  # noqa: E731  (n, B, H, D, bq)
    xs = (_blocks(q32, block, 2), transposed_blocks(q32), _blocks(q_ids, block, 1), _blocks(d_out, block, 2),
          transposed_blocks(d_out), lse, _blocks(delta, block, 2))
    batch, heads, kv_len, head_dim = k.shape
    zeros = jnp.zeros((batch, heads, head_dim, kv_len), jnp.float32)  # (B, H, D, Lk)
    (dk_t, dv_t), dq = jax.lax.scan(step, (zeros, zeros), xs)
    dk, dv = dk_t.swapaxes(2, 3), dv_t.swapaxes(2, 3)  # (B, H, Lk, D)
    return _unblocks(dq, 2).astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None, None


flash_attention.defvjp(_fwd, _bwd)


def blockwise_attention(q, k, v, q_ids, kv_ids, block: int = 128) -> jax.Array:
    """Segment-masked attention of `q (B, Lq, H, D)` on `k, v (B, Lk, H, D)`, any lengths.

    Pads queries to a block multiple (padding ids -1 match nothing), runs `flash_attention`
    head-major, and returns `(B, Lq, H, D)`.
    """
    length = q.shape[1]
    block = min(block, length)
    pad = (-length) % block
    if pad:
        q = jnp.pad(q, ((0, 0), (0, pad), (0, 0), (0, 0)))
        q_ids = jnp.pad(q_ids, ((0, 0), (0, pad)), constant_values=-1)
    heads_first = lambda x: x.transpose(0, 2, 1, 3)  # noqa: E731  (B, L, H, D) -> (B, H, L, D)
    out = flash_attention(heads_first(q), heads_first(k), heads_first(v), q_ids, kv_ids, block)
    return heads_first(out)[:, :length]  # (B, Lq, H, D)
