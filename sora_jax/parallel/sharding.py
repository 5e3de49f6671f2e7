"""From logical annotations to shardings: parameters, batches and activation constraints.

Parameters carry their logical axes as Flax's `out_sharding` variable metadata, e.g.
`nnx.Param(w, out_sharding=("embed", "mlp"))`. Eager sharding is switched off so modules can be
built anywhere (tests, CPU); `init_sharded` builds them directly sharded under `jax.jit`.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Callable, Sequence

import jax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from sora_jax.parallel.rules import logical_spec

nnx.use_eager_sharding(False)

_CONTEXT: contextvars.ContextVar = contextvars.ContextVar("sora_jax_mesh_rules", default=None)


@contextlib.contextmanager
def use_mesh_rules(mesh: jax.sharding.Mesh, rules: dict[str, object]):
    """Within this block, `constrain` places activations on `mesh` by `rules`."""
    token = _CONTEXT.set((mesh, rules))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_mesh_rules():
    """`(mesh, rules)` set by the innermost `use_mesh_rules`, or None."""
    return _CONTEXT.get()


def _fit_spec(spec: PartitionSpec, shape: Sequence[int], mesh: jax.sharding.Mesh) -> PartitionSpec:
    """Drops mesh axes from dimensions they do not divide (tiny test configs), keeping the rest."""
    fitted = []
    for dim, axes in zip(shape, tuple(spec) + (None,) * (len(shape) - len(spec))):
        names = (axes,) if isinstance(axes, str) else tuple(axes or ())
        size = math.prod(mesh.shape[a] for a in names)
        fitted.append(axes if names and dim % size == 0 else None)
    return PartitionSpec(*fitted)


def named_sharding(names: Sequence[str | None], shape: Sequence[int], mesh, rules) -> NamedSharding:
    """NamedSharding for an array of `shape` whose axes have logical `names`."""
    return NamedSharding(mesh, _fit_spec(logical_spec(names, rules), shape, mesh))


def constrain(x: jax.Array, names: Sequence[str | None]) -> jax.Array:
    """Activation sharding constraint by logical names; a no-op outside `use_mesh_rules`."""
    context = _CONTEXT.get()
    if context is None:
        return x
    mesh, rules = context
    return jax.lax.with_sharding_constraint(x, named_sharding(names, x.shape, mesh, rules))


def state_shardings(state, mesh: jax.sharding.Mesh, rules: dict[str, object]):
    """Sharding tree for an nnx State (abstract or concrete) from each Variable's logical axes."""

    def one(variable):
        names = variable.get_metadata().get("out_sharding") or (None,) * len(variable.shape)
        return variable.replace(named_sharding(names, variable.shape, mesh, rules))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch_sharding(mesh: jax.sharding.Mesh, rules: dict[str, object], ndim: int, shape=None) -> NamedSharding:
    """Sharding of a global batch array: leading axis over the batch axes, the rest replicated.

    With `shape` (the global shape), raises ValueError when the batch does not divide over the batch
    axes: unlike parameters, a batch silently replicated would train on the wrong data.
    """
    spec = logical_spec(("batch",) + (None,) * (ndim - 1), rules)
    if shape is not None and spec[0] is not None:
        axes = (spec[0],) if isinstance(spec[0], str) else spec[0]
        size = math.prod(mesh.shape[a] for a in axes)
        if shape[0] % size:
            raise ValueError(f"global batch of {shape[0]} rows does not divide over {size} devices of mesh axes {axes}")
    return NamedSharding(mesh, spec)


def init_sharded(make_model: Callable[[], nnx.Module], mesh: jax.sharding.Mesh, rules: dict[str, object]):
    """Builds `make_model()` with every parameter created directly in its sharding.

    Returns the model (an nnx.Module whose arrays live on `mesh`) and the sharding tree of its state.
    """
    abstract = nnx.eval_shape(make_model)
    graphdef, abstract_state = nnx.split(abstract)
    shardings = state_shardings(abstract_state, mesh, rules)

    @jax.jit(out_shardings=shardings)
    def init():
        return nnx.split(make_model())[1]

    return nnx.merge(graphdef, init()), shardings
