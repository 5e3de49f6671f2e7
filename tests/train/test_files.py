"""Workdir file helpers: local paths behave as before; remote-looking paths take the staging route."""
import os

from sora_jax.train import files
from sora_jax.train.metrics import MetricsWriter, drop_after, read_metrics


def test_local_paths_and_metrics_resume(tmp_path):
    workdir = str(tmp_path / "run")
    assert not files.is_remote(workdir) and files.is_remote("gs://bucket/run")
    assert files.absolute("gs://bucket/run") == "gs://bucket/run"
    assert files.join("gs://bucket/run", "checkpoints") == "gs://bucket/run/checkpoints"
    writer = MetricsWriter(workdir, total_steps=10, start_step=0, progress=False)
    for step in range(6):
        writer.write(step, {"loss": float(step)})
    writer.close()
    drop_after(os.path.join(workdir, "metrics.jsonl"), 4)
    again = MetricsWriter(workdir, total_steps=10, start_step=4, progress=False)
    again.write(4, {"loss": 40.0})
    again.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))] == \
        [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def test_local_dir_stages_and_copies(tmp_path, monkeypatch):
    target = str(tmp_path / "samples")
    monkeypatch.setattr(files, "is_remote", lambda path: str(path).startswith(str(target)))  # pretend remote
    with files.local_dir(target) as local:
        assert local != target
        with open(os.path.join(local, "a.gif"), "wb") as f:
            f.write(b"GIF89a")
    assert open(os.path.join(target, "a.gif"), "rb").read() == b"GIF89a"
    assert not os.path.exists(local)
