"""Spatiotemporal causal VAE (Flax NNX): time 4x and space 8x8 into 16 latent channels by default.

- `VAE(config, rngs=...)`: `encode(video) -> DiagonalGaussian`, `decode(latents)`, `__call__` for training.
- `ChunkedVAE(vae)`: the same encode/decode chunk by chunk along time (bounded memory, equal results)
  and `tiled_encode`/`tiled_decode` for frames larger than a tile.
- `losses`: reconstruction, SSIM, KL, `PatchDiscriminator3D` and hinge losses.

Importing this package imports `sora_jax.parallel`, which switches Flax eager sharding off, so the
logical-axis annotations on every parameter never demand a mesh at construction.
"""
import sora_jax.parallel  # noqa: F401

from sora_jax.models.vae.chunked import ChunkedVAE
from sora_jax.models.vae.config import PRESETS, VAEConfig, get_vae_config
from sora_jax.models.vae.model import (
    VAE,
    DiagonalGaussian,
    apply_size_policy,
    crop_to,
    latent_shape,
    posterior_from_moments,
    size_problems,
    valid_shape,
)

__all__ = [
    "PRESETS", "VAE", "ChunkedVAE", "DiagonalGaussian", "VAEConfig", "apply_size_policy", "crop_to",
    "get_vae_config", "latent_shape", "posterior_from_moments", "size_problems", "valid_shape",
]
