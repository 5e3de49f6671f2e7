"""VAE reconstruction quality on real clips: PSNR, SSIM and the Fréchet distance of reconstructions.

Each suite reference clip (uint8) is scaled to [-1, 1], encoded to the posterior's mode and decoded
at its own shape (`VAE.encode(video).mode()`, `VAE.decode(latents, shape=...)`; sizes that do not fit
the VAE's factors are padded by the VAE's policy and cropped back). PSNR (data range 2) and SSIM
(11 x 11 Gaussian window) are the training-time definitions (`train.vae_task.psnr`,
`models.vae.losses.ssim`), averaged over clips; the Fréchet distance compares the probe features of
the reconstructions with those of the originals (0 for a perfect VAE).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.models.vae.losses import ssim
from sora_jax.train.batch import PIXEL_SCALE
from sora_jax.train.vae_task import psnr


def make_reconstructor(vae):
    """`video -> reconstruction` with the VAE's encode/decode jitted (`nnx.split` -> `jax.jit` -> `nnx.merge`);
    one compilation per clip shape."""
    graphdef, state = nnx.split(vae)
    run = jax.jit(lambda state, video: _roundtrip(nnx.merge(graphdef, state), video))

    def reconstructor(video: np.ndarray) -> np.ndarray:
        return np.asarray(run(state, jnp.asarray(video)))

    return reconstructor


def _roundtrip(vae, video):
    """uint8 `(T, H, W, 3)` -> the VAE's uint8 reconstruction (posterior mode, decoded at the clip's shape)."""
    pixels = video.astype(jnp.float32)[None] / PIXEL_SCALE - 1.0  # (1, T, H, W, 3)
    posterior = vae.encode(pixels, policy="pad")
    decoded = vae.decode(posterior.mode(), shape=posterior.source_shape or tuple(video.shape[:3]), clip=True)
    return jnp.rint((decoded[0] + 1.0) * PIXEL_SCALE).astype(jnp.uint8)  # (T, H, W, 3)


def reconstruction_quality(videos: list[np.ndarray], reconstructions: list[np.ndarray]) -> dict:
    """Mean PSNR (dB) and SSIM of reconstructions against originals (uint8 clips of equal shapes)."""
    psnrs, ssims = [], []
    for video, reconstruction in zip(videos, reconstructions):
        if video.shape != reconstruction.shape:
            raise ValueError(f"reconstruction shape {reconstruction.shape} differs from the clip's {video.shape}")
        a = jnp.asarray(video, jnp.float32)[None] / PIXEL_SCALE - 1.0  # (1, T, H, W, 3)
        b = jnp.asarray(reconstruction, jnp.float32)[None] / PIXEL_SCALE - 1.0
        psnrs.append(float(psnr(a, b)))
        ssims.append(float(ssim(a, b)))
    return {"psnr_db": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "clips": len(videos)}
