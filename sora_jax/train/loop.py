"""The one training loop, for every stage: mesh, input, state, restore, then steps with logging,
checkpoints, validation and samples. Stage-specific parts come from the task (`tasks.py`)."""
from __future__ import annotations

import os
import signal
import time

import jax
import ml_collections
import numpy as np
from flax import nnx

from sora_jax import parallel
from sora_jax.train.batch import to_global
from sora_jax.train.checkpoint import Checkpointer, abstract_like, key_names
from sora_jax.train.data import ShardedInput, local_shards, total_shards
from sora_jax.train import files
from sora_jax.train.metrics import MetricsWriter
from sora_jax.train.optimizer import make_optimizer
from sora_jax.train.step import batch_shardings, create_train_state, make_train_step
from sora_jax.train.tasks import make_task

PEAK_TFLOPS = {"gpu": 989.0, "tpu": 459.0}  # H100 SXM / TPU v5p bf16 dense; CPU has no fixed figure


class TrainingDiverged(RuntimeError):
    """Raised when `max_bad_steps` steps in a row had a non-finite loss or gradient."""


class _StopSignal:
    """Turns SIGTERM (preemption) into a flag the loop checks after each step."""

    def __init__(self):
        self.received = False
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        del signum, frame
        self.received = True

    def restore(self):
        signal.signal(signal.SIGTERM, self._previous)


def train(c: ml_collections.ConfigDict, workdir: str, log=print) -> dict:
    """Trains `c` in `workdir`, resuming from its latest checkpoint; returns a summary dict."""
    primary = jax.process_index() == 0
    files.makedirs(workdir)
    if primary:
        files.write_text(files.join(workdir, "config.json"), c.to_json_best_effort(indent=2))
    mesh, rules = parallel.make_mesh(dict(c.mesh)), parallel.get_rules(c.rules)
    task = make_task(c)
    tx, schedule = make_optimizer(c.optim, c.steps)
    graphdef, state, shardings = create_train_state(task.make_model, tx, mesh, rules, ema=c.optim.ema_decay > 0)
    train_input = _make_input(c, task, "train", mesh, rules)
    checkpoints = Checkpointer(files.join(workdir, "checkpoints"), c.keep_checkpoints, c.async_checkpoints)
    restored = checkpoints.restore(abstract_like(state, shardings), train_input, on_fallback=log)
    if restored is not None:
        state = restored[1]
        log(f"resumed from step {restored[0]} in {checkpoints.directory}")
    elif c.get("init_from"):
        state = _initialise_from(c, state, shardings, log)
    start = int(state.step)
    host = task.host_batch(next(train_input))
    batch_sh = batch_shardings(host, mesh, rules, c.global_batch_size)
    step_fn = make_train_step(graphdef, task.loss_fn, tx, shardings, batch_sh, mesh, rules, c.optim.ema_decay)
    extras = _Extras(c, task, graphdef, workdir, mesh, rules, primary)
    writer = MetricsWriter(workdir, c.steps, start, enabled=primary, progress=c.progress)
    stop = _StopSignal()
    key = jax.random.key(c.seed)
    window = _Window(PEAK_TFLOPS.get(jax.default_backend(), c.peak_tflops))
    step = start
    try:
        while step < c.steps:
            state, metrics = step_fn(state, to_global(host, batch_sh), jax.random.fold_in(key, step))
            window.add(host, task)
            step += 1
            if c.log_every and (step % c.log_every == 0 or step == c.steps):
                _log_step(writer, state, metrics, window, schedule, step, c)
            writer.advance(1)
            preempted = stop.received or checkpoints.reached_preemption(step)
            if preempted or step == c.steps or (c.checkpoint_every and step % c.checkpoint_every == 0):
                checkpoints.save(step, state, train_input, force=True)
            extras.maybe_run(step, state, writer)
            if preempted:
                log(f"preemption signal: saved step {step} and stopping")
                break
            if step < c.steps:
                host = task.host_batch(next(train_input))
    finally:
        checkpoints.close()
        writer.close()
        stop.restore()
    return {"step": step, "workdir": workdir, "skipped_steps": int(state.skipped)}


def _initialise_from(c, state, shardings, log):
    """A new stage starting from an earlier stage's weights: its parameters (and EMA), fresh optimizer.

    Parameters the earlier stage lacks (a head or input embedding the new stage adds) are a
    ValueError unless `c.init_new_params`, which keeps them as initialised; an EMA the earlier
    stage did not keep starts from its parameters.
    """
    source = Checkpointer(files.join(c.init_from, "checkpoints"), keep=1, async_save=False)
    try:
        step, state, new = source.restore_weights(state, shardings)
    finally:
        source.close()
    new_params = [name for name in new if name.startswith("params/")]
    if new_params and not c.get("init_new_params", False):
        raise ValueError(f"init_from {c.init_from} (step {step}) lacks {len(new_params)} parameters of this model "
                         f"({', '.join(new_params[:4])}{', ...' if len(new_params) > 4 else ''}); "
                         "set init_new_params=True to start them from their initialisation")
    if state.ema is not None and any(name.startswith("ema/") for name in new):  # an EMA the source did not keep
        fresh, paths = set(new), [key_names(p) for p, _ in jax.tree_util.tree_flatten_with_path(state.params)[0]]
        ema = [param if "/".join(("ema", *path)) in fresh and "/".join(("params", *path)) not in fresh else average
               for path, param, average in zip(paths, jax.tree.leaves(state.params), jax.tree.leaves(state.ema))]
        state = state.replace(ema=jax.tree.unflatten(jax.tree.structure(state.ema), ema))
    log(f"initialised parameters from {c.init_from} (step {step})"
        + (f"; {len(new_params)} new parameters keep their initialisation" if new_params else ""))
    return state


def _make_input(c, task, split: str, mesh, rules) -> ShardedInput:
    """This process's share of the global batch: the data shards its devices hold rows of."""
    shards = total_shards(c.data_shards, c.global_batch_size)
    rows = parallel.batch_sharding(mesh, rules, 1, (c.global_batch_size,))
    return ShardedInput(task.build_input, split, c.global_batch_size, local_shards(rows, c.global_batch_size, shards),
                        shards)


class _Window:
    """Throughput, fill and FLOPs since the last log line."""

    def __init__(self, peak_tflops):
        self.peak = peak_tflops
        self.reset()

    def reset(self):
        self.start, self.real, self.slots, self.flops = time.perf_counter(), 0, 0, 0.0

    def add(self, host: dict, task) -> None:
        real, slots, flops = task.batch_stats(host)
        self.real, self.slots, self.flops = self.real + real, self.slots + slots, self.flops + flops

    def summary(self) -> dict:
        seconds = max(time.perf_counter() - self.start, 1e-9)
        tflops = self.flops / seconds / 1e12
        out = {"tokens_per_s": self.real * jax.process_count() / seconds, "fill": self.real / max(1, self.slots),
               "model_tflops": tflops, "mfu": tflops / (self.peak * jax.device_count()) if self.peak else None}
        self.reset()
        return out


def _log_step(writer, state, metrics, window, schedule, step, c) -> None:
    """Writes the metrics of the step just done, then enforces the NaN guard."""
    metrics = jax.device_get(metrics)
    record = {"loss": float(metrics["loss"]), "grad_norm": float(metrics["grad_norm"]),
              "lr": float(schedule(step - 1)), "skipped_steps": int(state.skipped)}
    record.update(window.summary())
    record.update({k: float(v) for k, v in metrics.items() if k not in record and np.ndim(v) == 0 and k != "finite"})
    writer.write(step - 1, record)
    writer.advance(0, {"loss": record["loss"]})
    if int(state.max_bad_run) >= c.max_bad_steps:
        raise TrainingDiverged(
            f"{int(state.max_bad_run)} steps in a row had a non-finite loss or gradient (max_bad_steps="
            f"{c.max_bad_steps}) by step {step}; lower the learning rate or check the data")


class _Extras:
    """Validation flow loss at fixed times and sample videos, every `eval_every`/`sample_every` steps."""

    def __init__(self, c, task, graphdef, workdir, mesh, rules, primary):
        self.c, self.task, self.graphdef, self.workdir, self.primary = c, task, graphdef, workdir, primary
        self.mesh, self.rules = mesh, rules
        self._validation = None

    def maybe_run(self, step: int, state, writer) -> None:
        c = self.c
        if c.eval_every and (step % c.eval_every == 0 or step == c.steps):
            writer.write(step - 1, {k: float(v) for k, v in self._validate(state).items()})
        if c.sample_every and self.primary and (step % c.sample_every == 0 or step == c.steps):
            params = state.ema if state.ema is not None else state.params
            self.task.write_samples(nnx.merge(self.graphdef, params), self.workdir, step)

    def _validate(self, state):
        if self._validation is None:
            held_out = _make_input(self.c, self.task, "validation", self.mesh, self.rules)
            host = self.task.host_batch(next(held_out))
            sh = batch_shardings(host, self.mesh, self.rules, self.c.global_batch_size)
            self._validation = (to_global(host, sh), jax.jit(
                lambda params, batch: self.task.validation_fn(nnx.merge(self.graphdef, params), batch, jax.random.key(0))))
        batch, fn = self._validation
        return jax.device_get(fn(state.params, batch))

