"""Rectified flow over packed rows: `x_t = (1 - t) x0 + t noise`, the model predicts `noise - x0`.

Times are drawn per segment (one clip or image of a row) from a logit-normal, then shifted toward
noise by an amount that grows with the segment's token count (bigger clips keep more structure at a
given t, so they need more time at high noise; the Flux/SD3 rule). Tokens marked known (conditioning
frames) sit at t = 0, stay clean, and carry no loss. Captions are dropped per segment with
probability `text_dropout` so one model serves conditional and unconditional predictions (CFG).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from sora_jax.models.text_to_video import per_segment_to_tokens

LOSS_AVERAGING = ("segment", "token")


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Choices of the flow objective; see the module docstring."""

    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: bool = True
    shift_base: float = 0.5  # log-shift at `shift_base_tokens`
    shift_max: float = 1.15  # log-shift at `shift_max_tokens`
    shift_base_tokens: int = 256
    shift_max_tokens: int = 4096
    loss_averaging: str = "segment"  # "segment": each clip counts equally; "token": each token does
    text_dropout: float = 0.1

    def __post_init__(self):
        if self.loss_averaging not in LOSS_AVERAGING:
            raise ValueError(f"loss_averaging must be one of {LOSS_AVERAGING}, got {self.loss_averaging!r}")
        if not 0.0 <= self.text_dropout <= 1.0:
            raise ValueError(f"text_dropout must be in [0, 1], got {self.text_dropout}")
        if self.logit_std <= 0 or self.shift_max_tokens <= self.shift_base_tokens:
            raise ValueError("logit_std must be positive and shift_max_tokens above shift_base_tokens")


def segment_token_counts(segment_ids: jax.Array, max_segments: int) -> jax.Array:
    """Tokens per segment `(B, S)` for segment ids 1..S (padding, id 0, is not counted)."""
    ids = jnp.arange(1, max_segments + 1, dtype=segment_ids.dtype)  # (S,)
    return jnp.sum(segment_ids[:, :, None] == ids, axis=1)  # (B, S)


def time_shift(t: jax.Array, token_counts: jax.Array, c: FlowConfig) -> jax.Array:
    """Shifts times toward 1 (noise) by `mu(tokens)`: `t' = e^mu t / (e^mu t + 1 - t)`, mu linear in tokens."""
    if not c.shift:
        return t
    slope = (c.shift_max - c.shift_base) / (c.shift_max_tokens - c.shift_base_tokens)
    mu = c.shift_base + slope * (token_counts.astype(jnp.float32) - c.shift_base_tokens)  # (B, S)
    scale = jnp.exp(mu)
    return scale * t / (scale * t + (1.0 - t))


def sample_times(rng: jax.Array, token_counts: jax.Array, c: FlowConfig) -> jax.Array:
    """Training times per segment `(B, S)`: logit-normal, then shifted by the segment's size."""
    logits = c.logit_mean + c.logit_std * jax.random.normal(rng, token_counts.shape)
    return time_shift(jax.nn.sigmoid(logits), token_counts, c)


def known_mask_of(batch: dict) -> jax.Array:
    """The batch's known-token mask `(B, L)` bool, all False when the batch has none."""
    known = batch.get("known_mask")
    return jnp.zeros(batch["segment_ids"].shape, bool) if known is None else known.astype(bool)


def masked_mean(errors: jax.Array, weights: jax.Array, segment_ids: jax.Array, max_segments: int, averaging: str):
    """Mean of per-token `errors (B, L)` under `weights (B, L)`, per token or per segment."""
    if averaging == "token":
        return jnp.sum(errors * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    one_hot = (segment_ids[:, :, None] == jnp.arange(1, max_segments + 1)).astype(errors.dtype)  # (B, L, S)
    sums = jnp.einsum("bl,bls->bs", errors * weights, one_hot)  # (B, S)
    counts = jnp.einsum("bl,bls->bs", weights, one_hot)  # (B, S)
    present = counts > 0
    return jnp.sum(jnp.where(present, sums / jnp.maximum(counts, 1.0), 0.0)) / jnp.maximum(jnp.sum(present), 1)


def text_input(batch: dict) -> jax.Array:
    """The model's text input of a packed batch: a frozen encoder's `text_embeddings (B, Lt, D)` when
    the rows carry them, else the token ids `text_tokens (B, Lt)` of the trainable encoder."""
    return batch["text_embeddings"] if "text_embeddings" in batch else batch["text_tokens"]


def flow_loss(model, batch: dict, rng: jax.Array, c: FlowConfig) -> tuple[jax.Array, dict]:
    """Rectified-flow loss of `model` (a `TextToVideo`) on a packed batch of clean float tokens.

    Returns the scalar loss and metrics (`loss`, `mean_t`).
    """
    x0 = batch["tokens"].astype(jnp.float32)  # (B, L, D)
    segment_ids = batch["segment_ids"]
    max_segments = batch["segment_grid"].shape[1]
    time_rng, noise_rng, drop_rng = jax.random.split(rng, 3)
    counts = segment_token_counts(segment_ids, max_segments)  # (B, S)
    known = known_mask_of(batch)  # (B, L)
    t = jnp.where(known, 0.0, per_segment_to_tokens(sample_times(time_rng, counts, c), segment_ids))  # (B, L)
    noise = jax.random.normal(noise_rng, x0.shape, jnp.float32)  # (B, L, D)
    x_t = (1.0 - t[..., None]) * x0 + t[..., None] * noise  # (B, L, D)
    text_keep = jax.random.uniform(drop_rng, counts.shape) >= c.text_dropout  # (B, S)
    velocity = model(x_t, batch["coords"], segment_ids, t, text_input(batch), batch["text_segment_ids"], text_keep)
    errors = jnp.mean(jnp.square(velocity.astype(jnp.float32) - (noise - x0)), axis=-1)  # (B, L)
    weights = batch["loss_mask"].astype(jnp.float32) * (1.0 - known.astype(jnp.float32))  # (B, L)
    loss = masked_mean(errors, weights, segment_ids, max_segments, c.loss_averaging)
    mean_t = jnp.sum(t * weights) / jnp.maximum(jnp.sum(weights), 1.0)
    return loss, {"loss": loss, "mean_t": mean_t}


def validation_loss(model, batch: dict, rng: jax.Array, times: jax.Array, c: FlowConfig) -> jax.Array:
    """Flow loss at fixed times `(K,)` (all segments at one t each, no text dropout): `(K,)` losses."""

    def at(t_value):
        segment_ids = batch["segment_ids"]
        x0 = batch["tokens"].astype(jnp.float32)
        known = known_mask_of(batch)
        t = jnp.where(known | (segment_ids == 0), 0.0, t_value)  # (B, L)
        noise = jax.random.normal(rng, x0.shape, jnp.float32)
        x_t = (1.0 - t[..., None]) * x0 + t[..., None] * noise
        velocity = model(x_t, batch["coords"], segment_ids, t, text_input(batch), batch["text_segment_ids"])
        errors = jnp.mean(jnp.square(velocity - (noise - x0)), axis=-1)
        weights = batch["loss_mask"].astype(jnp.float32) * (1.0 - known.astype(jnp.float32))
        return masked_mean(errors, weights, segment_ids, batch["segment_grid"].shape[1], c.loss_averaging)

    return jnp.stack([at(t) for t in times])
