"""Parallelism: one vocabulary of logical axis names, rule presets mapping them to the mesh axes
`data`, `fsdp`, `tensor`, `sequence`, and the helpers that turn annotations into shardings.

No other module names mesh axes: models annotate parameters and activations with logical names
from `LOGICAL_AXES`, and the rules chosen by config decide where each lands on the mesh.
"""
from sora_jax.parallel.mesh import MESH_AXES, make_mesh, mesh_shape
from sora_jax.parallel.rules import LOGICAL_AXES, RULE_PRESETS, get_rules, logical_spec
from sora_jax.parallel.sharding import (
    batch_sharding,
    constrain,
    current_mesh_rules,
    init_sharded,
    state_shardings,
    use_mesh_rules,
)

__all__ = [
    "LOGICAL_AXES", "MESH_AXES", "RULE_PRESETS", "batch_sharding", "constrain", "current_mesh_rules", "get_rules",
    "init_sharded",
    "logical_spec", "make_mesh", "mesh_shape", "state_shardings", "use_mesh_rules",
]
