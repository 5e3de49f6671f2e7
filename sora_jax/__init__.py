"""sora_jax: text-conditional latent diffusion over images and videos of any shape, in JAX."""

__version__ = "0.1.0"
