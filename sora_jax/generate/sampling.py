"""The sampler as generation runs it: jitted over packed rows, optionally starting part-way (SDEdit).

`integrate` is `sora_jax.diffusion.sampler.sample` with two additions generation needs: a start
time below 1 and a clean starting latent, so editing and blending start from `x = (1 - t0) clean +
t0 noise` at `t0 = shift(start_time)` and integrate only from there. With `start_time = 1` it is
the library sampler step for step (a test holds them equal). The time grid is the library's
shifted grid scaled by `start_time` before the shift, as SD3/Wan image-to-image truncate theirs.

`RowSampler` splits the model once (`nnx.split`); `_sample_rows` is jitted with the graph
definition, flow and sampler config static (one compilation per graph, config and row shapes) and
merges the model inside the trace (`nnx.merge`).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.diffusion.flow import FlowConfig, segment_token_counts, time_shift
from sora_jax.diffusion.sampler import SamplerConfig, VelocityFn, guided
from sora_jax.models.text_to_video import per_segment_to_tokens

ROW_FIELDS = ("coords", "segment_ids", "text_tokens", "text_segment_ids")


def shifted_grid(steps: int, token_counts: jax.Array, flow: FlowConfig, start_time=1.0) -> jax.Array:
    """Per-segment times `(steps + 1, B, S)` from `shift(start_time)` down to 0.

    `start_time` is a scalar or `(B, S)` (per segment) in (0, 1].
    """
    base = jnp.linspace(1.0, 0.0, steps + 1)[:, None, None] * jnp.asarray(start_time, jnp.float32)  # (N+1, B|1, S|1)
    return time_shift(base * jnp.ones_like(token_counts, jnp.float32), token_counts, flow)  # (N+1, B, S)


def integrate(
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
    """Integrates `dx/dt = v(x, t)` from `start_time` to 0; returns tokens `(B, L, D)`.

    Args:
      velocity_fn, noise `(B, L, D)`, segment_ids `(B, L)`, max_segments, config, flow, known_mask
        `(B, L)`, known_tokens `(B, L, D)`: as `sora_jax.diffusion.sampler.sample`.
      clean: `(B, L, D)` latent the start state mixes with the noise (SDEdit); None = pure noise.
      start_time: scalar or `(B, S)` fraction of the schedule to run (1 = full sampling).
    """
    known = jnp.zeros(segment_ids.shape, bool) if known_mask is None else known_mask.astype(bool)
    held = jnp.zeros_like(noise) if known_tokens is None else known_tokens.astype(noise.dtype)
    grid = shifted_grid(config.steps, segment_token_counts(segment_ids, max_segments), flow, start_time)
    v = guided(velocity_fn, config.guidance)

    def tokens_time(i):
        return jnp.where(known, 0.0, per_segment_to_tokens(grid[i], segment_ids))  # (B, L)

    def hold(x):
        return jnp.where(known[..., None], held, x)

    def step(i, x):
        t, t_next = tokens_time(i), tokens_time(i + 1)
        dt = (t_next - t)[..., None]  # (B, L, 1)
        velocity = v(x, t)
        predicted = hold(x + dt * velocity)
        if config.method == "euler":
            return predicted
        corrected = hold(x + dt * 0.5 * (velocity + v(predicted, t_next)))
        return jnp.where(i == config.steps - 1, predicted, corrected)  # no second evaluation at t = 0

    start = noise
    if clean is not None:
        t0 = tokens_time(0)[..., None]  # (B, L, 1)
        mixed = (1.0 - t0) * clean.astype(noise.dtype) + t0 * noise  # (B, L, D)
        start = jnp.where((segment_ids > 0)[..., None], mixed, noise)  # padding stays noise, as in `sample`
    return jax.lax.fori_loop(0, config.steps, step, hold(start))


@functools.partial(jax.jit, static_argnames=("graphdef", "flow", "config"))
def _sample_rows(graphdef, params, fields, noise, clean, known_mask, known_tokens, start_time, flow, config):
    """The jitted sampler of one model graph: compiled once per graph, sampler config and row shapes,
    shared by every `RowSampler` of an equal graph (a CLI run, a notebook and tests reuse it)."""
    no_text = jnp.zeros(fields["segment_grid"].shape[:2], bool)  # (B, S): caption dropped

    def velocity(x, t, conditional):
        # Fresh Variables per call: the sampler's loop body is its own trace level.
        model = nnx.merge(graphdef, jax.tree.map(lambda a: a, params))
        return model(x, fields["coords"], fields["segment_ids"], t, fields["text_tokens"], fields["text_segment_ids"],
                     None if conditional else no_text)

    return integrate(velocity, noise, fields["segment_ids"], fields["segment_grid"].shape[1], config, flow,
                     known_mask, known_tokens, clean=clean, start_time=start_time)


class RowSampler:
    """Samples packed rows with one model: `nnx.split` once, then the shared jitted `_sample_rows`."""

    def __init__(self, model: nnx.Module, flow: FlowConfig):
        self.graphdef, self.params = nnx.split(model)
        self.flow = flow

    def __call__(self, rows: dict, noise: np.ndarray, config: SamplerConfig, *, clean: np.ndarray | None = None,
                 start_time: float | np.ndarray = 1.0) -> np.ndarray:
        """Sampled tokens `(R, L, D)` of packed `rows` (with `tokens` as known values and
        `known_mask`) from `noise (R, L, D)`; `clean` and `start_time` for SDEdit."""
        fields = {k: jnp.asarray(rows[k]) for k in (*ROW_FIELDS, "segment_grid")}
        clean = np.zeros_like(noise) if clean is None else clean
        start_time = np.broadcast_to(np.asarray(start_time, np.float32), rows["segment_grid"].shape[:2])  # (R, S)
        out = _sample_rows(self.graphdef, self.params, fields, jnp.asarray(noise), jnp.asarray(clean),
                           jnp.asarray(rows["known_mask"]), jnp.asarray(rows["tokens"]), jnp.asarray(start_time),
                           flow=self.flow, config=config)
        return np.asarray(out)
