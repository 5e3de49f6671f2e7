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

import functools
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
    """A weight drawn from N(0, 1/fan_in) (LeCun normal), annotated with logical axes.

    The draw uses the RBG generator seeded from the module's threefry key: XLA:CPU compiles a
    threefry normal of a new shape in about a second, RBG in a tenth of that, and a VAE has ~100
    distinct weight shapes. Still deterministic in `rngs`, eager or under `jax.jit`.
    """
    key_data = jax.random.key_data(rngs.params())  # (2,) uint32
    key = jax.random.wrap_key_data(jnp.concatenate([key_data, key_data[::-1]]), impl="rbg")
    value = jax.random.normal(key, shape, jnp.float32) / math.sqrt(fan_in)
    return nnx.Param(value, out_sharding=axes)


# Below this many input channels the time taps are stacked into one 2D convolution's channels (fewer,
# fuller contractions); above it, one 2D convolution per tap is summed. Measured per layer shape on
# XLA:CPU, where XLA sends 2D convolutions to YNNPACK and both forms beat its native 3D convolution
# by 2-10x (16 channels at 64x64: 7 ms stacked, 12 ms summed, 72 ms 3D; 96 channels: 310/220/560 ms).
TAPS_AS_CHANNELS_BELOW = 64


class CausalConv3d(nnx.Module):
    """3D convolution that is causal in time: output frame j sees input frames <= j * stride.

    Spatial padding is symmetric "same" by default, or explicit `((top, bottom), (left, right))`.
    The first chunk (or a one-pass call) pads the past with `kernel_t - 1` zero frames; with a
    `TimeStream`, the last `kernel_t - stride_t` input frames are left for the next chunk, exactly
    what its first window needs for the outputs to equal the one-pass ones. Computed as 2D
    convolutions over frames (`_conv_frames`), which XLA:CPU runs far faster than a 3D convolution.
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
        keep = kt - st  # input frames shared by this chunk's last window and the next chunk's first
        first = stream is None or stream.first
        if kt > 1 and not first:
            x = jnp.concatenate([stream.pop(), x], axis=1)  # (B, keep+T, H, W, C): cached past
        lead = kt - 1 if kt > 1 and first else 0  # zero frames before frame 0, never materialised
        if stream is not None and kt > 1 and keep > 0:
            stream.push(_last_frames(x, keep, lead))  # (B, keep, H, W, C)
        count = (lead + x.shape[1] - kt) // st + 1  # output frames
        return self._conv_frames(x, lead, count) + self.bias[...]  # (B, count, H', W', C_out)

    def _conv_frames(self, x: jax.Array, lead: int, count: int) -> jax.Array:
        """Sum over time taps k of the 2D convolution of the frames tap k reads with kernel slice k,
        every frame an image of one batch; `lead` zero frames precede `x`. `(B, count, H', W', C_out)`."""
        conv = functools.partial(
            jax.lax.conv_general_dilated, window_strides=self.stride[1:], padding=self.spatial_padding,
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )
        kernel = self.kernel[...]  # (kt, kh, kw, C_in, C_out)
        if kernel.shape[0] == 1 or self.stride[0] > 1 or kernel.shape[3] < TAPS_AS_CHANNELS_BELOW:
            return _taps_as_channels(conv, kernel, x, lead, count, self.stride[0])
        return _sum_over_taps(conv, kernel, x, lead, count)


def _taps_as_channels(conv, kernel: jax.Array, x: jax.Array, lead: int, count: int, stride: int) -> jax.Array:
    """One 2D convolution whose input channels are the `kt` time taps side by side (any time stride)."""
    kt, kh, kw, c_in, c_out = kernel.shape
    b, _, h, w, _ = x.shape
    padded = jnp.pad(x, ((0, 0), (lead, 0), (0, 0), (0, 0), (0, 0)))  # (B, lead+T, H, W, C)
    taps = [padded[:, k : k + stride * (count - 1) + 1 : stride] for k in range(kt)]  # kt x (B, count, H, W, C)
    stacked = jnp.concatenate(taps, axis=-1).reshape(b * count, h, w, kt * c_in)  # (B*count, H, W, kt*C)
    y = conv(stacked, jnp.moveaxis(kernel, 0, 2).reshape(kh, kw, kt * c_in, c_out))  # (B*count, H', W', C_out)
    return y.reshape(b, count, *y.shape[1:])  # (B, count, H', W', C_out)


def _sum_over_taps(conv, kernel: jax.Array, x: jax.Array, lead: int, count: int) -> jax.Array:
    """One 2D convolution per time tap (stride 1), summed; outputs whose tap input would be one of the
    `lead` zero frames are not computed but zero-filled."""
    b, _, h, w, c_in = x.shape
    total = 0
    for k in range(kernel.shape[0]):
        skip = max(lead - k, 0)  # leading outputs whose tap-k input is a zero frame
        if skip >= count:
            continue  # this tap only ever sees the zero past in this chunk
        frames = x[:, skip + k - lead : count + k - lead]  # (B, count - skip, H, W, C)
        y = conv(frames.reshape(-1, h, w, c_in), kernel[k])  # (B*(count-skip), H', W', C_out)
        y = y.reshape(b, count - skip, *y.shape[1:])  # (B, count - skip, H', W', C_out)
        total = total + jnp.pad(y, ((0, 0), (skip, 0), (0, 0), (0, 0), (0, 0)))  # (B, count, H', W', C_out)
    return total


def _last_frames(x: jax.Array, count: int, zeros_before: int) -> jax.Array:
    """The last `count` frames of `x` preceded by `zeros_before` zero frames, `(B, count, H, W, C)`."""
    if x.shape[1] >= count:
        return x[:, -count:]
    padded = jnp.pad(x, ((0, 0), (zeros_before, 0), (0, 0), (0, 0), (0, 0)))  # (B, zeros_before+T, H, W, C)
    return padded[:, -count:]


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


def pool_space(x: jax.Array) -> jax.Array:
    """2x2 average pooling of `(B, T, H, W, C)` (H, W even)."""
    b, t, h, w, c = x.shape
    return x.reshape(b, t, h // 2, 2, w // 2, 2, c).mean(axis=(3, 5))  # (B, T, H/2, W/2, C)


def pool_time(x: jax.Array, first: bool) -> jax.Array:
    """Causal 2x frame averaging matching a stride-2 causal conv: frame 0 alone (first chunk), then pairs."""
    head, rest = (x[:, :1], x[:, 1:]) if first else (x[:, :0], x)
    b, t, h, w, c = rest.shape
    pairs = rest.reshape(b, t // 2, 2, h, w, c).mean(axis=2)  # (B, t/2, H, W, C)
    return jnp.concatenate([head, pairs], axis=1)  # (B, [1 +] t/2, H, W, C)


class Downsample(nnx.Module):
    """Halves height and width (zero-pad right/bottom, 3x3 conv stride 2, as Wan 2.1) and/or the
    frames after frame 0 (causal conv of 3 frames, stride 2: frame 0 alone, then pairs).

    With `shortcut`, each halving adds the parameter-free average of what it merges (a residual
    autoencoding shortcut, DC-AE, Chen et al. 2024): at initialisation the encoder already passes a
    pooled copy of its input downwards, which makes high-compression VAEs train several times faster.
    """

    def __init__(self, channels: int, space: bool, time: bool, shortcut: bool = False, *, rngs: nnx.Rngs):
        halve = CausalConv3d(channels, channels, (1, 3, 3), (1, 2, 2), ((0, 1), (0, 1)), rngs=rngs) if space else None
        self.space = halve
        self.time = CausalConv3d(channels, channels, (3, 1, 1), (2, 1, 1), rngs=rngs) if time else None
        self.shortcut = shortcut

    def __call__(self, x: jax.Array, stream: TimeStream | None = None) -> jax.Array:
        first = stream is None or stream.first
        if self.space is not None:
            y = self.space(x, stream)  # (B, T, H/2, W/2, C)
            x = y + pool_space(x) if self.shortcut else y
        if self.time is not None:
            y = self.time(x, stream)  # (B, 1 + (T-1)/2, H', W', C)
            x = y + pool_time(x, first) if self.shortcut else y
        return x


class Upsample(nnx.Module):
    """Doubles the frames after frame 0 (a causal conv predicts two frames per frame, as Wan 2.1's
    upsample3d) and/or height and width (nearest, then a 3x3 conv that halves the channels, as Wan 2.1).

    With `shortcut`, each doubling adds the parameter-free repeat of its input (frames repeated,
    pixels repeated with channel pairs averaged): the decoder's half of the DC-AE shortcut.
    """

    def __init__(self, channels: int, space: bool, time: bool, shortcut: bool = False, *, rngs: nnx.Rngs):
        self.time = CausalConv3d(channels, 2 * channels, (3, 1, 1), rngs=rngs) if time else None
        self.space = CausalConv3d(channels, channels // 2, (1, 3, 3), rngs=rngs) if space else None
        self.out_channels = channels // 2 if space else channels
        self.shortcut = shortcut

    def __call__(self, x: jax.Array, stream: TimeStream | None = None) -> jax.Array:
        if self.time is not None:
            first = stream is None or stream.first
            pairs = self.time(x, stream)  # (B, T, H, W, 2C)
            b, t, h, w, c2 = pairs.shape
            pairs = pairs.reshape(b, t, h, w, 2, c2 // 2)  # (B, T, H, W, 2, C)
            frames = jnp.moveaxis(pairs, 4, 2).reshape(b, 2 * t, h, w, c2 // 2)  # (B, 2T, H, W, C)
            if self.shortcut:
                frames = frames + jnp.repeat(x, 2, axis=1)  # (B, 2T, H, W, C)
            # Frame 0 was encoded alone, so it decodes to one frame: keep it, drop its predicted pair.
            x = jnp.concatenate([x[:, :1], frames[:, 2:]], axis=1) if first else frames  # (B, 1+2(T-1) | 2T, ...)
        if self.space is not None:
            y = upsample_conv(x, self.space.kernel[...][0]) + self.space.bias[...]  # (B, T, 2H, 2W, C/2)
            if self.shortcut:
                b, t, h, w, c = x.shape
                half = x.reshape(b, t, h, w, c // 2, 2).mean(axis=-1)  # (B, T, H, W, C/2)
                y = y + jnp.repeat(jnp.repeat(half, 2, axis=2), 2, axis=3)  # (B, T, 2H, 2W, C/2)
            x = y
        return x


def _phase_kernels(kernel: jax.Array, axis: int) -> list[tuple[jax.Array, tuple[int, int]]]:
    """For a 3-tap axis of `kernel` applied after nearest 2x upsampling: the 2-tap kernel and padding
    of each output phase on the low-resolution input (phase 0 reads rows i-1, i; phase 1 rows i, i+1)."""
    taps = [jnp.take(kernel, k, axis=axis) for k in range(3)]
    return [(jnp.stack([taps[0], taps[1] + taps[2]], axis=axis), (1, 0)),
            (jnp.stack([taps[0] + taps[1], taps[2]], axis=axis), (0, 1))]


def upsample_conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """`conv3x3(nearest_upsample_2x(x))` computed as four 2x2 convolutions on `x (B, T, H, W, C)`, one
    per output phase, interleaved: the same numbers with 4/9 of the multiply-adds and no 4x-sized
    upsampled copy of the input. `kernel (3, 3, C, C_out)`; returns `(B, T, 2H, 2W, C_out)`."""
    b, t, h, w, c = x.shape
    frames = x.reshape(b * t, h, w, c)  # (B*T, H, W, C)
    rows = []
    for row_kernel, row_pad in _phase_kernels(kernel, 0):
        cols = [
            jax.lax.conv_general_dilated(frames, phase, (1, 1), (row_pad, col_pad),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))  # (B*T, H, W, C_out)
            for phase, col_pad in _phase_kernels(row_kernel, 1)
        ]
        rows.append(jnp.stack(cols, axis=3))  # (B*T, H, W, 2, C_out)
    y = jnp.stack(rows, axis=2)  # (B*T, H, 2, W, 2, C_out)
    return y.reshape(b, t, 2 * h, 2 * w, kernel.shape[-1])  # (B, T, 2H, 2W, C_out)
