"""Loading a trained model from a workdir: the config saved there and the latest (or a given)
checkpoint, with EMA weights when the run kept them. What generation, encoding and evaluation use.
"""
from __future__ import annotations

import dataclasses
import json
import os

import jax
import ml_collections
import numpy as np
from flax import nnx

from sora_jax.train.checkpoint import read_state, save_weights


@dataclasses.dataclass
class Trained:
    """A trained model with what is needed to use it.

    Attributes:
      config: the run's config (from `workdir/config.json`).
      task: the task object (`DiTTask`, `VAETask`, ...) built from it.
      model: the NNX module with the checkpoint's weights (EMA when available and asked for).
      step: the checkpoint step; workdir: where it came from.
    """

    config: ml_collections.ConfigDict
    task: object
    model: nnx.Module
    step: int
    workdir: str


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a run saved in `workdir/config.json`; a clear error when there is none."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{workdir} is not a training workdir: no config.json (train with `sora-jax train`)")
    with open(path) as f:
        raw = json.load(f)
    return ml_collections.ConfigDict(_tuples(raw))


def _tuples(value):
    """JSON turns tuples into lists; configs use tuples for shapes, so lists of scalars go back."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
        return tuple(value)
    if isinstance(value, list):
        return [_tuples(v) for v in value]
    return value


def load_trained(workdir: str, step: int | None = None, ema: bool = True) -> Trained:
    """Builds the model of the run in `workdir` and loads checkpoint `step` (default: latest).

    Raises FileNotFoundError when the workdir has no config or no checkpoint, and ValueError when
    the checkpoint does not fit the model the config describes.
    """
    from sora_jax.train.tasks import make_task  # import here: tasks imports much of the package

    config = load_run_config(workdir)
    task = make_task(config)
    abstract = nnx.eval_shape(task.make_model)
    graphdef, params = nnx.split(abstract)
    directory = os.path.join(workdir, "checkpoints")
    try:
        saved = read_state(directory, step)
    except FileNotFoundError:
        raise FileNotFoundError(f"no checkpoint under {directory}") from None
    weights = saved.get("ema") if ema and saved.get("ema") is not None else saved["params"]
    # Saved Variables are {"value": array} dicts (the state as Orbax wrote it); pure dicts are not.
    # Orbax also writes list indices as strings, so paths are compared as strings.
    flat_saved = {tuple(map(str, k[:-1] if k[-1] == "value" else k)): v
                  for k, v in nnx.traversals.flatten_mapping(weights).items()}
    flat_model = dict(nnx.traversals.flatten_mapping(params.to_pure_dict()))
    key = lambda path: tuple(map(str, path))  # noqa: E731
    missing = sorted("/".join(key(k)) for k in flat_model if key(k) not in flat_saved)
    if missing:
        raise ValueError(f"checkpoint in {directory} lacks {len(missing)} parameters the config needs, e.g. {missing[:3]}")
    for path, value in flat_model.items():
        if tuple(np.shape(flat_saved[key(path)])) != tuple(value.shape):
            raise ValueError(f"checkpoint parameter {'/'.join(key(path))} has shape {np.shape(flat_saved[key(path)])}, "
                             f"the config's model needs {value.shape}")
    restored = nnx.traversals.unflatten_mapping({k: jax.numpy.asarray(flat_saved[key(k)]) for k in flat_model})
    params.replace_by_pure_dict(restored)
    model = nnx.merge(graphdef, params)
    return Trained(config=config, task=task, model=model, step=int(np.asarray(saved["step"])), workdir=workdir)


def init_workdir(config: ml_collections.ConfigDict, workdir: str) -> str:
    """Writes `config.json` and a step-0 checkpoint of the config's freshly initialised weights:
    a workdir that `load_trained` reads, for tools and tests that need one without training."""
    from sora_jax.train.tasks import make_task  # noqa: PLC0415

    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    model = make_task(config).make_model()
    save_weights(os.path.join(workdir, "checkpoints"), 0, nnx.state(model).to_pure_dict())
    return workdir
