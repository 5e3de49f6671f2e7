"""The latent-encoding job (`sora-jax encode`): clip datasets -> normalised VAE latent datasets."""
from sora_jax.encode.job import EncodeConfig, encodable_shape, read_latent_info, run_encode

__all__ = ["EncodeConfig", "encodable_shape", "read_latent_info", "run_encode"]
