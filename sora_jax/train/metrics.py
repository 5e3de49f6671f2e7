"""Training outputs: `metrics.jsonl`, TensorBoard event files, and a console progress bar with ETA."""
from __future__ import annotations

import json

from tqdm.auto import tqdm

from sora_jax.train import files


class MetricsWriter:
    """Writes one JSON object per logged step and the same scalars to TensorBoard (primary host only)."""

    def __init__(self, workdir: str, total_steps: int, start_step: int, enabled: bool = True, progress: bool = True):
        self.enabled = enabled
        self.path = files.join(workdir, "metrics.jsonl")
        self._tensorboard = None
        self._bar = None
        if not enabled:
            return
        files.makedirs(workdir)
        drop_after(self.path, start_step)
        self._lines = [json.dumps(r) for r in read_metrics(self.path)] if files.exists(self.path) else []
        from tensorboardX import SummaryWriter

        # purge_step: TensorBoard drops events at or after it from earlier files, so steps logged by a
        # run that died after its last checkpoint do not show twice after the resume.
        self._tensorboard = SummaryWriter(files.join(workdir, "tensorboard"), purge_step=start_step or None)
        if progress:
            self._bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)

    def write(self, step: int, metrics: dict) -> None:
        """Appends `{"step": step, **metrics}` and mirrors numbers to TensorBoard."""
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _plain(v) for k, v in metrics.items()}}
        self._lines.append(json.dumps(record))
        # Object stores have no append: the whole file is rewritten (it stays small: one line per log).
        if files.is_remote(self.path):
            files.write_text(self.path, "\n".join(self._lines) + "\n")
        else:
            _append(self.path, self._lines[-1])
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self._tensorboard.add_scalar(key, value, step)

    def advance(self, steps: int, postfix: dict | None = None) -> None:
        if self._bar is not None:
            self._bar.update(steps)
            if postfix:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in postfix.items()}, refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def _append(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")


def drop_after(path: str, step: int) -> None:
    """Removes records of steps >= `step` (written by a run that died before its next checkpoint)."""
    if not files.exists(path):
        return
    kept = [json.dumps(r) + "\n" for r in read_metrics(path) if r.get("step", -1) < step]
    files.write_text(path, "".join(kept))


def read_metrics(path: str) -> list[dict]:
    """All records of a `metrics.jsonl`."""
    return [json.loads(line) for line in files.read_text(path).splitlines() if line.strip()]


def _plain(value):
    try:
        value = value.item()
    except AttributeError:
        pass
    return round(value, 7) if isinstance(value, float) else value
