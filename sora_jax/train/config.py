"""Experiment configs: loading `experiments/<stage>.py:<variant>`, command-line overrides, checks.

A config file defines `get_config(arg) -> ml_collections.ConfigDict` (big_vision style). Overrides
`--config.a.b=value` are parsed as Python literals and must name an existing field; the value is
coerced to the field's type. `validate` checks every value the trainer relies on and raises a
ValueError naming the field, before anything is built or compiled.
"""
from __future__ import annotations

import ast
import importlib.util
import os

import ml_collections

from data_pipelines import config as data_config

TASKS = ("dit", "vae", "captioner", "probe", "upsampler")


def load_config(spec: str, overrides: list[str] | None = None) -> ml_collections.ConfigDict:
    """Loads `path.py[:arg]`, applies `a.b=value` overrides, validates, and returns the config."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file not found: {path}")
    module_spec = importlib.util.spec_from_file_location(f"_sora_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} defines no get_config(arg)")
    config = module.get_config(arg) if arg else module.get_config()
    for override in overrides or []:
        apply_override(config, override)
    validate(config)
    return config


def apply_override(config: ml_collections.ConfigDict, override: str) -> None:
    """Sets `a.b=value` (value parsed as a Python literal, else kept as a string) on `config`."""
    key, sep, text = override.removeprefix("--").removeprefix("config.").partition("=")
    if not sep:
        raise ValueError(f"override {override!r} is not of the form key=value")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        if part not in node:
            raise ValueError(f"override {key!r}: no field {part!r}")
        node = node[part]
    if parts[-1] not in node:
        raise ValueError(f"override {key!r}: no field {parts[-1]!r}; fields here: {sorted(node.keys())}")
    current = node[parts[-1]]
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(current, tuple) and isinstance(value, list):
        value = tuple(value)
    node[parts[-1]] = value


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"config: {message}")


def validate(c: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first bad field; see the module docstring."""
    _need(c.get("task") in TASKS, f"task must be one of {TASKS}, got {c.get('task')!r}")
    _need(c.steps >= 1, f"steps must be at least 1, got {c.steps}")
    _need(c.global_batch_size >= 1, "global_batch_size must be at least 1")
    for name in ("log_every", "checkpoint_every", "eval_every", "sample_every"):
        _need(c[name] >= 0, f"{name} must be >= 0 (0 disables)")
    _need(c.keep_checkpoints >= 1, "keep_checkpoints must be at least 1")
    _need(c.max_bad_steps >= 1, "max_bad_steps must be at least 1")
    o = c.optim
    _need(o.learning_rate > 0, f"optim.learning_rate must be positive, got {o.learning_rate}")
    _need(0 <= o.warmup_steps <= c.steps, "optim.warmup_steps must be in [0, steps]")
    _need(o.schedule in ("cosine", "constant"), f"optim.schedule must be cosine or constant, got {o.schedule!r}")
    _need(0 <= o.b1 < 1 and 0 <= o.b2 < 1, "optim.b1 and optim.b2 must be in [0, 1)")
    _need(o.weight_decay >= 0 and o.clip_norm >= 0, "optim.weight_decay and optim.clip_norm must be >= 0")
    _need(0 <= o.ema_decay < 1, f"optim.ema_decay must be in [0, 1), got {o.ema_decay}")
    data_shards = c.data_shards
    _need(data_shards == -1 or data_shards >= 1, "data_shards must be -1 (one per process) or positive")
    if c.task == "vae":
        _need(len(c.data.sources) > 0, "data.sources is empty")
        _need(c.data.frames >= 1 and c.data.size >= 8, "data.frames >= 1 and data.size >= 8 required")
        _need(c.data.get("worker_count", 0) >= 0, "data.worker_count must be >= 0")
        _need(c.loss.l1 >= 0 and c.loss.kl >= 0 and c.loss.gan_weight >= 0, "loss weights must be >= 0")
    if c.task == "dit":
        data_config.validate(c.data)
        if c.data.get("text_encoder", "tiny") == "tiny":  # a frozen encoder has no trainable positions to fit
            _need(c.data.max_text_tokens <= c.text_max_len, "data.max_text_tokens must be <= text_max_len")
    if c.task not in ("dit", "vae"):  # later tasks validate their own fields
        from sora_jax.train.tasks import task_class  # noqa: PLC0415

        check = getattr(task_class(c.task), "validate_config", None)
        if check is not None:
            check(c)
    from sora_jax import parallel  # noqa: PLC0415 (keeps config loading light)

    parallel.get_rules(c.rules)
    unknown = set(c.mesh.keys()) - set(parallel.MESH_AXES)
    _need(not unknown, f"mesh has unknown axes {sorted(unknown)}")
