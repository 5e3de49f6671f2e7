"""Causal building blocks of the VAE, all channels-last `(B, T, H, W, C)`.

Causality along time is what lets an image be a one-frame video and lets long clips be processed
chunk by chunk: every temporal kernel only looks at the current and past frames. A `TimeStream`
carries the boundary between chunks: a chunk that starts at frame 0 pads the past with zeros; a
later chunk prepends the frames its predecessor left in the stream's cache, so chunked and
one-pass results are the same computation.

Norms are RMS over channels only (as in Wan 2.1): per position, hence causal, chunkable and
indifferent to spatial tiling. Parameters carry logical axes (`kernel`, `conv_in`, `conv_out`,
`norm`) as `out_sharding` metadata.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

import sora_jax.parallel  # noqa: F401  (switches eager sharding off so annotated params need no mesh)

CONV_AXES = ("kernel", "kernel", "kernel", "conv_in", "conv_out")


class TimeStream:
    """Causal time context of one forward pass over a chunk of frames.

    `cache=None` means the chunk starts at frame 0: causal layers pad the past with zeros. Otherwise
    `cache` is the `next_cache` list a pass over the previous chunk left, consumed in call order
    (the layers of a network are always called in the same order). Each causal layer appends the
    input frames the next chunk will need to `next_cache`, so its shapes are fixed by the chunk shape.
    """

    def __init__(self, cache: list[jax.Array] | None = None):
        self.first = cache is None
        self._cache = list(cache or [])
        self.next_cache: list[jax.Array] = []

    def pop(self) -> jax.Array:
        """The cached frames of the next causal layer in call order."""
        if not self._cache:
            raise ValueError("TimeStream cache exhausted: it came from a different network or chunk layout")
        return self._cache.pop(0)

    def push(self, frames: jax.Array) -> None:
        """Frames this layer's next chunk needs, `(B, k, H, W, C)`."""
        self.next_cache.append(frames)


def _param(rngs: nnx.Rngs, shape: tuple[int, ...], fan_in: int, axes: tuple[str, ...]) -> nnx.Param:
    """A weight drawn from N(0, 1/fan_in) (LeCun normal), annotated with logical axes."""
    value = jax.random.normal(rngs.params(), shape, jnp.float32) / math.sqrt(fan_in)
    return nnx.Param(value, out_sharding=axes)


class CausalConv3d(nnx.Module):
    """3D convolution that is causal in time: output frame j sees input frames <= j * stride.

    Spatial padding is symmetric "same" by default, or explicit `((top, bottom), (left, right))`.
    With a `TimeStream`, the `kernel_t - stride_t` last input frames are left for the next chunk,
    which is exactly what a later chunk needs for its outputs to equal the one-pass ones.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: tuple[int, int, int] = (3, 3, 3),
        stride: tuple[int, int, int] = (1, 1, 1), spatial_padding=None, *, rngs: nnx.Rngs,
    ):
        kt, kh, kw = kernel
        self.kernel_size, self.stride = tuple(kernel), tuple(stride)
        self.spatial_padding = tuple(spatial_padding or (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2)))
        self.kernel = _param(rngs, (kt, kh, kw, in_channels, out_channels), kt * kh * kw * in_channels, CONV_AXES)
        self.bias = nnx.Param(jnp.zeros((out_channels,), jnp.float32), out_sharding=("conv_out",))

    def __call__(self, x: jax.Array, stream: TimeStream | None = None) -> jax.Array:
        kt, st = self.kernel_size[0], self.stride[0]
        keep = kt - st  # input frames shared between this chunk's last window and the next chunk's first
        if stream is None or stream.first:
            time_padding = (kt - 1, 0)  # zeros before frame 0, applied inside the conv (no copy)
            if stream is not None and keep > 0:
                stream.push(_last_frames(x, keep, zeros_before=kt - 1))
        else:
            time_padding = (0, 0)
            if keep > 0:
                x = jnp.concatenate([stream.pop(), x], axis=1)  # (B, keep + T, H, W, C)
                stream.push(x[:, -keep:])
        y = jax.lax.conv_general_dilated(
            x, self.kernel[...], self.stride, (time_padding, *self.spatial_padding),
            dimension_numbers=("NDHWC", "DHWIO", "NDHWC"),
        )  # (B, T', H', W', C_out)
        return y + self.bias[...]


def _last_frames(x: jax.Array, count: int, zeros_before: int) -> jax.Array:
    """The last `count` frames of `x` preceded by `zeros_before` zero frames, `(B, count, H, W, C)`."""
    if x.shape[1] >= count:
        return x[:, -count:]
    pad = jnp.zeros((x.shape[0], min(count - x.shape[1], zeros_before), *x.shape[2:]), x.dtype)
    return jnp.concatenate([pad, x], axis=1)[:, -count:]


class RMSNorm(nnx.Module):
    """RMS norm over channels with a learned scale; `act=True` fuses the SiLU that always follows it
    in this network into the same elementwise pass (XLA fuses it into one loop)."""

    def __init__(self, channels: int, eps: float = 1e-6, *, rngs: nnx.Rngs):
        del rngs  # deterministic init; kept for the uniform module signature
        self.eps = eps
        self.scale = nnx.Param(jnp.ones((channels,), jnp.float32), out_sharding=("norm",))

    def __call__(self, x: jax.Array, act: bool = False) -> jax.Array:
        mean_square = jnp.mean(jnp.square(x), axis=-1, keepdims=True)  # (..., 1)
        y = x * jax.lax.rsqrt(mean_square + self.eps) * self.scale[...]
        return jax.nn.silu(y) if act else y


class ResBlock(nnx.Module):
    """Pre-norm residual block: (norm, SiLU, causal 3x3x3 conv) twice, plus a 1x1x1 shortcut when
    the width changes."""

    def __init__(self, in_channels: int, out_channels: int, eps: float = 1e-6, *, rngs: nnx.Rngs):
        self.norm1 = RMSNorm(in_channels, eps, rngs=rngs)
        self.conv1 = CausalConv3d(in_channels, out_channels, rngs=rngs)
        self.norm2 = RMSNorm(out_channels, eps, rngs=rngs)
        self.conv2 = CausalConv3d(out_channels, out_channels, rngs=rngs)
        needs_shortcut = in_channels != out_channels
        self.shortcut = CausalConv3d(in_channels, out_channels, (1, 1, 1), rngs=rngs) if needs_shortcut else None

    def __call__(self, x: jax.Array, stream: TimeStream | None = None) -> jax.Array:
        residual = x if self.shortcut is None else self.shortcut(x, stream)  # (B, T, H, W, C_out)
        h = self.conv1(self.norm1(x, act=True), stream)  # (B, T, H, W, C_out)
        h = self.conv2(self.norm2(h, act=True), stream)
        return h + residual


class SpatialAttention(nnx.Module):
    """Single-head self-attention over the positions of each frame separately (so still causal in
    time), with a residual connection; the middle block's global spatial context."""

    def __init__(self, channels: int, eps: float = 1e-6, *, rngs: nnx.Rngs):
        self.norm = RMSNorm(channels, eps, rngs=rngs)
        self.qkv = _param(rngs, (channels, 3 * channels), channels, ("conv_in", "conv_out"))
        self.qkv_bias = nnx.Param(jnp.zeros((3 * channels,), jnp.float32), out_sharding=("conv_out",))
        self.proj = _param(rngs, (channels, channels), channels, ("conv_in", "conv_out"))
        self.proj_bias = nnx.Param(jnp.zeros((channels,), jnp.float32), out_sharding=("conv_out",))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, h, w, c = x.shape
        qkv = self.norm(x) @ self.qkv[...] + self.qkv_bias[...]  # (B, T, H, W, 3C)
        qkv = qkv.reshape(b * t, h * w, 3, 1, c)  # (B*T, HW, 3, 1 head, C)
        out = jax.nn.dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])  # (B*T, HW, 1, C)
        out = out.reshape(b, t, h, w, c) @ self.proj[...] + self.proj_bias[...]  # (B, T, H, W, C)
        return x + out


class Downsample(nnx.Module):
    """Halves height and width (zero-pad right/bottom, 3x3 conv stride 2, as Wan 2.1) and/or the
    frames after frame 0 (causal conv of 3 frames, stride 2: frame 0 alone, then pairs)."""

    def __init__(self, channels: int, space: bool, time: bool, *, rngs: nnx.Rngs):
        halve = CausalConv3d(channels, channels, (1, 3, 3), (1, 2, 2), ((0, 1), (0, 1)), rngs=rngs) if space else None
        self.space = halve
        self.time = CausalConv3d(channels, channels, (3, 1, 1), (2, 1, 1), rngs=rngs) if time else None

    def __call__(self, x: jax.Array, stream: TimeStream | None = None) -> jax.Array:
        if self.space is not None:
            x = self.space(x, stream)  # (B, T, H/2, W/2, C)
        if self.time is not None:
            x = self.time(x, stream)  # (B, 1 + (T-1)/2, H', W', C)
        return x


class Upsample(nnx.Module):
    """Doubles the frames after frame 0 (a causal conv predicts two frames per frame, as Wan 2.1's
    upsample3d) and/or height and width (nearest, then a 3x3 conv that halves the channels, as Wan 2.1).
    """

    def __init__(self, channels: int, space: bool, time: bool, *, rngs: nnx.Rngs):
        self.time = CausalConv3d(channels, 2 * channels, (3, 1, 1), rngs=rngs) if time else None
        self.space = CausalConv3d(channels, channels // 2, (1, 3, 3), rngs=rngs) if space else None
        self.out_channels = channels // 2 if space else channels

    def __call__(self, x: jax.Array, stream: TimeStream | None = None) -> jax.Array:
        if self.time is not None:
            first = stream is None or stream.first
            pairs = self.time(x, stream)  # (B, T, H, W, 2C)
            b, t, h, w, c2 = pairs.shape
            pairs = pairs.reshape(b, t, h, w, 2, c2 // 2)  # (B, T, H, W, 2, C)
            frames = jnp.moveaxis(pairs, 4, 2).reshape(b, 2 * t, h, w, c2 // 2)  # (B, 2T, H, W, C)
            # Frame 0 was encoded alone, so it decodes to one frame: keep it, drop its predicted pair.
            x = jnp.concatenate([x[:, :1], frames[:, 2:]], axis=1) if first else frames  # (B, 1+2(T-1) | 2T, ...)
        if self.space is not None:
            x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)  # (B, T, 2H, 2W, C)
            x = self.space(x, stream)  # (B, T, 2H, 2W, C/2)
        return x
