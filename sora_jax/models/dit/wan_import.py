"""Importing Wan 2.1 transformer weights (diffusers' `WanTransformer3DModel` layout) into the DiT.

The DiT keeps Wan's layout, so importing is a renaming plus transposes: torch Linear weights are
`(out, in)`, ours `(in, out)`; the patch-embedding Conv3d becomes a Linear over patches flattened
in `(pt, ph, pw, c)` order; per-block tensors are stacked on the `layers` axis when layers are
scanned. Works from any mapping of names to arrays, e.g. `safetensors.numpy.load_file`.
"""
from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.models.dit.model import DiT

_LINEARS = {
    "patch_embed": None,  # special: Conv3d
    "time_embed_1": "condition_embedder.time_embedder.linear_1",
    "time_embed_2": "condition_embedder.time_embedder.linear_2",
    "time_proj": "condition_embedder.time_proj",
    "text_embed_1": "condition_embedder.text_embedder.linear_1",
    "text_embed_2": "condition_embedder.text_embedder.linear_2",
    "proj_out": "proj_out",
}
_BLOCK_LINEARS = {
    ("self_attn", "to_q"): "attn1.to_q", ("self_attn", "to_k"): "attn1.to_k",
    ("self_attn", "to_v"): "attn1.to_v", ("self_attn", "to_out"): "attn1.to_out.0",
    ("cross_attn", "to_q"): "attn2.to_q", ("cross_attn", "to_k"): "attn2.to_k",
    ("cross_attn", "to_v"): "attn2.to_v", ("cross_attn", "to_out"): "attn2.to_out.0",
    ("mlp", "fc_in"): "ffn.net.0.proj", ("mlp", "fc_out"): "ffn.net.2",
}
_BLOCK_VECTORS = {
    ("self_attn", "norm_q", "scale"): "attn1.norm_q.weight", ("self_attn", "norm_k", "scale"): "attn1.norm_k.weight",
    ("cross_attn", "norm_q", "scale"): "attn2.norm_q.weight", ("cross_attn", "norm_k", "scale"): "attn2.norm_k.weight",
    ("norm2", "scale"): "norm2.weight", ("norm2", "bias"): "norm2.bias",
}


def _linear(weights: Mapping[str, np.ndarray], name: str) -> dict:
    return {"kernel": np.asarray(weights[f"{name}.weight"]).T, "bias": np.asarray(weights[f"{name}.bias"])}


def _block(weights: Mapping[str, np.ndarray], index: int) -> dict:
    prefix = f"blocks.{index}."
    tree: dict = {"modulation": np.asarray(weights[prefix + "scale_shift_table"])[0]}
    for (module, layer), name in _BLOCK_LINEARS.items():
        tree.setdefault(module, {})[layer] = _linear(weights, prefix + name)
    for path, name in _BLOCK_VECTORS.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = np.asarray(weights[prefix + name])
    return tree


def wan_to_dit(weights: Mapping[str, np.ndarray], depth: int, scanned: bool) -> dict:
    """Our DiT's parameters as a nested dict of numpy arrays from Wan-layout `weights`."""
    tree = {ours: _linear(weights, theirs) for ours, theirs in _LINEARS.items() if theirs}
    conv = np.asarray(weights["patch_embedding.weight"])  # (D, C, pt, ph, pw)
    tree["patch_embed"] = {
        "kernel": conv.transpose(2, 3, 4, 1, 0).reshape(-1, conv.shape[0]),  # (pt*ph*pw*C, D)
        "bias": np.asarray(weights["patch_embedding.bias"]),
    }
    tree["out_modulation"] = np.asarray(weights["scale_shift_table"])[0]  # (2, D)
    blocks = [_block(weights, i) for i in range(depth)]
    if scanned:
        tree["blocks"] = jax.tree.map(lambda *layers: np.stack(layers), *blocks)
    else:
        tree["blocks"] = {i: block for i, block in enumerate(blocks)}
    return tree


def load_wan_weights(dit: DiT, weights: Mapping[str, np.ndarray]) -> None:
    """Overwrites `dit`'s parameters with Wan-layout `weights`; raises on any shape mismatch."""
    expected = nnx.to_pure_dict(nnx.state(dit, nnx.Param))
    imported = wan_to_dit(weights, dit.config.depth, dit.config.scan_layers)

    def check(path, ours, theirs):
        if tuple(ours.shape) != tuple(theirs.shape):
            raise ValueError(f"{'/'.join(map(str, path))}: model has {ours.shape}, weights have {theirs.shape}")
        return jnp.asarray(theirs, ours.dtype)

    converted = jax.tree_util.tree_map_with_path(check, expected, imported)
    state = nnx.state(dit, nnx.Param)
    nnx.replace_by_pure_dict(state, converted)
    nnx.update(dit, state)
