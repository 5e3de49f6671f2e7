"""Logical axis names and the rule presets that place them on mesh axes.

A rule maps a logical axis to a mesh axis, a tuple of mesh axes, or None (replicated). Presets:

- `dp`:        pure data parallelism; parameters replicated.
- `fsdp`:      batch over (data, fsdp); parameters' embed axis sharded over fsdp (ZeRO-3 style).
- `fsdp_tp`:   fsdp plus tensor parallelism: heads and MLP hidden units over `tensor`.
- `fsdp_tp_sp`: as fsdp_tp, with the token axis of activations over `sequence`.
"""
from __future__ import annotations

from typing import Sequence

from jax.sharding import PartitionSpec

LOGICAL_AXES = (
    "batch",  # examples / packed rows
    "length",  # video tokens of a packed row
    "text_length",  # text tokens of a packed row
    "embed",  # model width
    "mlp",  # MLP hidden width
    "heads",  # attention heads
    "head_dim",  # per-head width
    "vocab",  # text vocabulary
    "patch",  # patch features (pt*ph*pw*c)
    "layers",  # scanned layer axis
    "conv_in",  # convolution input channels
    "conv_out",  # convolution output channels
    "kernel",  # convolution kernel taps
    "norm",  # normalisation scales
)

_BASE = {name: None for name in LOGICAL_AXES}

RULE_PRESETS: dict[str, dict[str, object]] = {
    "dp": _BASE | {"batch": ("data", "fsdp")},
    "fsdp": _BASE | {"batch": ("data", "fsdp"), "embed": "fsdp", "conv_out": "fsdp"},
    "fsdp_tp": _BASE | {
        "batch": ("data", "fsdp"), "embed": "fsdp", "mlp": "tensor", "heads": "tensor", "vocab": "tensor",
        "conv_out": "fsdp",
    },
    "fsdp_tp_sp": _BASE | {
        "batch": ("data", "fsdp"), "length": "sequence", "embed": "fsdp", "mlp": "tensor", "heads": "tensor",
        "vocab": "tensor", "conv_out": "fsdp",
    },
}


def get_rules(preset: str) -> dict[str, object]:
    """The rule table of a preset name; unknown names raise with the list of presets."""
    if preset not in RULE_PRESETS:
        raise ValueError(f"unknown sharding rules {preset!r}; known: {sorted(RULE_PRESETS)}")
    return RULE_PRESETS[preset]


def logical_spec(names: Sequence[str | None], rules: dict[str, object]) -> PartitionSpec:
    """PartitionSpec for an array whose axes carry the logical `names` (None = unsharded axis).

    A mesh axis is used at most once per array: a later logical axis that maps to a mesh axis
    already taken stays unsharded, as in MaxText.
    """
    used: set[str] = set()
    spec = []
    for name in names:
        if name is not None and name not in rules:
            raise ValueError(f"logical axis {name!r} is not in the vocabulary {LOGICAL_AXES}")
        target = None if name is None else rules[name]
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        axes = tuple(a for a in axes if a not in used)
        used.update(axes)
        spec.append(axes[0] if len(axes) == 1 else (axes or None))
    return PartitionSpec(*spec)
