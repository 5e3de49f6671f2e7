"""The optimizer every stage uses: AdamW with warmup + cosine decay, clipping and a decay mask."""
from __future__ import annotations

import jax
import ml_collections
import optax


def learning_rate_schedule(o: ml_collections.ConfigDict, steps: int) -> optax.Schedule:
    """Linear warmup to `learning_rate` over `warmup_steps`, then cosine decay to `min_lr_ratio` x peak."""
    if o.schedule == "constant":
        return optax.linear_schedule(0.0, o.learning_rate, max(1, o.warmup_steps)) if o.warmup_steps else (
            optax.constant_schedule(o.learning_rate))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=o.learning_rate, warmup_steps=o.warmup_steps,
        decay_steps=max(steps, o.warmup_steps + 1), end_value=o.learning_rate * o.min_lr_ratio,
    )


def decay_mask(params):
    """Weight decay on weight matrices (`kernel`s) only: biases, norm scales, embeddings and
    modulation tables are not decayed. Decided by name, not rank, because scanned layers stack a
    per-layer norm scale into a matrix."""

    def is_kernel(path, _):
        names = [str(getattr(p, "key", getattr(p, "name", p))) for p in path]
        return "kernel" in names

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(o: ml_collections.ConfigDict, steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """`(tx, schedule)`: global-norm clipping (when `clip_norm` > 0), then AdamW with the schedule."""
    schedule = learning_rate_schedule(o, steps)
    parts = [optax.clip_by_global_norm(o.clip_norm)] if o.clip_norm > 0 else []
    parts.append(optax.adamw(schedule, b1=o.b1, b2=o.b2, eps=o.eps, weight_decay=o.weight_decay, mask=decay_mask))
    return optax.chain(*parts), schedule
