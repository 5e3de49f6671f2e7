"""Spatiotemporal causal VAE (Flax NNX): time 4x and space 8x8 into 16 latent channels by default.

Importing this package imports `sora_jax.parallel`, which switches Flax eager sharding off, so the
logical-axis annotations on every parameter never demand a mesh at construction.
"""
import sora_jax.parallel  # noqa: F401

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
    "PRESETS", "VAE", "DiagonalGaussian", "VAEConfig", "apply_size_policy", "crop_to", "get_vae_config",
    "latent_shape", "posterior_from_moments", "size_problems", "valid_shape",
]
