"""Spacetime patches: a `(t, h, w, c)` array becomes tokens that each carry their `(t, h, w)` coordinate.

Works on numpy arrays (the Grain data workers) and on jax arrays (the DiT's unpatchify), because it
uses only `reshape`/`transpose` methods and never converts between the two. Positions come from the
integer coordinates, never from a fixed grid, so any duration, resolution and aspect ratio works.

Token layout: tokens are in raster order over the token grid `(gt, gh, gw)`; the features of one
token are its patch flattened in `(pt, ph, pw, c)` order.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

Patch = Sequence[int]


def token_grid(shape: Sequence[int], patch: Patch) -> tuple[int, int, int]:
    """Token-grid size `(gt, gh, gw)` of an array of shape `(t, h, w, ...)` under `patch`.

    Raises ValueError naming the offending axis when a size is not a multiple of the patch, since a
    silent crop here would drop data the caller believes it kept.
    """
    grid = []
    for axis, size, p in zip("thw", shape[:3], patch):
        if p < 1 or size % p:
            raise ValueError(f"axis {axis} of size {size} is not a multiple of patch size {p}")
        grid.append(size // p)
    return tuple(grid)


def grid_coords(grid: Sequence[int]) -> np.ndarray:
    """Integer `(t, h, w)` coordinates of every token of `grid`, raster order; `(N, 3)` int32."""
    gt, gh, gw = grid
    mesh = np.meshgrid(np.arange(gt), np.arange(gh), np.arange(gw), indexing="ij")  # 3 x (gt, gh, gw)
    return np.stack(mesh, axis=-1).reshape(-1, 3).astype(np.int32)  # (N, 3)


def patchify(array, patch: Patch):
    """Cut `array (t, h, w, c)` into spacetime patches.

    Returns:
      tokens `(N, pt*ph*pw*c)` (same dtype and array type as the input), coords `(N, 3)` int32 numpy,
      and the token grid `(gt, gh, gw)`.
    """
    pt, ph, pw = patch
    gt, gh, gw = token_grid(array.shape, patch)
    channels = array.shape[3]
    blocks = array.reshape(gt, pt, gh, ph, gw, pw, channels)  # (gt, pt, gh, ph, gw, pw, c)
    blocks = blocks.transpose(0, 2, 4, 1, 3, 5, 6)  # (gt, gh, gw, pt, ph, pw, c)
    tokens = blocks.reshape(gt * gh * gw, pt * ph * pw * channels)  # (N, D)
    return tokens, grid_coords((gt, gh, gw)), (gt, gh, gw)


def unpatchify(tokens, grid: Sequence[int], patch: Patch):
    """Inverse of `patchify`: tokens `(N, pt*ph*pw*c)` of one segment back to `(t, h, w, c)`."""
    gt, gh, gw = (int(g) for g in grid)
    pt, ph, pw = patch
    n_tokens, features = tokens.shape
    if n_tokens != gt * gh * gw or features % (pt * ph * pw):
        raise ValueError(
            f"{n_tokens} tokens of {features} features do not fit grid {tuple(grid)} with patch {tuple(patch)}"
        )
    channels = features // (pt * ph * pw)
    blocks = tokens.reshape(gt, gh, gw, pt, ph, pw, channels)  # (gt, gh, gw, pt, ph, pw, c)
    blocks = blocks.transpose(0, 3, 1, 4, 2, 5, 6)  # (gt, pt, gh, ph, gw, pw, c)
    return blocks.reshape(gt * pt, gh * ph, gw * pw, channels)  # (t, h, w, c)
