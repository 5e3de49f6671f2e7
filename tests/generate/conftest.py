"""Fixtures of the generation tests: one tiny pixel-mode DiT, trained once per session.

The model is `experiments/pretrain.py:tiny` shrunk (width 32, one block, 256-token rows, clips of
up to 9 frames) and trained 20 steps in a subprocess on one CPU device (about 20 s). Its samples
are not meant to look like anything: the assertions that use it are the ones the known-frame
mechanism makes exact (given frames kept, shapes, determinism), not quality.
"""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY_DIT = [
    "--config.model.overrides={'dim': 32, 'depth': 1, 'heads': 2, 'mlp_dim': 64, 'text_dim': 32}",
    "--config.data.seq_len=256", "--config.data.max_tokens_per_clip=256", "--config.data.packing_bins=4",
    "--config.data.text_len=256", "--config.data.max_text_tokens=64", "--config.text_max_len=64",
    "--config.data.max_frames=9", "--config.global_batch_size=2", "--config.progress=False",
    "--config.log_every=5", "--config.eval_every=0", "--config.sample_every=0", "--config.optim.warmup_steps=2",
    "--config.steps=20", "--config.checkpoint_every=0", "--config.data.known_first_frame_prob=0.5",
]


def train_tiny_dit(workdir: str) -> str:
    """Trains the tiny DiT into `workdir` in a one-device subprocess; returns the workdir."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    command = [sys.executable, "-m", "sora_jax.cli", "train", "--config", "experiments/pretrain.py:tiny",
               "--workdir", workdir, *TINY_DIT]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"training the tiny DiT failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return workdir


@pytest.fixture(scope="session")
def tiny_dit_workdir(tmp_path_factory) -> str:
    return train_tiny_dit(str(tmp_path_factory.mktemp("tiny_dit")))


@pytest.fixture(scope="session")
def generator(tiny_dit_workdir):
    from sora_jax.generate import Generator

    return Generator.from_workdir(tiny_dit_workdir)
