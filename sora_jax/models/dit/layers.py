"""DiT building blocks with logical-axis annotations on every parameter (see sora_jax.parallel)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from sora_jax.models.attention import attention
from sora_jax.models.dit.rope import apply_rope
from sora_jax.parallel import constrain

_xavier = nnx.initializers.xavier_uniform()
_zeros = nnx.initializers.zeros_init()
_ones = nnx.initializers.ones_init()


def dense(in_dim: int, out_dim: int, axes: tuple[str | None, str | None], *, dtype, rngs: nnx.Rngs,
          kernel_init=_xavier) -> nnx.Linear:
    """A Linear whose kernel carries logical `axes` and whose bias follows the output axis."""
    return nnx.Linear(
        in_dim, out_dim, dtype=dtype, param_dtype=jnp.float32,
        kernel_init=nnx.with_partitioning(kernel_init, axes),
        bias_init=nnx.with_partitioning(_zeros, (axes[1],)), rngs=rngs,
    )


class RMSNorm(nnx.Module):
    """RMS normalisation over the last axis, computed in float32, with a learned scale."""

    def __init__(self, dim: int, *, eps: float, rngs: nnx.Rngs):
        del rngs
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32), out_sharding=("norm",))
        self.eps = eps

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return (x32 * self.scale[...]).astype(x.dtype)


class LayerNorm(nnx.Module):
    """LayerNorm in float32 (as Wan's FP32LayerNorm), optionally with affine scale and bias."""

    def __init__(self, dim: int, *, eps: float, affine: bool, rngs: nnx.Rngs):
        del rngs
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((dim,), jnp.float32), out_sharding=("norm",)) if affine else None
        self.bias = nnx.Param(jnp.zeros((dim,), jnp.float32), out_sharding=("norm",)) if affine else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        x32 = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        if self.scale is not None:
            x32 = x32 * self.scale[...] + self.bias[...]
        return x32.astype(x.dtype)


def timestep_features(t: jax.Array, dim: int) -> jax.Array:
    """Sinusoidal features `(..., dim)` of flow times `t in [0, 1]` (scaled by 1000, cos first, as Wan)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10000.0) * jnp.arange(half, dtype=jnp.float32) / half)  # (half,)
    angles = (t.astype(jnp.float32) * 1000.0)[..., None] * freqs  # (..., half)
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)  # (..., dim)


class Attention(nnx.Module):
    """Multi-head attention with q/k RMS-normalised across heads; self- or cross-attention."""

    def __init__(self, dim: int, heads: int, kv_dim: int, *, eps: float, dtype, implementation: str, rngs: nnx.Rngs):
        self.heads, self.implementation = heads, implementation
        self.to_q = dense(dim, dim, ("embed", "heads"), dtype=dtype, rngs=rngs)
        self.to_k = dense(kv_dim, dim, ("embed", "heads"), dtype=dtype, rngs=rngs)
        self.to_v = dense(kv_dim, dim, ("embed", "heads"), dtype=dtype, rngs=rngs)
        self.to_out = dense(dim, dim, ("heads", "embed"), dtype=dtype, rngs=rngs)
        self.norm_q = RMSNorm(dim, eps=eps, rngs=rngs)
        self.norm_k = RMSNorm(dim, eps=eps, rngs=rngs)

    def __call__(self, x, x_segment_ids, context, context_segment_ids, rope=None) -> jax.Array:
        batch, length, dim = x.shape
        q = self.norm_q(self.to_q(x)).reshape(batch, length, self.heads, -1)  # (B, L, H, Dh)
        k = self.norm_k(self.to_k(context)).reshape(batch, context.shape[1], self.heads, -1)  # (B, Lk, H, Dh)
        v = self.to_v(context).reshape(batch, context.shape[1], self.heads, -1)  # (B, Lk, H, Dh)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        q = constrain(q, ("batch", "length", "heads", None))
        out = attention(q, k, v, x_segment_ids, context_segment_ids, self.implementation)  # (B, L, H, Dh)
        return self.to_out(out.reshape(batch, length, dim))  # (B, L, D)


class MLP(nnx.Module):
    """Two-layer MLP with tanh-approximated GELU."""

    def __init__(self, dim: int, hidden: int, *, dtype, rngs: nnx.Rngs):
        self.fc_in = dense(dim, hidden, ("embed", "mlp"), dtype=dtype, rngs=rngs)
        self.fc_out = dense(hidden, dim, ("mlp", "embed"), dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = constrain(jax.nn.gelu(self.fc_in(x), approximate=True), ("batch", "length", "mlp"))  # (B, L, F)
        return self.fc_out(hidden)  # (B, L, D)
