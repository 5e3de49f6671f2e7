"""The trainer end to end in subprocesses: exact resume after SIGKILL, SIGTERM saves, corrupt-latest
fallback, NaN guard, multi-process == single-process, config errors, and metrics.jsonl contents."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sora_jax.train.config import load_config
from sora_jax.train.metrics import read_metrics

CONFIG = "experiments/pretrain.py:tiny"
TINY = [
    "--config.model.overrides={'dim': 32, 'depth': 1, 'heads': 2, 'mlp_dim': 64, 'text_dim': 32}",
    "--config.data.seq_len=256", "--config.data.max_tokens_per_clip=256", "--config.data.packing_bins=4",
    "--config.data.text_len=256", "--config.data.max_text_tokens=64", "--config.text_max_len=64",
    "--config.data.max_frames=5", "--config.global_batch_size=2", "--config.progress=False", "--config.log_every=1",
    "--config.eval_every=0", "--config.sample_every=0", "--config.optim.warmup_steps=2", "--config.steps=30",
    "--config.checkpoint_every=4",
]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    environment = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
                       SORA_JAX_DATA=str(tmp_path_factory.mktemp("data_cache")), PYTHONUNBUFFERED="1")
    return environment


def command(workdir, *extra, config=CONFIG):
    return [sys.executable, "-m", "sora_jax.cli", "train", "--config", config, "--workdir", str(workdir), *TINY, *extra]


def run(workdir, env, *extra, check=True):
    result = subprocess.run(command(workdir, *extra), env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if check and result.returncode != 0:
        raise AssertionError(f"train failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def losses(workdir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "loss" in r}


def wait_for_step(workdir, process, step, checkpoint=None, timeout=300):
    """Waits until `step` is logged (and checkpoint `checkpoint` is committed, if given)."""
    path, start = os.path.join(workdir, "metrics.jsonl"), time.time()
    committed = os.path.join(workdir, "checkpoints", str(checkpoint), "state", "commit_success.txt")
    while time.time() - start < timeout:
        logged = os.path.exists(path) and max(losses(workdir), default=-1) >= step
        if logged and (checkpoint is None or os.path.exists(committed)):
            return
        if process.poll() is not None:
            raise AssertionError(f"process ended early: {process.stderr.read()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError("timed out waiting for training progress")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, env):
    workdir = tmp_path_factory.mktemp("uninterrupted")
    run(workdir, env)
    return workdir


def test_metrics_jsonl_contents(uninterrupted):
    records = read_metrics(os.path.join(uninterrupted, "metrics.jsonl"))
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == list(range(30))
    for r in records:
        assert {"loss", "grad_norm", "lr", "tokens_per_s", "fill", "mfu", "skipped_steps"} <= set(r)
        assert np.isfinite(r["loss"]) and r["grad_norm"] > 0 and 0 < r["fill"] <= 1 and r["tokens_per_s"] > 0
    lrs = [r["lr"] for r in records]
    assert lrs[0] < lrs[1] and lrs[2] > lrs[-1]  # warmup, then cosine decay
    assert sorted(os.listdir(os.path.join(uninterrupted, "checkpoints"))) == ["24", "28", "30"]
    assert os.listdir(os.path.join(uninterrupted, "tensorboard"))


def test_sigkill_and_restart_gives_the_same_losses(tmp_path, env, uninterrupted):
    process = subprocess.Popen(command(tmp_path), env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    wait_for_step(tmp_path, process, 6, checkpoint=4)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert max(losses(tmp_path)) < 29  # it really was interrupted
    result = run(tmp_path, env)
    assert "resumed from step" in result.stdout + result.stderr
    assert losses(tmp_path) == losses(uninterrupted)  # every step, bit for bit
    resumed_at = int((result.stdout + result.stderr).split("resumed from step")[-1].split()[0])
    assert resumed_at in tensorboard_purge_steps(tmp_path)  # TensorBoard drops the steps logged twice


def tensorboard_purge_steps(workdir) -> list[int]:
    """Steps of the SessionLog.START events (purge markers) in a workdir's TensorBoard files."""
    import struct

    from tensorboardX.proto import event_pb2

    steps = []
    directory = os.path.join(workdir, "tensorboard")
    for name in os.listdir(directory):
        with open(os.path.join(directory, name), "rb") as f:
            data = f.read()
        offset = 0
        while offset < len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4  # length, its crc, the record, its crc
            if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
                steps.append(event.step)
    return steps


def test_sigterm_saves_and_exits_cleanly(tmp_path, env):
    process = subprocess.Popen(command(tmp_path, "--config.checkpoint_every=0", "--config.steps=500"), env=env, cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_step(tmp_path, process, 2)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    saved = json.loads(out.strip().splitlines()[-1])["step"]
    assert 3 <= saved < 500 and "preemption signal" in out + err
    assert os.listdir(os.path.join(tmp_path, "checkpoints")) == [str(saved)]


def test_corrupt_latest_checkpoint_falls_back_to_the_previous(tmp_path, env, uninterrupted):
    workdir = tmp_path / "run"
    shutil.copytree(uninterrupted, workdir)
    state_dir = workdir / "checkpoints" / "30" / "state"
    for name in os.listdir(state_dir):  # damage every array file of the latest checkpoint
        path = state_dir / name
        if path.is_dir():
            shutil.rmtree(path)
    result = run(workdir, env)
    assert "checkpoint at step 30" in result.stdout and "unreadable" in result.stdout
    assert "resumed from step 28" in result.stdout
    assert losses(workdir) == losses(uninterrupted)


def test_nan_guard_stops_after_k_bad_steps(tmp_path, env):
    result = run(tmp_path, env, "--config.optim.learning_rate=1e30", "--config.optim.clip_norm=0.0",
                 "--config.optim.warmup_steps=0", "--config.max_bad_steps=3", check=False)
    assert result.returncode == 3, result.stderr[-2000:]
    assert "3 steps in a row had a non-finite loss or gradient" in result.stderr
    records = [r for r in read_metrics(os.path.join(tmp_path, "metrics.jsonl")) if "loss" in r]
    assert records[-1]["skipped_steps"] >= 3 and not np.isfinite(records[-1]["loss"])


def test_two_processes_match_one(tmp_path, env):
    common = ["--config.data_shards=2", "--config.global_batch_size=4", "--config.steps=6", "--config.checkpoint_every=0"]
    single = run(tmp_path / "single", dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=4"), *common)
    assert single.returncode == 0
    port = 20000 + os.getpid() % 20000
    multi_env = dict(env, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    procs = [subprocess.Popen(command(tmp_path / "multi", *common, "--coordinator", f"127.0.0.1:{port}",
                                      "--num-processes", "2", "--process-id", str(i)),
                              env=multi_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    a, b = losses(tmp_path / "single"), losses(tmp_path / "multi")
    assert sorted(a) == sorted(b) == list(range(6))
    for step in a:
        assert abs(a[step] - b[step]) <= 1e-6, (step, a[step], b[step])


@pytest.mark.parametrize("override,match", [
    ("optim.learning_rate=-1.0", "optim.learning_rate must be positive"),
    ("steps=0", "steps must be at least 1"),
    ("data.mode='pixels'", "mode must be one of"),
    ("optim.no_such_field=1", "no field 'no_such_field'"),
    ("rules='zero'", "unknown sharding rules"),
    ("data.max_tokens_per_clip=99999", "max_tokens_per_clip"),
])
def test_bad_config_values_fail_before_building(override, match):
    with pytest.raises(ValueError, match=match):
        load_config(os.path.join(ROOT, "experiments", "pretrain.py") + ":tiny", [override])


def test_bad_vae_data_workers_fail_before_building():
    with pytest.raises(ValueError, match="data.worker_count must be >= 0"):
        load_config(os.path.join(ROOT, "experiments", "vae.py") + ":tiny", ["data.worker_count=-2"])


def test_finetune_starts_from_the_pretrained_parameters(tmp_path, env, uninterrupted):
    finetune = ["--config.data.sources=['shapes_world:tiny']", "--config.data.seq_len=256",
                "--config.data.max_tokens_per_clip=256", "--config.data.max_frames=5", "--config.steps=2",
                "--config.data.known_first_frame_prob=0.5", "--config.sample_shape=(5, 16, 16)"]
    base = [sys.executable, "-m", "sora_jax.cli", "train", "--config", "experiments/finetune.py:tiny", *TINY, *finetune]
    started = subprocess.run([*base, "--workdir", str(tmp_path / "ft"), f"--config.init_from={uninterrupted}"],
                             env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert started.returncode == 0, started.stderr[-2000:]
    assert f"initialised parameters from {uninterrupted} (step 30)" in started.stdout
    import jax  # noqa: PLC0415

    from sora_jax.train.checkpoint import read_state  # noqa: PLC0415

    before = read_state(os.path.join(uninterrupted, "checkpoints"))
    after = read_state(str(tmp_path / "ft" / "checkpoints"))
    assert int(after["step"]) == 2 and int(before["step"]) == 30
    earlier = read_state(os.path.join(uninterrupted, "checkpoints"), step=24)

    def distance(x, y):
        return max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(jax.tree.leaves(x), jax.tree.leaves(y)))

    # Two warmup steps of finetuning (lr 0, then 1.5e-4) move the pretrained weights less than pretraining did
    # between steps 24 and 30; weights that did not come from the pretrain run would not be that close.
    moved, pretrain_moved = distance(after["params"], before["params"]), distance(before["params"], earlier["params"])
    assert moved < 0.5 * pretrain_moved, (moved, pretrain_moved)  # measured: 1.5e-4 vs 9.1e-4


def test_text_max_len_bounds_only_the_trainable_text_encoder():
    # text_max_len sizes the tiny encoder's position table; a frozen encoder's length is data.max_text_tokens.
    frozen = load_config(os.path.join(ROOT, "experiments", "pretrain.py") + ":tiny_latent_minilm",
                         ["data.sources=['/data/latents/1.0.0']", "text_max_len=8"])
    assert frozen.data.max_text_tokens == 256 > frozen.text_max_len
    with pytest.raises(ValueError, match="max_text_tokens must be <= text_max_len"):
        load_config(os.path.join(ROOT, "experiments", "pretrain.py") + ":tiny", ["text_max_len=8"])
