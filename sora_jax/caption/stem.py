"""A convolutional stem over packed patches that equals a CNN run over whole frames.

A linear patch embedding sees each patch alone; a transformer over such tokens has to discover edges
and corners from attention alone, and on Shapes World it does not within CPU budgets (shape stays
at chance, docs/caption.md). A small CNN over whole frames learns shape within a few hundred steps
from the same pixels. This stem gives the captioner that CNN without unpacking rows.

Packed rows hold each clip's patches in raster order over its token grid (`models.dit.patchify`),
so the patch at `(t, h + dh, w + dw)` of the same segment sits `dh * grid_width + dw` tokens away.
The first two layers are 3x3 (stride 1, then 2): each runs on every patch's pixel block padded by a
one-pixel halo copied from the neighbouring patches (zeros at the frame border, where no neighbour
of the same clip exists), so it computes over the packed row exactly what it computes over the whole
frame with SAME padding, and nothing leaks between clips of one row. Later layers are stride 2 until
one pixel per patch is left (`len(widths) == 1 + log2(patch side)`): 2x2 by default (`deep_kernel=2`),
which never cross a patch border and cost a matmul each, or 3x3 with halos (`deep_kernel=3`), a
plain whole-frame CNN whose last features see 17 pixels instead of 11, at twice the CPU time. The
`pt` frames of a patch are convolved as separate frames and concatenated before the projection to
the model width.

With `motion=True` the first layer also convolves each frame's difference from the previous frame of
the same clip (zero for the clip's first frame, so an image reads as still) and adds it, the second
stream of two-stream video networks: the first layers then see where an edge moved, and which way,
within one frame's features instead of only after attention has compared tokens across time. The
previous frame of a token's first frame is the last frame of the token one time step earlier (same
segment, coordinate `(t - 1, h, w)`, `grid_height * grid_width` tokens back). The difference kernel
starts at zero, so switching it on for a stage started from an image stage's weights
(`init_from` with `init_new_params`) leaves the stem as it was.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from sora_jax.models.dit.layers import dense

# Offsets (dh, dw) of the eight neighbours; index 4 of the 3x3 table is the patch itself.
_OFFSETS = [(dh, dw) for dh in (-1, 0, 1) for dw in (-1, 0, 1)]


def stem_depth(patch_side: int) -> int:
    """Conv layers a stem over square patches of `patch_side` pixels has (1 + log2 of the side)."""
    return 1 + int(math.log2(patch_side))


DEEP_KERNELS = (2, 3)


def kernel_size(layer: int, deep_kernel: int = 2) -> int:
    """3x3 for the first two layers (stride 1, then 2); `deep_kernel` for the stride-2 layers after them:
    2 stays within a patch (no halo, a matmul each), 3 reaches across patch borders like a plain CNN."""
    return 3 if layer < 2 else deep_kernel


def check_stem(patch: Sequence[int], widths: Sequence[int], deep_kernel: int = 2) -> None:
    """ValueError unless `widths` fits square power-of-two patches `(pt, ph, pw)` and `deep_kernel` is 2 or 3."""
    if deep_kernel not in DEEP_KERNELS:
        raise ValueError(f"config: model.stem_kernel must be one of {DEEP_KERNELS}, got {deep_kernel!r}")
    _, ph, pw = patch
    if ph != pw or ph < 1 or ph & (ph - 1):
        raise ValueError(f"config: the conv stem needs square power-of-two patches, got data.patch={tuple(patch)}")
    if len(widths) != stem_depth(ph) or min(widths, default=0) < 1:
        raise ValueError(f"config: model.stem_widths must hold {stem_depth(ph)} positive widths for {ph}x{pw} "
                         f"patches (one stride-1 layer, then one stride-2 layer per halving), got {tuple(widths)}")


def grid_extent(coords: jax.Array, segment_ids: jax.Array) -> jax.Array:
    """Each token's segment grid size `(B, L, 3)`: one more than the segment's largest `(t, h, w)`."""
    length = segment_ids.shape[1]
    largest = jax.vmap(lambda c, s: jax.ops.segment_max(c, s, num_segments=length))(coords, segment_ids)  # (B, L, 3)
    return jnp.take_along_axis(largest, segment_ids[..., None], axis=1) + 1  # (B, L, 3)


def _token_at(coords: jax.Array, segment_ids: jax.Array, step: jax.Array, delta) -> tuple[jax.Array, jax.Array]:
    """Index `(B, L)` of the token `step (B, L)` places away from each token, clipped into the row, and
    whether it exists: inside the row, the same segment (never padding), at coordinate `coords + delta`."""
    length = segment_ids.shape[1]
    j = jnp.arange(length)[None] + step  # (B, L)
    inside = (j >= 0) & (j < length)
    j = jnp.clip(j, 0, length - 1)
    same = (jnp.take_along_axis(segment_ids, j, axis=1) == segment_ids) & (segment_ids > 0)
    want = coords + jnp.array(delta, coords.dtype)  # (B, L, 3)
    at = jnp.all(jnp.take_along_axis(coords, j[..., None], axis=1) == want, axis=-1)
    return j, inside & same & at


def neighbour_table(coords: jax.Array, segment_ids: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Indices `(B, L, 9)` of each token's 3x3 same-frame neighbours and whether each exists.

    A neighbour exists when the token `dh * grid_width + dw` away holds the same segment and the
    coordinate `(t, h + dh, w + dw)`; padding tokens (segment 0) have none.
    """
    grid_width = grid_extent(coords, segment_ids)[..., 2]  # (B, L)
    found = [_token_at(coords, segment_ids, dh * grid_width + dw, (0, dh, dw)) for dh, dw in _OFFSETS]
    return jnp.stack([j for j, _ in found], -1), jnp.stack([e for _, e in found], -1)  # (B, L, 9) x 2


def previous_frames(x: jax.Array, coords: jax.Array, segment_ids: jax.Array) -> jax.Array:
    """Each frame's previous frame in its clip, for pixel blocks `x (B, L, F, h, w, C)` of `F` frames a token.

    Frame f > 0 of a token follows frame f - 1 of the same token; frame 0 follows the last frame of the
    token at `(t - 1, h, w)` of the same segment. A clip's first frame (and padding) is its own
    predecessor, so its difference is zero.
    """
    extent = grid_extent(coords, segment_ids)  # (B, L, 3)
    j, exists = _token_at(coords, segment_ids, -extent[..., 1] * extent[..., 2], (-1, 0, 0))  # (B, L) x 2
    earlier = jax.vmap(lambda a, i: a[i])(x[:, :, -1], j)  # (B, L, h, w, C)
    first = jnp.where(exists[..., None, None, None], earlier, x[:, :, 0])  # (B, L, h, w, C)
    return jnp.concatenate([first[:, :, None], x[:, :, :-1]], axis=2)  # (B, L, F, h, w, C)


def windowed(conv: nnx.Conv, x: jax.Array) -> jax.Array:
    """`conv(x)` for the stem's convs (VALID, square stride, no dilation) over `x (N, H, W, C)`, computed
    as one matmul of the stacked windows.

    Same weights and result as calling `conv`, to float rounding. On CPU, XLA's convolutions with 3-32
    channels over 8x8 blocks are slower than this matmul, above all backward: a `tiny` clip-stage
    captioner's loss gradient (4 x 1,024-token rows) took 2.9 s against 3.8 s through `conv`.
    """
    kh, kw, _, width = conv.kernel.shape
    strides = (conv.strides,) * 2 if isinstance(conv.strides, int) else tuple(conv.strides)
    if conv.padding != "VALID" or conv.kernel_dilation not in (1, (1, 1)) or strides[0] != strides[1]:
        raise ValueError(f"windowed needs a VALID, undilated, square-stride conv, got padding={conv.padding!r}, "
                         f"kernel_dilation={conv.kernel_dilation!r}, strides={conv.strides!r}")
    stride, (_, h, w, _) = strides[0], x.shape
    rows, cols = (h - kh) // stride + 1, (w - kw) // stride + 1
    windows = jnp.concatenate([x[:, i:i + stride * (rows - 1) + 1:stride, j:j + stride * (cols - 1) + 1:stride]
                               for i in range(kh) for j in range(kw)], axis=-1)  # (N, rows, cols, kh*kw*C)
    y = windows @ conv.kernel[...].reshape(-1, width).astype(x.dtype)  # (N, rows, cols, width)
    return y + conv.bias[...].astype(x.dtype) if conv.use_bias else y


def _gather(x: jax.Array, table: tuple[jax.Array, jax.Array], offset: tuple[int, int]) -> jax.Array:
    """`x (B, L, ...)` of each token's neighbour at `offset`, zero where there is none."""
    indices, exists = table
    k = _OFFSETS.index(offset)
    picked = jax.vmap(lambda a, i: a[i])(x, indices[..., k])  # (B, L, ...)
    mask = exists[..., k].reshape(exists.shape[:2] + (1,) * (x.ndim - 2))
    return jnp.where(mask, picked, jnp.zeros((), x.dtype))


def with_halo(x: jax.Array, table, *, before: bool) -> jax.Array:
    """Pixel blocks `x (B, L, F, h, w, C)` padded with the neighbours' edge pixels.

    `before=True` pads one pixel on every side (a stride-1 3x3 conv); `before=False` only below and
    right, which is where SAME padding of a stride-2 3x3 conv on an even size puts it.
    """
    below = _gather(x[:, :, :, :1], table, (1, 0))  # (B, L, F, 1, w, C)
    right = _gather(x[:, :, :, :, :1], table, (0, 1))  # (B, L, F, h, 1, C)
    corner = _gather(x[:, :, :, :1, :1], table, (1, 1))  # (B, L, F, 1, 1, C)
    if not before:
        middle = jnp.concatenate([x, right], axis=4)
        return jnp.concatenate([middle, jnp.concatenate([below, corner], axis=4)], axis=3)
    above = _gather(x[:, :, :, -1:], table, (-1, 0))
    left = _gather(x[:, :, :, :, -1:], table, (0, -1))
    rows = [
        [_gather(x[:, :, :, -1:, -1:], table, (-1, -1)), above, _gather(x[:, :, :, -1:, :1], table, (-1, 1))],
        [left, x, right],
        [_gather(x[:, :, :, :1, -1:], table, (1, -1)), below, corner],
    ]
    return jnp.concatenate([jnp.concatenate(row, axis=4) for row in rows], axis=3)  # (B, L, F, h+2, w+2, C)


class ConvStem(nnx.Module):
    """Whole-frame CNN over packed patches, then a projection of each patch's features to `dim`."""

    def __init__(self, patch: Sequence[int], channels: int, widths: Sequence[int], dim: int, *, dtype,
                 rngs: nnx.Rngs, deep_kernel: int = 2, motion: bool = False):
        check_stem(patch, widths, deep_kernel)
        self.patch, self.channels, self.dtype, self.deep_kernel = tuple(patch), channels, dtype, deep_kernel
        self.motion = motion
        convs, previous = [], channels
        for i, width in enumerate(widths):
            size = kernel_size(i, deep_kernel)
            convs.append(nnx.Conv(previous, width, (size, size), strides=1 if i == 0 else 2, padding="VALID",
                                  dtype=dtype, rngs=rngs))
            previous = width
        self.convs = nnx.List(convs)
        self.project = dense(patch[0] * previous, dim, (None, "embed"), dtype=dtype, rngs=rngs)
        if motion:  # the first layer's kernel over frame differences, created last and zero
            self.motion_conv = nnx.Conv(channels, widths[0], (3, 3), padding="VALID", use_bias=False, dtype=dtype,
                                        kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

    def __call__(self, tokens: jax.Array, coords: jax.Array, segment_ids: jax.Array) -> jax.Array:
        """Embeddings `(B, L, dim)` of packed patches `tokens (B, L, pt*ph*pw*C)`."""
        pt, ph, pw = self.patch
        batch, length = tokens.shape[:2]
        table = neighbour_table(coords, segment_ids)
        x = tokens.astype(self.dtype).reshape(batch, length, pt, ph, pw, self.channels)  # (B, L, F, h, w, C)
        diff = x - previous_frames(x, coords, segment_ids) if self.motion else None  # (B, L, F, h, w, C)
        for i, conv in enumerate(self.convs):
            if kernel_size(i, self.deep_kernel) == 3:
                x = with_halo(x, table, before=i == 0)
            _, _, frames, h, w, c = x.shape
            x = windowed(conv, x.reshape(batch * length * frames, h, w, c))
            if i == 0 and diff is not None:  # the same 3x3 window over the differences
                x = x + windowed(self.motion_conv, with_halo(diff, table, before=True).reshape(-1, h, w, c))
            x = x.reshape(batch, length, frames, *x.shape[1:])
            x = jax.nn.gelu(x)
        return self.project(x.reshape(batch, length, -1))  # (B, L, dim)
