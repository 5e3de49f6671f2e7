"""Device meshes from config: axes `data`, `fsdp`, `tensor`, `sequence`, with -1 meaning "fill"."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import jax
import numpy as np

MESH_AXES = ("data", "fsdp", "tensor", "sequence")


def mesh_shape(axes: Mapping[str, int], device_count: int) -> dict[str, int]:
    """Resolves a mesh spec such as `{"data": -1, "tensor": 2}` to sizes whose product is `device_count`.

    Missing axes are 1; at most one axis may be -1 and takes what is left. Raises ValueError naming
    the problem when the sizes cannot cover the devices exactly.
    """
    unknown = set(axes) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"unknown mesh axes {sorted(unknown)}; known: {MESH_AXES}")
    sizes = {name: int(axes.get(name, 1)) for name in MESH_AXES}
    fill = [name for name, size in sizes.items() if size == -1]
    if len(fill) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got {fill}")
    if any(size == 0 or size < -1 for size in sizes.values()):
        raise ValueError(f"mesh axis sizes must be positive or -1, got {sizes}")
    fixed = math.prod(size for size in sizes.values() if size != -1)
    if fill:
        if device_count % fixed:
            raise ValueError(f"mesh {sizes} does not divide {device_count} devices")
        sizes[fill[0]] = device_count // fixed
    if math.prod(sizes.values()) != device_count:
        raise ValueError(f"mesh {sizes} needs {math.prod(sizes.values())} devices, have {device_count}")
    return sizes


def make_mesh(axes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """A `jax.sharding.Mesh` over `devices` (default: all) with the four project axes, in order.

    Uses `jax.make_mesh` (topology-aware device order) when all devices are used.
    """
    devices = list(jax.devices() if devices is None else devices)
    sizes = mesh_shape(axes, len(devices))
    shape = tuple(sizes[name] for name in MESH_AXES)
    # Auto axes: GSPMD propagates shardings from the annotated parameters, batches and constraints.
    axis_types = (jax.sharding.AxisType.Auto,) * len(MESH_AXES)
    if len(devices) == jax.device_count():
        return jax.make_mesh(shape, MESH_AXES, devices=devices, axis_types=axis_types)
    return jax.sharding.Mesh(np.asarray(devices).reshape(shape), MESH_AXES, axis_types=axis_types)
