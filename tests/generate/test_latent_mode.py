"""Latent mode end to end (slow: two short training runs): a VAE trained a few steps, a latent
dataset it encoded with its `latent_info.json`, a latent-mode DiT trained a few steps on it, then
`Generator.from_workdir` -> image-to-video and a long clip decoded chunk by chunk."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines.latents import write_latents
from data_pipelines.shapes_world import generate_clip
from tests.generate.conftest import ROOT, TINY_DIT

pytestmark = pytest.mark.slow


def train(config: str, workdir: str, overrides: list[str]) -> None:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    command = [sys.executable, "-m", "sora_jax.cli", "train", "--config", config, "--workdir", workdir, *overrides]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture(scope="module")
def latent_run(tmp_path_factory):
    """(DiT workdir, the VAE codec with identity normalisation) of a latent-mode run."""
    from sora_jax.generate.codec import LatentCodec
    from sora_jax.train.restore import load_trained

    root = tmp_path_factory.mktemp("latent_mode")
    vae_dir, data_dir, dit_dir = str(root / "vae"), str(root / "latents"), str(root / "dit")
    train("experiments/vae.py:tiny", vae_dir, [
        "--config.steps=3", "--config.global_batch_size=1", "--config.progress=False", "--config.log_every=1",
        "--config.eval_every=0", "--config.sample_every=0", "--config.checkpoint_every=3",
        "--config.optim.warmup_steps=1"])
    raw = LatentCodec(load_trained(vae_dir).model.vae, np.zeros(16), np.ones(16))
    latents = [raw.encode(generate_clip(seed, 9, 32, 32)["video"]) for seed in range(8)]  # (3, 4, 4, 16) each
    stacked = np.stack(latents)
    shift, scale = stacked.mean(axis=(0, 1, 2, 3)), stacked.std(axis=(0, 1, 2, 3)) + 1e-6

    def records(indices):
        for i in indices:
            yield f"clip{i}", {"latent": (latents[i] - shift) / scale, "caption_short": "shapes",
                               "caption": "coloured shapes moving", "meta": "{}"}

    dataset = write_latents(data_dir, {"train": records(range(6)), "validation": records(range(6, 8))})
    with open(os.path.join(dataset, "latent_info.json"), "w") as f:
        json.dump({"vae_workdir": vae_dir, "vae_step": 3, "shift": shift.tolist(), "scale": scale.tolist()}, f)
    train("experiments/pretrain.py:tiny", dit_dir, TINY_DIT + [
        "--config.data.mode=latent", "--config.data.patch=(1, 2, 2)", "--config.model.in_channels=16",
        f"--config.data.sources=['{dataset}']", "--config.steps=3", "--config.data.known_first_frame_prob=0.0"])
    return dit_dir, LatentCodec(load_trained(vae_dir).model.vae, shift, scale)


def test_latent_image_to_video_keeps_the_first_frame_within_the_vae_round_trip(latent_run):
    from sora_jax.generate import Generator, image_to_video

    workdir, codec = latent_run
    generator = Generator.from_workdir(workdir)
    assert generator.codec.mode == "latent" and generator.patch == (1, 2, 2)
    image = generate_clip(40, 1, 32, 32)["video"][0]
    video = generator.generate("shapes", 9, 32, 32, steps=2, guidance=1.0, known=image_to_video(image, 9))
    assert video.shape == (9, 32, 32, 3)
    round_trip = codec.decode(codec.encode(image[None]))[0]  # what the VAE can give back of the image
    # Causal VAE: output frame 0 comes from latent frame 0 alone, which is the encoded image, held.
    assert np.abs(video[0].astype(int) - round_trip).max() <= 1
    with pytest.raises(ValueError, match="T=8 is not 1\\+4k; nearest valid: 5 or 9"):
        generator.generate("shapes", 8, 32, 32, steps=2)
    long = generator.generate("shapes", 41, 32, 32, steps=2, guidance=1.0, window=3, overlap=1)
    assert long.shape == (41, 32, 32, 3) and generator.last_timings["windows"] == 5  # 11 latent frames
