"""Euler and Heun samplers for rectified flow, with classifier-free guidance and known tokens.

Sampling integrates `dx/dt = v(x, t)` from t = 1 (noise) to t = 0 (data) on a time grid shifted
per segment exactly as in training, so several clips of different shapes sample together in one
packed row. Known tokens (the one conditioning interface: image-to-video, extension, interpolation,
looping, editing) are held at their clean values with t = 0 at every step. Everything is a pure
function of its inputs, so the same seed gives the same sample.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from sora_jax.diffusion.flow import FlowConfig, segment_token_counts, time_shift
from sora_jax.models.text_to_video import per_segment_to_tokens

METHODS = ("euler", "heun")

# velocity_fn(x (B, L, D), t (B, L), conditional: bool) -> v (B, L, D)
VelocityFn = Callable[[jax.Array, jax.Array, bool], jax.Array]


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """Number of steps, integration method and guidance scale (1.0 = no guidance)."""

    steps: int = 30
    method: str = "euler"
    guidance: float = 1.0

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.guidance < 0:
            raise ValueError(f"guidance must be non-negative, got {self.guidance}")


def time_grid(steps: int, token_counts: jax.Array, flow: FlowConfig, start_time=1.0) -> jax.Array:
    """Per-segment times `(steps + 1, B, S)` from `shift(start_time)` down to 0, shifted by each
    segment's size. `start_time` (a scalar or `(B, S)`, in (0, 1]) truncates the schedule before the
    shift, as SD3/Wan image-to-image do; 1 is full sampling."""
    base = jnp.linspace(1.0, 0.0, steps + 1)[:, None, None] * jnp.asarray(start_time, jnp.float32)  # (N+1, B|1, S|1)
    return time_shift(base * jnp.ones_like(token_counts, jnp.float32), token_counts, flow)  # (N+1, B, S)


def guided(velocity_fn: VelocityFn, guidance: float) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """`v(x, t)` with classifier-free guidance: `v_u + g (v_c - v_u)` (conditional only when g = 1)."""

    def v(x, t):
        conditional = velocity_fn(x, t, True)
        if guidance == 1.0:
            return conditional
        unconditional = velocity_fn(x, t, False)
        return unconditional + guidance * (conditional - unconditional)

    return v


def sample(
    velocity_fn: VelocityFn,
    noise: jax.Array,
    segment_ids: jax.Array,
    max_segments: int,
    config: SamplerConfig,
    flow: FlowConfig,
    known_mask: jax.Array | None = None,
    known_tokens: jax.Array | None = None,
    *,
    clean: jax.Array | None = None,
    start_time=1.0,
) -> jax.Array:
    """Integrates from `noise (B, L, D)` at t = `start_time` (default 1) to clean tokens at t = 0.

    Args:
      velocity_fn: the model as `velocity_fn(x, t, conditional)`.
      noise: starting tokens; segment_ids `(B, L)`; max_segments: S of the packed rows.
      known_mask `(B, L)` bool and known_tokens `(B, L, D)`: tokens held clean (optional).
      clean: `(B, L, D)` tokens the start state mixes with the noise at the first time (SDEdit,
        blending); None starts from pure noise.
      start_time: scalar or `(B, S)` fraction of the schedule to run (see `time_grid`).
    Returns:
      Sampled tokens `(B, L, D)`; known tokens equal `known_tokens` exactly.
    """
    known = jnp.zeros(segment_ids.shape, bool) if known_mask is None else known_mask.astype(bool)
    held = jnp.zeros_like(noise) if known_tokens is None else known_tokens.astype(noise.dtype)
    grid = time_grid(config.steps, segment_token_counts(segment_ids, max_segments), flow, start_time)  # (N+1, B, S)
    v = guided(velocity_fn, config.guidance)

    def tokens_time(i):
        return jnp.where(known, 0.0, per_segment_to_tokens(grid[i], segment_ids))  # (B, L)

    def hold(x):
        return jnp.where(known[..., None], held, x)

    def step(i, x):
        t, t_next = tokens_time(i), tokens_time(i + 1)
        dt = (t_next - t)[..., None]  # (B, L, 1)
        velocity = v(x, t)
        if config.method == "euler":
            return hold(x + dt * velocity)
        predicted = hold(x + dt * velocity)
        corrected = hold(x + dt * 0.5 * (velocity + v(predicted, t_next)))
        is_last = i == config.steps - 1  # Heun's second evaluation at t = 0 is skipped (Karras et al.)
        return jnp.where(is_last, predicted, corrected)

    start = noise
    if clean is not None:
        t0 = tokens_time(0)[..., None]  # (B, L, 1)
        mixed = (1.0 - t0) * clean.astype(noise.dtype) + t0 * noise  # (B, L, D)
        start = jnp.where((segment_ids > 0)[..., None], mixed, noise)  # padding stays noise
    return jax.lax.fori_loop(0, config.steps, step, hold(start))
