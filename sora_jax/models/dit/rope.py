"""3D rotary position embedding from integer `(t, h, w)` token coordinates.

The head dim is split into a temporal, a height and a width part (Wan 2.1's split); each part
rotates pairs of features by angles `position * theta^(-2i/d_part)` of its own axis. Positions come
only from coordinates, so any duration, resolution or aspect works, and a constant shift of all
coordinates leaves every attention score unchanged (RoPE scores depend on differences only).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Feature counts given to the t, h and w axes: `(d - 4(d//6), 2(d//6), 2(d//6))`."""
    spatial = 2 * (head_dim // 6)
    return head_dim - 2 * spatial, spatial, spatial


def rope_angles(coords: jax.Array, head_dim: int, theta: float = 10000.0) -> tuple[jax.Array, jax.Array]:
    """Cosines and sines `(B, L, head_dim // 2)` for integer coords `(B, L, 3)`, in float32."""
    parts = []
    for axis, dim in enumerate(axis_dims(head_dim)):
        freqs = theta ** (-jnp.arange(0, dim, 2, dtype=jnp.float32) / dim)  # (dim/2,)
        parts.append(coords[..., axis : axis + 1].astype(jnp.float32) * freqs)  # (B, L, dim/2)
    angles = jnp.concatenate(parts, axis=-1)  # (B, L, head_dim/2)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates interleaved feature pairs of `x (B, L, H, D)` by the angles `(B, L, D/2)`."""
    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)  # (B, L, H, D/2, 2)
    real, imag = pairs[..., 0], pairs[..., 1]  # (B, L, H, D/2)
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # (B, L, 1, D/2)
    rotated = jnp.stack([real * cos - imag * sin, real * sin + imag * cos], axis=-1)  # (B, L, H, D/2, 2)
    return rotated.reshape(x.shape).astype(x.dtype)  # (B, L, H, D)
