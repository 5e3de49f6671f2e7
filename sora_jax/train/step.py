"""The train step every stage uses: `jax.jit` with in/out shardings and a donated state.

A stage supplies `loss_fn(model, batch, rng) -> (loss, metrics)`; the step merges the model from
its graph definition and parameters, differentiates, applies the optax update, and returns the new
state and metrics. Parameters and optimizer state stay in the shardings the mesh rules gave them.
"""
from __future__ import annotations

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


def create_train_state(make_model: Callable[[], nnx.Module], tx: optax.GradientTransformation, mesh, rules):
    """Builds the model sharded on `mesh` and its optimizer state.

    Returns `(graphdef, state, state_shardings)`; `state_shardings` mirrors `state` and is what the
    step's `in_shardings`/`out_shardings` use.
    """
    model, param_shardings = init_sharded(make_model, mesh, rules)
    graphdef, params = nnx.split(model)
    opt_state = jax.jit(tx.init)(params)  # zeros_like etc. inherit each parameter's sharding
    replicated = NamedSharding(mesh, PartitionSpec())
    shardings = TrainState(
        step=replicated,
        params=param_shardings,
        opt_state=jax.tree.map(lambda x: x.sharding, opt_state),
    )
    state = TrainState(step=jax.device_put(jnp.zeros((), jnp.int32), replicated), params=params, opt_state=opt_state)
    return graphdef, state, shardings


def batch_shardings(batch: dict, mesh, rules) -> dict:
    """Shardings of a batch dict: every array split over the batch axes on its leading dim."""
    return {k: batch_sharding(mesh, rules, v.ndim, v.shape) for k, v in batch.items()}


def loss_and_grads(graphdef, loss_fn: LossFn, params, batch: dict, rng: jax.Array, mesh, rules):
    """`((loss, metrics), grads)` of `loss_fn` at `params` (to be called inside `jax.jit`)."""

    def loss_of(p):
        return loss_fn(nnx.merge(graphdef, p), batch, rng)

    with use_mesh_rules(mesh, rules):
        return jax.value_and_grad(loss_of, has_aux=True)(params)


def make_train_step(graphdef, loss_fn: LossFn, tx: optax.GradientTransformation, state_shardings, batch_sharding_tree,
                    mesh, rules, donate: bool = True):
    """The jitted `step(state, batch, rng) -> (state, metrics)` with explicit shardings.

    Metrics gain `grad_norm`. With `donate`, the input state's buffers are reused for the output.
    """
    replicated = NamedSharding(mesh, PartitionSpec())

    def step(state: TrainState, batch: dict, rng: jax.Array):
        (loss, metrics), grads = loss_and_grads(graphdef, loss_fn, state.params, batch, rng, mesh, rules)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics, loss=loss, grad_norm=optax.global_norm(grads))
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    return jax.jit(
        step,
        in_shardings=(state_shardings, batch_sharding_tree, replicated),
        out_shardings=(state_shardings, replicated),
        donate_argnums=(0,) if donate else (),
    )
