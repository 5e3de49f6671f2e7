"""Does the input pipeline slow training? Step time fed by the real Grain pipeline vs synthetic batches.

    python -m benchmarks.trainer [--config experiments/pretrain.py:tiny] [--steps 30] [--config.a.b=v ...]

Both runs use the trainer's own pieces (task, sharded state, jitted step, per-process input). The
real run pulls each batch from the pipeline while the previous step computes (JAX dispatch is
asynchronous); the synthetic run feeds one batch of the same shapes again and again. Target: the
real pipeline costs at most 5% (`slowdown <= 0.05`). On a CPU-only machine both compete for the
same cores, so the figure is an upper bound of what an accelerator host sees.
"""
from __future__ import annotations

import argparse
import json
import time

import jax

from benchmarks.common import hardware
from sora_jax import parallel
from sora_jax.train.batch import to_global
from sora_jax.train.config import load_config
from sora_jax.train.loop import _make_input
from sora_jax.train.optimizer import make_optimizer
from sora_jax.train.step import batch_shardings, create_train_state, make_train_step
from sora_jax.train.tasks import make_task


def timed_steps(step_fn, state, next_batch, steps: int) -> tuple[float, object]:
    """Seconds for `steps` steps after 3 warm-up steps; `next_batch()` supplies each global batch."""
    for i in range(3):
        state, metrics = step_fn(state, next_batch(), jax.random.key(i))
    jax.block_until_ready(metrics["loss"])
    start = time.perf_counter()
    for i in range(steps):
        state, metrics = step_fn(state, next_batch(), jax.random.key(i))
    jax.block_until_ready(metrics["loss"])
    return time.perf_counter() - start, state


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="experiments/pretrain.py:tiny")
    parser.add_argument("--steps", type=int, default=30)
    args, overrides = parser.parse_known_args(argv)
    c = load_config(args.config, overrides)
    mesh, rules = parallel.make_mesh(dict(c.mesh)), parallel.get_rules(c.rules)
    task = make_task(c)
    tx, _ = make_optimizer(c.optim, c.steps)
    graphdef, state, shardings = create_train_state(task.make_model, tx, mesh, rules, ema=c.optim.ema_decay > 0)
    train_input = _make_input(c, task, "train", mesh, rules)
    first = task.host_batch(next(train_input))
    batch_sh = batch_shardings(first, mesh, rules, c.global_batch_size)
    step_fn = make_train_step(graphdef, task.loss_fn, tx, shardings, batch_sh, mesh, rules, c.optim.ema_decay)
    fixed = to_global(first, batch_sh)
    synthetic_s, state = timed_steps(step_fn, state, lambda: fixed, args.steps)
    real_s, state = timed_steps(step_fn, state, lambda: to_global(task.host_batch(next(train_input)), batch_sh),
                                args.steps)
    result = {
        "benchmark": "trainer", "config": args.config, "overrides": overrides, "steps": args.steps,
        "rows_per_step": c.global_batch_size, "seq_len": c.data.seq_len, "data_workers": c.data.worker_count,
        "synthetic_step_s": round(synthetic_s / args.steps, 4), "pipeline_step_s": round(real_s / args.steps, 4),
        "slowdown": round(real_s / synthetic_s - 1.0, 4), "target_slowdown": 0.05,
        "backend": jax.default_backend(), "hardware": hardware(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
