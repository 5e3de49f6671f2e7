"""The sampler as generation runs it: jitted over packed rows, optionally starting part-way (SDEdit).

`integrate` is `sora_jax.diffusion.sampler.sample`, whose `clean` and `start_time` arguments let
editing and blending start from `x = (1 - t0) clean + t0 noise` at `t0 = shift(start_time)` and
integrate only from there.

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

from sora_jax.diffusion.flow import FlowConfig, text_input
from sora_jax.diffusion.sampler import SamplerConfig, sample, time_grid

ROW_FIELDS = ("coords", "segment_ids", "text_tokens", "text_segment_ids")


# The library sampler takes the part-way start generation needs (`clean`, `start_time`); these names
# are what generation and its tests use.
shifted_grid = time_grid
integrate = sample


@functools.partial(jax.jit, static_argnames=("graphdef", "flow", "config"))
def _sample_rows(graphdef, params, fields, noise, clean, known_mask, known_tokens, start_time, flow, config):
    """The jitted sampler of one model graph: compiled once per graph, sampler config and row shapes,
    shared by every `RowSampler` of an equal graph (a CLI run, a notebook and tests reuse it)."""
    no_text = jnp.zeros(fields["segment_grid"].shape[:2], bool)  # (B, S): caption dropped

    def velocity(x, t, conditional):
        # Fresh Variables per call: the sampler's loop body is its own trace level.
        model = nnx.merge(graphdef, jax.tree.map(lambda a: a, params))
        return model(x, fields["coords"], fields["segment_ids"], t, text_input(fields), fields["text_segment_ids"],
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
        names = (*ROW_FIELDS, "segment_grid", *(("text_embeddings",) if "text_embeddings" in rows else ()))
        fields = {k: jnp.asarray(rows[k]) for k in names}  # frozen-encoder rows also carry text_embeddings
        clean = np.zeros_like(noise) if clean is None else clean
        start_time = np.broadcast_to(np.asarray(start_time, np.float32), rows["segment_grid"].shape[:2])  # (R, S)
        out = _sample_rows(self.graphdef, self.params, fields, jnp.asarray(noise), jnp.asarray(clean),
                           jnp.asarray(rows["known_mask"]), jnp.asarray(rows["tokens"]), jnp.asarray(start_time),
                           flow=self.flow, config=config)
        return np.asarray(out)
