"""The train step every stage uses: `jax.jit` with in/out shardings and a donated state.

A stage supplies `loss_fn(model, batch, rng) -> (loss, metrics)`; the step merges the model from
its graph definition and parameters, differentiates, applies the optax update, updates the EMA of
the parameters, and returns the new state and metrics. Parameters, optimizer state and EMA stay in
the shardings the mesh rules gave them.

NaN guard: when the loss or the gradient norm is not finite, the update is skipped (parameters,
optimizer state and EMA unchanged), `bad_steps` counts the run of such steps and `max_bad_run`
the longest run, so the host loop can stop with a clear message after K in a row without syncing
on every step.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from sora_jax.parallel import batch_sharding, init_sharded, use_mesh_rules

LossFn = Callable[[nnx.Module, dict, jax.Array], tuple[jax.Array, dict]]


@flax.struct.dataclass
class TrainState:
    """Step counter, model parameters and optimizer state: everything an update changes."""

    step: jax.Array
    params: Any
    opt_state: Any
    ema: Any = None  # exponential moving average of params (None when ema_decay == 0)
    bad_steps: Any = None  # current run of skipped (non-finite) steps
    max_bad_run: Any = None  # longest such run so far
    skipped: Any = None  # total skipped steps


def create_train_state(make_model: Callable[[], nnx.Module], tx: optax.GradientTransformation, mesh, rules,
                       ema: bool = False):
    """Builds the model sharded on `mesh`, its optimizer state and (with `ema`) its EMA.

    Returns `(graphdef, state, state_shardings)`; `state_shardings` mirrors `state` and is what the
    step's `in_shardings`/`out_shardings` use.
    """
    model, param_shardings = init_sharded(make_model, mesh, rules)
    graphdef, params = nnx.split(model)
    replicated = NamedSharding(mesh, PartitionSpec())
    # Optimizer leaves shaped like a parameter (moments) take its sharding; counts are replicated.
    opt_shardings = optax.tree_utils.tree_map_params(
        tx, lambda _, sharding: sharding, jax.eval_shape(tx.init, params), param_shardings,
        transform_non_params=lambda _: replicated,
    )
    opt_state = jax.jit(tx.init, out_shardings=opt_shardings)(params)
    counter = lambda: jax.device_put(jnp.zeros((), jnp.int32), replicated)  # noqa: E731
    shardings = TrainState(
        step=replicated, params=param_shardings, opt_state=opt_shardings,
        ema=param_shardings if ema else None, bad_steps=replicated, max_bad_run=replicated, skipped=replicated,
    )
    ema_params = jax.jit(lambda p: jax.tree.map(jnp.copy, p), out_shardings=param_shardings)(params) if ema else None
    state = TrainState(step=counter(), params=params, opt_state=opt_state, ema=ema_params,
                       bad_steps=counter(), max_bad_run=counter(), skipped=counter())
    return graphdef, state, shardings


def batch_shardings(batch: dict, mesh, rules, global_batch_size: int | None = None) -> dict:
    """Shardings of a batch dict: every array split over the batch axes on its leading dim.

    `batch` may be this process's rows; `global_batch_size` (default: its row count) is the global one.
    """
    rows = global_batch_size or len(next(iter(batch.values())))
    return {k: batch_sharding(mesh, rules, v.ndim, (rows, *v.shape[1:])) for k, v in batch.items()}


def takes_step(loss_fn: LossFn) -> bool:
    """Whether `loss_fn` wants the step number (schedules inside the loss, e.g. a GAN warm-up)."""
    return "step" in inspect.signature(loss_fn).parameters


def loss_and_grads(graphdef, loss_fn: LossFn, params, batch: dict, rng: jax.Array, mesh, rules, step=None):
    """`((loss, metrics), grads)` of `loss_fn` at `params` (to be called inside `jax.jit`)."""

    def loss_of(p):
        model = nnx.merge(graphdef, p)
        return loss_fn(model, batch, rng, step=step) if takes_step(loss_fn) else loss_fn(model, batch, rng)

    with use_mesh_rules(mesh, rules):
        return jax.value_and_grad(loss_of, has_aux=True)(params)


def _where(condition, new, old):
    return jax.tree.map(lambda a, b: jnp.where(condition, a, b), new, old)


def make_train_step(graphdef, loss_fn: LossFn, tx: optax.GradientTransformation, state_shardings, batch_sharding_tree,
                    mesh, rules, ema_decay: float = 0.0, donate: bool = True):
    """The jitted `step(state, batch, rng) -> (state, metrics)` with explicit shardings.

    Metrics gain `grad_norm` and `finite`. With `donate`, the input state's buffers are reused.
    """
    replicated = NamedSharding(mesh, PartitionSpec())

    def step(state: TrainState, batch: dict, rng: jax.Array):
        (loss, metrics), grads = loss_and_grads(graphdef, loss_fn, state.params, batch, rng, mesh, rules, state.step)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = _where(finite, optax.apply_updates(state.params, updates), state.params)
        opt_state = _where(finite, opt_state, state.opt_state)
        ema = state.ema
        if ema is not None:
            ema = _where(finite, jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, ema, params), ema)
        bad = jnp.where(finite, 0, state.bad_steps + 1)
        new_state = TrainState(
            step=state.step + 1, params=params, opt_state=opt_state, ema=ema, bad_steps=bad,
            max_bad_run=jnp.maximum(state.max_bad_run, bad), skipped=state.skipped + (~finite).astype(jnp.int32),
        )
        return new_state, dict(metrics, loss=loss, grad_norm=grad_norm, finite=finite)

    return jax.jit(
        step,
        in_shardings=(state_shardings, batch_sharding_tree, replicated),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,) if donate else (),
    )
