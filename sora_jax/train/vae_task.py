"""The VAE stage: reconstruction + structure + KL, and an optional 3D patch GAN after a warm-up.

One model holds the VAE and the discriminator; one optimizer updates both, because each loss term
reaches only its own side: the discriminator sees reconstructions through `stop_gradient`, and the
generator term sees a frozen copy of the discriminator. Every step trains on a batch of video crops
and a batch of image crops (T = 1), so both live in the same latent space.
"""
from __future__ import annotations

import dataclasses

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

from data_pipelines.clips import ClipBatchConfig, build_clip_batches
from sora_jax.models.vae import VAE, get_vae_config
from sora_jax.models.vae.losses import (
    PatchDiscriminator3D,
    hinge_discriminator_loss,
    hinge_generator_loss,
    ssim,
    vae_loss,
)
from sora_jax.train import files
from sora_jax.train.batch import PIXEL_SCALE


class VAEWithDiscriminator(nnx.Module):
    """The VAE being trained and, when the GAN is on, its patch discriminator."""

    def __init__(self, vae_config, gan_widths, *, rngs: nnx.Rngs):
        self.vae = VAE(vae_config, rngs=rngs)
        self.discriminator = PatchDiscriminator3D(widths=tuple(gan_widths), rngs=rngs) if gan_widths else None


def psnr(video: jax.Array, reconstruction: jax.Array) -> jax.Array:
    """PSNR in dB of videos in [-1, 1] (data range 2), averaged over the batch."""
    mse = jnp.mean(jnp.square(jnp.clip(reconstruction, -1, 1) - video), axis=tuple(range(1, video.ndim)))  # (B,)
    return jnp.mean(10.0 * jnp.log10(4.0 / jnp.maximum(mse, 1e-10)))


class VAETask:
    """Trains `VAEWithDiscriminator` on fixed-shape video and image crops."""

    def __init__(self, c: ml_collections.ConfigDict):
        self.c = c
        self.vae_config = get_vae_config(c.model.preset, **dict(c.model.overrides))

    def make_model(self) -> VAEWithDiscriminator:
        gan = tuple(self.c.loss.gan_widths) if self.c.loss.gan_weight > 0 else ()
        return VAEWithDiscriminator(self.vae_config, gan, rngs=nnx.Rngs(self.c.seed))

    def build_input(self, split: str, rows: int, shard: int, total_shards: int):
        d = self.c.data
        config = ClipBatchConfig(sources=tuple(d.sources), frames=d.frames, size=d.size, batch_size=rows, seed=d.seed,
                                 worker_count=d.get("worker_count", 0) if split == "train" else 0)
        batches = build_clip_batches(config, split, shard, total_shards)
        if split != "validation" or d.sources == ["photos"]:
            return batches
        # Held-out photographs ride along every validation batch: PSNR/SSIM on natural images too.
        photos = next(iter(build_clip_batches(dataclasses.replace(config, sources=("photos",)), split, shard, total_shards)))
        return batches.map(lambda batch: batch | {"photo_video": photos["video"], "photo_image": photos["image"]})

    def host_batch(self, batch: dict) -> dict:
        return {k: v.astype(np.float32) / PIXEL_SCALE - 1.0 for k, v in batch.items()}

    def batch_stats(self, batch: dict) -> tuple[int, int, float]:
        pixels = sum(v.shape[0] * v.shape[1] * v.shape[2] * v.shape[3] for v in batch.values())
        return pixels, pixels, 0.0  # "tokens" are pixels here; conv FLOPs are not counted

    def loss_fn(self, model: VAEWithDiscriminator, batch: dict, rng: jax.Array, step: jax.Array):
        l = self.c.loss
        total, metrics = 0.0, {}
        for name, rng_part in zip(("video", "image"), jax.random.split(rng, 2)):
            target = batch[name]
            reconstruction, posterior = model.vae(target, rng=rng_part)
            loss, terms = vae_loss(target, reconstruction, posterior, l1=l.l1, l2=l.l2, ssim_weight=l.ssim, kl=l.kl)
            if model.discriminator is not None:
                loss = loss + self._gan_terms(model, target, reconstruction, step, metrics, name)
            total = total + loss
            metrics |= {f"{name}_{k}": v for k, v in terms.items()} | {f"{name}_psnr": psnr(target, reconstruction)}
        return total, metrics

    def _gan_terms(self, model, real, fake, step, metrics, name):
        """Hinge GAN terms, switched on at `gan_start_step`; each reaches only its own parameters."""
        on = (step >= self.c.loss.gan_start_step).astype(jnp.float32)
        graphdef, params = nnx.split(model.discriminator)
        frozen = nnx.merge(graphdef, jax.lax.stop_gradient(params))
        generator = hinge_generator_loss(frozen(fake))
        discriminator = hinge_discriminator_loss(model.discriminator(real), model.discriminator(jax.lax.stop_gradient(fake)))
        metrics[f"{name}_gan_g"], metrics[f"{name}_gan_d"] = generator, discriminator
        return on * (self.c.loss.gan_weight * generator + discriminator)

    def validation_fn(self, model, batch, rng) -> dict:
        """PSNR and SSIM of mode reconstructions of held-out crops."""
        out = {}
        for name in ("video", "image", "photo_video", "photo_image"):
            if name not in batch:
                continue
            reconstruction, _ = model.vae(batch[name])
            out[f"val_{name}_psnr"] = psnr(batch[name], reconstruction)
            out[f"val_{name}_ssim"] = jnp.mean(ssim(batch[name], jnp.clip(reconstruction, -1, 1)))
        return out

    def write_samples(self, model, workdir: str, step: int) -> list[str]:
        """GIFs of a held-out batch of video crops: original above, reconstruction below."""
        from data_pipelines.preview import captioned_gif  # noqa: PLC0415

        batch = self.host_batch(next(iter(self.build_input("validation", 4, 0, 1))))
        reconstruction, _ = jax.jit(lambda v: model.vae(v))(batch["video"])
        pairs = np.concatenate([batch["video"], np.clip(np.asarray(reconstruction), -1, 1)], axis=2)  # (B, T, 2S, S, 3)
        out_dir = files.join(workdir, "samples", f"step_{step:07d}")
        videos = ((pairs + 1.0) * PIXEL_SCALE).astype(np.uint8)
        with files.local_dir(out_dir) as local:
            for i, v in enumerate(videos):
                captioned_gif({"video": v, "caption": "top: held-out clip, bottom: VAE reconstruction"},
                              os.path.join(local, f"reconstruction_{i}.gif"))
        return [files.join(out_dir, f"reconstruction_{i}.gif") for i in range(len(videos))]
