"""The spatiotemporal causal VAE: encoder, decoder, diagonal Gaussian posterior and size policy.

Video is float in [-1, 1], `(B, T, H, W, 3)`; latents are `(B, t, h, w, c)` with
`t = 1 + (T - 1) / time_factor`, `h = H / space_factor`, `w = W / space_factor`. Frame 0 is
encoded alone, so an image (T=1) is a one-frame video with one latent frame, and decoding `t`
latent frames gives exactly `1 + (t - 1) * time_factor` frames.

Size policy (never a silent shape change): with `policy="error"` a clip whose T is not
`1 + time_factor * k` or whose H or W is not a multiple of `space_factor` raises ValueError naming
the nearest valid sizes; with `policy="pad"` frames are padded by repeating the last frame and
height/width by edge replication to the next valid size, and the posterior remembers the original
shape so `decode(..., shape=posterior.source_shape)` (and `VAE.__call__`) crops back to it.
"""
from __future__ import annotations

from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.models.vae.config import VAEConfig
from sora_jax.models.vae.layers import CausalConv3d, Downsample, ResBlock, RMSNorm, SpatialAttention, TimeStream, Upsample


@flax.struct.dataclass
class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)) over latents `(B, t, h, w, c)`; `source_shape` is the
    `(T, H, W)` of the video before size-policy padding (None when nothing was padded)."""

    mean: jax.Array
    logvar: jax.Array
    source_shape: Optional[tuple[int, int, int]] = flax.struct.field(pytree_node=False, default=None)

    @property
    def std(self) -> jax.Array:
        """Standard deviation `exp(logvar / 2)`, `(B, t, h, w, c)`."""
        return jnp.exp(0.5 * self.logvar)

    def sample(self, rng: jax.Array) -> jax.Array:
        """A reparameterised draw `mean + std * eps`, differentiable in mean and logvar."""
        return self.mean + self.std * jax.random.normal(rng, self.mean.shape, self.mean.dtype)

    def mode(self) -> jax.Array:
        """The most likely latent (the mean): what deterministic encoding jobs store."""
        return self.mean

    def kl(self) -> jax.Array:
        """KL(q || N(0, I)) per example, summed over latent elements, `(B,)`."""
        elementwise = 0.5 * (jnp.square(self.mean) + jnp.exp(self.logvar) - 1.0 - self.logvar)
        return jnp.sum(elementwise, axis=tuple(range(1, elementwise.ndim)))


def posterior_from_moments(moments: jax.Array, config: VAEConfig, source_shape=None) -> DiagonalGaussian:
    """Splits encoder moments `(B, t, h, w, 2c)` into mean and clipped log-variance."""
    mean, logvar = jnp.split(moments, 2, axis=-1)  # (B, t, h, w, c) each
    logvar = jnp.clip(logvar, config.logvar_min, config.logvar_max)
    return DiagonalGaussian(mean, logvar, source_shape)


def _mid_block(width: int, config: VAEConfig, rngs: nnx.Rngs) -> list:
    blocks = [ResBlock(width, width, config.norm_eps, rngs=rngs)]
    if config.mid_attention:
        blocks.append(SpatialAttention(width, config.norm_eps, rngs=rngs))
    return blocks + [ResBlock(width, width, config.norm_eps, rngs=rngs)]


def _bottleneck_groups(width: int, config: VAEConfig) -> int:
    """Feature channels per latent channel of the bottleneck shortcut (0: no shortcut)."""
    divisible = width % config.latent_channels == 0
    return width // config.latent_channels if config.shortcuts and divisible else 0


def _run(blocks, x: jax.Array, stream: TimeStream) -> jax.Array:
    for block in blocks:
        x = block(x) if isinstance(block, SpatialAttention) else block(x, stream)
    return x


class Encoder(nnx.Module):
    """Video `(B, T, H, W, 3)` -> moments `(B, t, h, w, 2c)` (mean and log-variance, unclipped)."""

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        widths, eps = config.widths, config.norm_eps
        self.conv_in = CausalConv3d(config.in_channels, widths[0], rngs=rngs)
        blocks, previous = [], widths[0]
        for level, width in enumerate(widths):
            for _ in range(config.num_res_blocks):
                blocks.append(ResBlock(previous, width, eps, rngs=rngs))
                previous = width
            if level < config.num_stages and (config.space_stages[level] or config.time_stages[level]):
                blocks.append(Downsample(width, config.space_stages[level], config.time_stages[level], config.shortcuts, rngs=rngs))
        self.blocks = nnx.List(blocks + _mid_block(widths[-1], config, rngs))
        self.norm_out = RMSNorm(widths[-1], eps, rngs=rngs)
        self.conv_out = CausalConv3d(widths[-1], 2 * config.latent_channels, rngs=rngs)
        self.quant = CausalConv3d(2 * config.latent_channels, 2 * config.latent_channels, (1, 1, 1), rngs=rngs)
        self.shortcut_groups = _bottleneck_groups(widths[-1], config)
        z = config.latent_channels
        self.quant.bias.value = self.quant.bias.value.at[z:].set(config.logvar_init)  # log-variance half

    def __call__(self, video: jax.Array, stream: TimeStream | None = None) -> jax.Array:
        stream = stream or TimeStream()
        x = self.conv_in(video, stream)  # (B, T, H, W, C0)
        x = _run(self.blocks, x, stream)  # (B, t, h, w, C_last)
        moments = self.quant(self.conv_out(self.norm_out(x, act=True), stream), stream)  # (B, t, h, w, 2c)
        if not self.shortcut_groups:
            return moments
        b, t, h, w, c = x.shape  # the mean gets the channel-group average of the features (DC-AE)
        pooled = x.reshape(b, t, h, w, c // self.shortcut_groups, self.shortcut_groups).mean(-1)  # (B, t, h, w, z)
        return moments + jnp.concatenate([pooled, jnp.zeros_like(pooled)], axis=-1)  # (B, t, h, w, 2z)


class Decoder(nnx.Module):
    """Latents `(B, t, h, w, c)` -> video `(B, 1 + (t-1) * time_factor, h * s, w * s, 3)`, unclipped."""

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        widths, eps, z = config.widths[::-1], config.norm_eps, config.latent_channels
        self.post_quant = CausalConv3d(z, z, (1, 1, 1), rngs=rngs)
        self.conv_in = CausalConv3d(z, widths[0], rngs=rngs)
        self.shortcut_groups = _bottleneck_groups(widths[0], config)
        blocks, previous = _mid_block(widths[0], config, rngs), widths[0]
        for level, width in enumerate(widths):
            for _ in range(config.num_res_blocks + 1):
                blocks.append(ResBlock(previous, width, eps, rngs=rngs))
                previous = width
            stage = config.num_stages - 1 - level  # the encoder stage this level undoes
            if stage >= 0 and (config.space_stages[stage] or config.time_stages[stage]):
                up = Upsample(width, config.space_stages[stage], config.time_stages[stage], config.shortcuts, rngs=rngs)
                blocks.append(up)
                previous = up.out_channels
        self.blocks = nnx.List(blocks)
        self.norm_out = RMSNorm(previous, eps, rngs=rngs)
        self.conv_out = CausalConv3d(previous, config.in_channels, rngs=rngs)

    def __call__(self, latents: jax.Array, stream: TimeStream | None = None) -> jax.Array:
        stream = stream or TimeStream()
        x = self.conv_in(self.post_quant(latents, stream), stream)  # (B, t, h, w, C_last)
        if self.shortcut_groups:
            x = x + jnp.repeat(latents, self.shortcut_groups, axis=-1)  # (B, t, h, w, C_last): DC-AE shortcut
        x = _run(self.blocks, x, stream)  # (B, T, H, W, C0)
        return self.conv_out(self.norm_out(x, act=True), stream)  # (B, T, H, W, 3)


def _nearest(value: int, step: int, offset: int, minimum: int) -> str:
    """The valid sizes `offset + step * k` (at least `minimum`) just below and above `value`, as text."""
    below = offset + step * ((value - offset) // step)
    return " or ".join(str(size) for size in (below, below + step) if size >= minimum)


def size_problems(shape: tuple[int, int, int], config: VAEConfig) -> list[str]:
    """Why a `(T, H, W)` does not fit the factors, one message per axis, naming the nearest valid sizes."""
    frames, height, width = shape
    tf, sf = config.time_factor, config.space_factor
    problems = []
    if frames < 1 or (frames - 1) % tf:
        problems.append(f"T={frames} is not 1+{tf}k; nearest valid: {_nearest(frames, tf, 1, 1)}")
    for name, size in (("H", height), ("W", width)):
        if size < sf or size % sf:
            problems.append(f"{name}={size} is not a multiple of {sf}; nearest valid: {_nearest(size, sf, 0, sf)}")
    return problems


def valid_shape(shape: tuple[int, int, int], config: VAEConfig) -> tuple[int, int, int]:
    """The smallest `(T, H, W)` at least `shape` that fits the factors (what `policy="pad"` pads to)."""
    frames, height, width = shape
    tf, sf = config.time_factor, config.space_factor
    frames = 1 + tf * -(-(frames - 1) // tf)
    return frames, max(sf, -(-height // sf) * sf), max(sf, -(-width // sf) * sf)


def apply_size_policy(video: jax.Array, config: VAEConfig, policy: str | None = None):
    """Checks or pads `video (B, T, H, W, C)` by `policy` (default: the config's).

    Returns `(video, source_shape)`: source_shape is None when the video already fit, else the original
    `(T, H, W)`. Raises ValueError naming the nearest valid sizes under `policy="error"`.
    """
    policy = policy or config.size_policy
    shape = tuple(int(s) for s in video.shape[1:4])
    problems = size_problems(shape, config)
    if not problems:
        return video, None
    if policy == "error":
        raise ValueError("video shape does not fit the VAE factors (use policy='pad' to pad): " + "; ".join(problems))
    if policy != "pad":
        raise ValueError(f"policy must be 'error' or 'pad', got {policy!r}")
    target = valid_shape(shape, config)
    pads = [(0, 0)] + [(0, t - s) for t, s in zip(target, shape)] + [(0, 0)]
    xp = np if isinstance(video, np.ndarray) else jnp  # host arrays stay on the host (chunked path)
    return xp.pad(video, pads, mode="edge"), shape  # (B, T', H', W', C): last frame repeated, edges replicated


def crop_to(video: jax.Array, shape: tuple[int, int, int] | None) -> jax.Array:
    """`video (B, T, H, W, C)` cropped to `(T, H, W)` = shape (no-op for None)."""
    if shape is None:
        return video
    return video[:, : shape[0], : shape[1], : shape[2]]  # (B, T0, H0, W0, C)


class VAE(nnx.Module):
    """Causal video VAE: `encode` -> DiagonalGaussian posterior, `decode` -> video, and `__call__`
    for the training loop (encode, sample, decode, crop). See the module docstring for shapes."""

    def __init__(self, config: VAEConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.encoder = Encoder(config, rngs=rngs)
        self.decoder = Decoder(config, rngs=rngs)

    def encode(self, video: jax.Array, *, policy: str | None = None) -> DiagonalGaussian:
        """Encodes `video (B, T, H, W, 3)` in [-1, 1] in one pass into the posterior over
        `(B, t, h, w, c)`; sizes that do not fit the factors follow `policy` (module docstring)."""
        video, source_shape = apply_size_policy(video, self.config, policy)
        return posterior_from_moments(self.encoder(video), self.config, source_shape)

    def decode(self, latents: jax.Array, *, shape: tuple[int, int, int] | None = None, clip: bool = False):
        """Decodes `latents (B, t, h, w, c)` into `(B, 1 + (t-1)*time_factor, h*s, w*s, 3)` in one pass,
        cropped to `shape = (T, H, W)` when given (a padded posterior's `source_shape`), clipped to
        [-1, 1] when `clip` (for display; training wants the unclipped output)."""
        video = crop_to(self.decoder(latents), shape)  # (B, T, H, W, 3)
        return jnp.clip(video, -1.0, 1.0) if clip else video

    def __call__(self, video: jax.Array, *, rng: jax.Array | None = None, policy: str | None = None):
        """Reconstruction for training: returns `(reconstruction, posterior)`, the reconstruction of the
        same shape as `video`; samples the posterior when `rng` is given, else uses its mode."""
        posterior = self.encode(video, policy=policy)
        latents = posterior.sample(rng) if rng is not None else posterior.mode()
        return self.decode(latents, shape=posterior.source_shape), posterior


def latent_shape(shape: tuple[int, int, int], config: VAEConfig) -> tuple[int, int, int]:
    """`(t, h, w)` of the latents of a valid `(T, H, W)`."""
    frames, height, width = shape
    return 1 + (frames - 1) // config.time_factor, height // config.space_factor, width // config.space_factor
