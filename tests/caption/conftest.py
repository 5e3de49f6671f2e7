"""Shared caption-stage fixtures: one captioner overfitted by the real trainer (`sora-jax train` in a
subprocess on one CPU device, as tests/train does) on the first 4 clips of the Shapes World tiny
mixture, and the small dataset it trained on (4 train + 32 validation clips)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OVERFIT_STEPS = 100  # at a constant 3e-3 the 4 captions are memorised (loss < 0.1) by about step 60
OVERFIT = [
    "--config.data.sources=['shapes_world_n:tiny:4']", "--config.data.seq_len=128",
    "--config.data.max_tokens_per_clip=128", "--config.data.max_segments_per_row=2", "--config.data.packing_bins=2",
    "--config.data.max_text_tokens=512", "--config.data.text_len=1024", "--config.data.read_threads=1",
    "--config.model.dim=64", "--config.model.heads=4", "--config.model.mlp_dim=128", "--config.model.encoder_depth=1",
    "--config.model.decoder_depth=1", "--config.model.max_caption_len=64", "--config.global_batch_size=2",
    f"--config.steps={OVERFIT_STEPS}", "--config.log_every=1", "--config.checkpoint_every=0",
    "--config.eval_every=0", "--config.sample_every=0", "--config.progress=False", "--config.async_checkpoints=False",
    "--config.optim.learning_rate=0.003", "--config.optim.warmup_steps=10", "--config.optim.schedule='constant'", "--config.optim.weight_decay=0.0",
]


@pytest.fixture(scope="session")
def caption_data_root(tmp_path_factory) -> str:
    """A `SORA_JAX_DATA` folder for this session's caption datasets."""
    return str(tmp_path_factory.mktemp("caption_data"))


@pytest.fixture(scope="session")
def overfit_workdir(tmp_path_factory, caption_data_root) -> str:
    """Workdir of a captioner trained until it has memorised 4 clips' detailed captions."""
    workdir = tmp_path_factory.mktemp("captioner_overfit")
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
               SORA_JAX_DATA=caption_data_root, PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "sora_jax.cli", "train", "--config", "experiments/caption.py:tiny",
               "--workdir", str(workdir), *OVERFIT]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"captioner training failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return str(workdir)


@pytest.fixture(scope="session")
def overfit_dataset(overfit_workdir, caption_data_root) -> str:
    """The versioned directory of the 4-clip dataset the overfit captioner trained on (built by its run)."""
    path = os.path.join(caption_data_root, "data", "shapes_world", "tiny_4", "1.0.0")
    assert os.path.exists(os.path.join(path, "dataset_info.json")), os.listdir(caption_data_root)
    return path
