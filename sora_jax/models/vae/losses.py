"""VAE training losses: reconstruction (L1/L2), a structural SSIM term, the KL of the diagonal
Gaussian posterior, and a 3D patch discriminator with hinge losses.

Nothing here downloads a network: the structural term is SSIM (Wang et al. 2004) computed per
frame with an 11-tap Gaussian window, which rewards matching local means, contrasts and
correlations, the structure an L1/L2 loss blurs away.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

import sora_jax.parallel  # noqa: F401  (eager sharding off: annotated params need no mesh)
from sora_jax.models.vae.layers import CausalConv3d, RMSNorm
from sora_jax.models.vae.model import DiagonalGaussian


def reconstruction_loss(video: jax.Array, reconstruction: jax.Array, kind: str = "l1") -> jax.Array:
    """Mean absolute ("l1") or squared ("l2") error over every element."""
    if kind == "l1":
        return jnp.mean(jnp.abs(reconstruction - video))
    if kind == "l2":
        return jnp.mean(jnp.square(reconstruction - video))
    raise ValueError(f"kind must be 'l1' or 'l2', got {kind!r}")


def _gaussian_window(size: int, sigma: float) -> jax.Array:
    offsets = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2
    taps = jnp.exp(-0.5 * jnp.square(offsets / sigma))
    return taps / jnp.sum(taps)  # (size,)


def _blur(images: jax.Array, taps: jax.Array) -> jax.Array:
    """Separable 'valid' Gaussian filter of `images (N, H, W, C)`, each channel on its own."""
    channels = images.shape[-1]
    for kernel_shape in ((taps.size, 1, 1, channels), (1, taps.size, 1, channels)):
        kernel = jnp.broadcast_to(taps.reshape(kernel_shape[:2] + (1, 1)), kernel_shape)  # (kh, kw, 1, C)
        images = jax.lax.conv_general_dilated(
            images, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=channels,
        )  # (N, H', W', C)
    return images


def ssim(video: jax.Array, reconstruction: jax.Array, *, data_range: float = 2.0, window: int = 11,
         sigma: float = 1.5) -> jax.Array:
    """Mean SSIM over frames, positions and channels of `(B, T, H, W, C)` clips in a range of width
    `data_range` (2 for [-1, 1]); 1 for identical inputs, lower as structure is lost."""
    height, width = video.shape[2:4]
    if height < window or width < window:
        raise ValueError(f"ssim needs frames of at least {window}x{window} (the window), got {height}x{width}")
    x = video.reshape(-1, *video.shape[2:]).astype(jnp.float32)  # (B*T, H, W, C)
    y = reconstruction.reshape(-1, *reconstruction.shape[2:]).astype(jnp.float32)
    taps = _gaussian_window(window, sigma)
    mu_x, mu_y = _blur(x, taps), _blur(y, taps)  # (B*T, H', W', C)
    var_x = _blur(x * x, taps) - mu_x * mu_x
    var_y = _blur(y * y, taps) - mu_y * mu_y
    cov = _blur(x * y, taps) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    score = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return jnp.mean(score)


def ssim_loss(video: jax.Array, reconstruction: jax.Array, **kwargs) -> jax.Array:
    """`1 - ssim`: 0 for identical clips."""
    return 1.0 - ssim(video, reconstruction, **kwargs)


def kl_loss(posterior: DiagonalGaussian) -> jax.Array:
    """KL(q || N(0, I)) averaged over latent elements (independent of the latent size, so one weight
    suits every clip shape); 0 exactly when the posterior is the standard normal."""
    return jnp.sum(posterior.kl()) / posterior.mean.size


def vae_loss(video, reconstruction, posterior, *, l1: float = 1.0, l2: float = 0.0, ssim_weight: float = 0.0,
             kl: float = 1e-6) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Weighted sum of the non-adversarial terms; returns `(total, {term: value})` for logging."""
    terms = {"l1": reconstruction_loss(video, reconstruction, "l1"), "kl": kl_loss(posterior)}
    if l2:
        terms["l2"] = reconstruction_loss(video, reconstruction, "l2")
    if ssim_weight:
        terms["ssim"] = ssim_loss(video, reconstruction)
    weights = {"l1": l1, "l2": l2, "ssim": ssim_weight, "kl": kl}
    total = sum(weights[name] * value for name, value in terms.items())
    return total, terms


def hinge_discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Hinge loss of the discriminator (Lim & Ye 2017; SAGAN, BigGAN):
    `mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))`. (VQGAN scales this by 1/2.)"""
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_generator_loss(fake_logits: jax.Array) -> jax.Array:
    """Generator side of the hinge GAN: `-mean(D(fake))`."""
    return -jnp.mean(fake_logits)


class PatchDiscriminator3D(nnx.Module):
    """3D PatchGAN: causal convs that halve height and width per level (time kept, so images work),
    LeakyReLU(0.2), channel RMS norms; returns one real/fake logit per spacetime patch,
    `(B, T, H / 2**len(widths), W / 2**len(widths), 1)`."""

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (64, 128, 256), *, rngs: nnx.Rngs):
        convs, norms, previous = [], [], in_channels
        for level, width in enumerate(widths):
            convs.append(CausalConv3d(previous, width, (3, 4, 4), (1, 2, 2), rngs=rngs))
            # The first level sees pixels; normalising them would discard contrast, as in PatchGAN.
            norms.append(RMSNorm(width, rngs=rngs) if level > 0 else None)
            previous = width
        self.convs, self.norms = nnx.List(convs), nnx.List(norms)
        self.head = CausalConv3d(previous, 1, (3, 3, 3), rngs=rngs)

    def __call__(self, video: jax.Array) -> jax.Array:
        x = video
        for conv, norm in zip(self.convs, self.norms):
            x = conv(x)  # (B, T, H/2, W/2, width)
            x = jax.nn.leaky_relu(x if norm is None else norm(x), 0.2)
        return self.head(x)  # (B, T, h, w, 1)
