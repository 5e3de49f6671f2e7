"""Ahead-of-time compilation of a config's train step, to check that it fits before paying for it.

Everything the step takes is built abstractly: parameters with `nnx.eval_shape`, optimizer state
and EMA with `jax.eval_shape`, the batch as `jax.ShapeDtypeStruct`s of the config's packed-row
shapes, each carrying the sharding the trainer would give it. No parameter, moment or batch array
is allocated, so a 1B-parameter config compiles on a laptop. The step is the trainer's own
(`make_train_step`, donated state), lowered and compiled for a mesh over either the local devices
(simulated CPU devices in tests) or the compile-only devices of a TPU topology that is not
attached (`jax.experimental.topologies`, which needs libtpu: `pip install -e ".[tpu]"`).

The report is XLA's own accounting of the compiled per-device program (`memory_analysis`,
`cost_analysis`); nothing here estimates memory by hand.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import time
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from sora_jax import parallel
from sora_jax.models.dit.flops import train_step_flops
from sora_jax.text.interface import frozen_encoder_dim, is_frozen_spec
from sora_jax.train.checkpoint import abstract_like
from sora_jax.train.config import load_config
from sora_jax.train.optimizer import make_optimizer
from sora_jax.train.step import TrainState, batch_shardings, make_train_step
from sora_jax.train.tasks import make_task

GIB = 1024**3
# HBM per TPU chip (one JAX device per chip: v4 and v5p run their two cores as one megacore).
HBM_GIB = {"v4": 32.0, "v5e": 16.0, "v5p": 95.0, "v6e": 32.0}
# Accelerator-type prefixes as gcloud spells them -> the generation names topologies use.
GENERATIONS = {"v4": "v4", "v5p": "v5p", "v5litepod": "v5e", "v5e": "v5e", "v6e": "v6e"}
# Generations whose chips have two TensorCores run as one device (megacore), wired as 3D tori,
# and whose accelerator-type suffix counts TensorCores rather than chips (v5p-64 is 32 chips).
MEGACORE = ("v4", "v5p")


class TopologyUnavailable(RuntimeError):
    """Raised when a TPU topology is asked for but this JAX cannot describe one (no libtpu)."""


@dataclasses.dataclass
class Target:
    """Where the step is compiled for: devices (real or compile-only), their platform, and HBM."""

    devices: Sequence[Any]
    name: str  # "cpu:8" or a topology such as "v5p:4x4x4"
    hbm_gib: float | None  # per-device memory to check against; None: no fit verdict

    @property
    def platform(self) -> str:
        return self.devices[0].platform

    @property
    def device_kind(self) -> str:
        return self.devices[0].device_kind


# Pod-scale configs leave data.sources empty until `sora-jax encode` has written latents, and
# validation rejects that; compiling reads no data, so a placeholder source lets every other field
# be validated. A --config.data.sources override given by the user comes later and wins.
NO_DATA_SOURCES = "data.sources=['(aot: no data is read)']"


def load_for_aot(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """`load_config(spec, overrides)` for compiling only: data sources need not exist yet."""
    return load_config(spec, [NO_DATA_SOURCES, *overrides])


def topology_name(spec: str) -> tuple[str, str]:
    """`(generation, "gen:AxB[xC]")` from a topology (`v5p:4x4x4`) or accelerator type (`v5p-64`).

    Accelerator types map to the default slice shapes of Cloud TPU: v4/v5p count TensorCores (two
    per chip) on a 3D torus, v5e/v6e count chips on a 2D one.
    """
    if ":" in spec:
        generation, _, shape = spec.partition(":")
        generation = GENERATIONS.get(generation, generation)
        sides = 3 if generation in MEGACORE else 2  # v4/v5p: 3D torus; v5e/v6e: 2D
        if generation not in HBM_GIB or not re.fullmatch(r"\d+" + r"x\d+" * (sides - 1), shape):
            raise ValueError(f"topology {spec!r} is not GEN:AxBxC (v4, v5p) or GEN:AxB (v5e, v6e)")
        return generation, f"{generation}:{shape}"
    match = re.fullmatch(r"(v4|v5p|v5litepod|v5e|v6e)-(\d+)", spec)
    if not match:
        raise ValueError(f"{spec!r} is neither a topology (v5p:4x4x4) nor an accelerator type (v5p-64, v5litepod-16)")
    generation, count = GENERATIONS[match[1]], int(match[2])
    chips = count // 2 if match[1] in MEGACORE else count
    dims = [2, 2, 1] if generation in MEGACORE else [1, 1]
    while math.prod(dims) < chips:
        smallest = min(dims)  # grow the smallest side, the last one on ties: 2x2x1, 2x2x2, 2x2x4, 2x4x4, ...
        dims[max(i for i, d in enumerate(dims) if d == smallest)] *= 2
    if math.prod(dims) != chips:
        raise ValueError(f"{spec!r}: {chips} chips is not a slice shape this tool knows; pass GEN:AxBxC instead")
    return generation, f"{generation}:{'x'.join(map(str, dims))}"


def topology_options(name: str) -> dict:
    """Keyword options of `get_topology_desc` that make compile-only devices match real slices.

    v4 and v5p run each chip's two TensorCores as one device (megacore), as JAX does on real ones.
    Hosts hold 2x2 chips, except single-host v5e/v6e slices of up to 8 chips. Full-cube 3D slices
    (every side a multiple of 4) and 2D sides of 16 are tori (wraparound links).
    """
    generation, _, shape = name.partition(":")
    dims = tuple(int(d) for d in shape.split("x"))
    if len(dims) == 3:
        options = {"wrap": (all(d % 4 == 0 for d in dims),) * 3, "chips_per_host_bounds": (2, 2, 1)}
    else:
        host = (*dims, 1) if math.prod(dims) <= 8 else (2, 2, 1)
        options = {"wrap": (*(d == 16 for d in dims), False), "chips_per_host_bounds": host}
    if generation in MEGACORE:
        options["chip_config_name"] = "megacore"
    return options


def tpu_target(spec: str, hbm_gib: float | None = None) -> Target:
    """Compile-only devices of a TPU topology (no TPU attached); needs libtpu (`jax[tpu]`).

    Raises TopologyUnavailable without libtpu and ValueError for a topology libtpu rejects.
    """
    generation, name = topology_name(spec)
    from jax.experimental import topologies  # noqa: PLC0415 (only this path needs it)

    try:
        description = topologies.get_topology_desc(name, "tpu", **topology_options(name))
    except RuntimeError as error:
        if "not installed" not in str(error):
            raise ValueError(f"libtpu cannot describe topology {name}: {str(error).splitlines()[0]}") from error
        raise TopologyUnavailable(
            f"cannot describe TPU topology {name}: {error}. AOT compilation for a TPU topology needs libtpu; "
            f"install it with `pip install -e \".[tpu]\"` (any Linux x86 host, no TPU needed), or use --cpu-devices N"
        ) from error
    return Target(description.devices, name, HBM_GIB[generation] if hbm_gib is None else hbm_gib)


def local_target(hbm_gib: float | None = None) -> Target:
    """The devices of this process's default backend (e.g. N simulated CPU devices)."""
    devices = jax.devices()
    return Target(devices, f"{devices[0].platform}:{len(devices)}", hbm_gib)


def target_mesh(c: ml_collections.ConfigDict, target: Target) -> jax.sharding.Mesh:
    """The config's mesh over the target's devices, topology-aware as `parallel.make_mesh` builds it.

    `parallel.make_mesh` falls back to plain device order for devices that are not this process's,
    which compile-only TPU devices never are; `jax.make_mesh` with explicit devices keeps the
    physical (torus) order for them too.
    """
    sizes = parallel.mesh_shape(dict(c.mesh), len(target.devices))
    shape = tuple(sizes[name] for name in parallel.MESH_AXES)
    axis_types = (jax.sharding.AxisType.Auto,) * len(parallel.MESH_AXES)
    return jax.make_mesh(shape, parallel.MESH_AXES, devices=list(target.devices), axis_types=axis_types)


def abstract_train_state(make_model, tx: optax.GradientTransformation, mesh, rules, ema: bool = False):
    """`create_train_state` without allocating: `(graphdef, abstract_state, state_shardings)`.

    `abstract_state` is a `TrainState` of `jax.ShapeDtypeStruct`s that carry the shardings
    `create_train_state` gives the real arrays (same rules, same optimizer-state mapping), so a step
    compiled against it accepts the real state.
    """
    graphdef, params = nnx.split(nnx.eval_shape(make_model))
    param_shardings = parallel.state_shardings(params, mesh, rules)
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_state = jax.eval_shape(tx.init, params)
    # As in create_train_state: moments take their parameter's sharding, counts are replicated.
    opt_shardings = optax.tree_utils.tree_map_params(
        tx, lambda _, sharding: sharding, opt_state, param_shardings, transform_non_params=lambda _: replicated,
    )
    counter = jax.ShapeDtypeStruct((), np.int32)
    state = TrainState(step=counter, params=params, opt_state=opt_state, ema=params if ema else None,
                       bad_steps=counter, max_bad_run=counter, skipped=counter)
    shardings = TrainState(step=replicated, params=param_shardings, opt_state=opt_shardings,
                           ema=param_shardings if ema else None, bad_steps=replicated, max_bad_run=replicated,
                           skipped=replicated)
    return graphdef, abstract_like(state, shardings), shardings


def packed_row(data: ml_collections.ConfigDict, patch_dim: int) -> dict:
    """One packed row `(1, ...)` of zeros with the pipeline's field shapes and dtypes.

    Mirrors `data_pipelines.packing.finalize_row`: pixel tokens arrive as uint8 and latents as
    float32; the task's `host_batch` then converts them as in training. With a frozen text encoder
    (`data.text_encoder`) the row carries its embeddings `text_embeddings (1, Lt, D)` float16 in
    place of token ids. One row is a few MB even at pod scale, so it is real host memory, not an
    abstract value.
    """
    seq_len, text_len, segments = data.seq_len, data.text_len, data.max_segments_per_row
    spec = data.get("text_encoder", "tiny")
    text = ({"text_embeddings": np.zeros((1, text_len, frozen_encoder_dim(spec)), np.float16)}  # (1, Lt, D)
            if is_frozen_spec(spec) else {"text_tokens": np.zeros((1, text_len), np.int32)})  # (1, Lt)
    return {
        "tokens": np.zeros((1, seq_len, patch_dim), np.uint8 if data.mode == "pixel" else np.float32),  # (1, L, D)
        "coords": np.zeros((1, seq_len, 3), np.int32),  # (1, L, 3)
        "segment_ids": np.zeros((1, seq_len), np.int32),  # (1, L)
        "loss_mask": np.zeros((1, seq_len), np.float32),  # (1, L)
        "known_mask": np.zeros((1, seq_len), bool),  # (1, L)
        **text,
        "text_segment_ids": np.zeros((1, text_len), np.int32),  # (1, Lt)
        "segment_grid": np.zeros((1, segments, 3), np.int32),  # (1, S, 3)
        "segment_record": np.full((1, segments, 2), -1, np.int64),  # (1, S, 2)
    }


def abstract_batch(c: ml_collections.ConfigDict, task, mesh, rules) -> tuple[dict, dict]:
    """`(batch, shardings)`: the global model-input batch as sharded `jax.ShapeDtypeStruct`s.

    Shapes and dtypes are what `task.host_batch` makes of a packed row, with the config's
    `global_batch_size` rows; shardings are the trainer's (`step.batch_shardings`).
    """
    host = task.host_batch(packed_row(c.data, task.dit_config.patch_dim))
    shardings = batch_shardings(host, mesh, rules, c.global_batch_size)
    batch = {k: jax.ShapeDtypeStruct((c.global_batch_size, *v.shape[1:]), v.dtype, sharding=shardings[k])
             for k, v in host.items()}
    return batch, shardings


def target_config(c: ml_collections.ConfigDict, target: Target, attention: str | None = None):
    """A copy of `c` with the attention kernel pinned (`attention`, else the target's default).

    The model resolves `attention="auto"` from the backend of the running process, which is the
    host's CPU when compiling for a TPU topology that is not attached; pin what the target would use.
    """
    c = copy.deepcopy(c)
    overrides = dict(c.model.overrides)
    if attention is not None:
        overrides["attention"] = attention
    elif overrides.get("attention", "auto") == "auto":
        overrides["attention"] = f"auto:{target.platform}" if target.platform in ("gpu", "tpu") else "flash_xla"
    c.model.overrides = overrides
    return c


@dataclasses.dataclass
class LoweredStep:
    """The trainer's step lowered for a target, with the abstract arguments it was lowered for."""

    lowered: Any  # jax.stages.Lowered; `.compile()` gives an executable taking (state, batch, rng)
    config: ml_collections.ConfigDict  # the config as compiled (attention pinned)
    task: Any
    state: TrainState  # ShapeDtypeStructs with shardings
    batch: dict  # ShapeDtypeStructs with shardings
    mesh: jax.sharding.Mesh

    @property
    def param_count(self) -> int:
        return sum(math.prod(x.shape) for x in jax.tree.leaves(self.state.params))


def lower_train_step(c: ml_collections.ConfigDict, target: Target, attention: str | None = None) -> LoweredStep:
    """Traces and lowers the trainer's step (donated state) for `c` on `target`; allocates nothing."""
    c = target_config(c, target, attention)
    mesh, rules = target_mesh(c, target), parallel.get_rules(c.rules)
    task = make_task(c)
    tx, _ = make_optimizer(c.optim, c.steps)
    graphdef, state, shardings = abstract_train_state(task.make_model, tx, mesh, rules, ema=c.optim.ema_decay > 0)
    batch, batch_sh = abstract_batch(c, task, mesh, rules)
    key_dtype = jax.eval_shape(jax.random.key, 0).dtype
    rng = jax.ShapeDtypeStruct((), key_dtype, sharding=NamedSharding(mesh, PartitionSpec()))
    step = make_train_step(graphdef, task.loss_fn, tx, shardings, batch_sh, mesh, rules, c.optim.ema_decay)
    return LoweredStep(step.lower(state, batch, rng), c, task, state, batch, mesh)


def memory_report(compiled) -> dict:
    """Per-device bytes of a compiled SPMD program from XLA's `memory_analysis()`.

    `total` counts what must be resident at the peak: arguments, outputs not aliased to donated
    arguments, temporaries and the program's code.
    """
    stats = compiled.memory_analysis()
    if stats is None:
        raise RuntimeError(f"this backend ({compiled}) gives no memory analysis")
    report = {
        "argument_bytes": int(stats.argument_size_in_bytes),
        "output_bytes": int(stats.output_size_in_bytes),
        "alias_bytes": int(stats.alias_size_in_bytes),
        "temp_bytes": int(stats.temp_size_in_bytes),
        "generated_code_bytes": int(stats.generated_code_size_in_bytes),
    }
    total = (report["argument_bytes"] + report["output_bytes"] - report["alias_bytes"] + report["temp_bytes"]
             + report["generated_code_bytes"])
    return report | {"total_bytes": total, "total_gib": round(total / GIB, 4)}


def flops_per_device(compiled) -> float | None:
    """FLOPs of the compiled per-device program from `cost_analysis()`, None where XLA gives none.

    XLA counts a loop body once: with scanned layers (`scan_layers`, the default) this is what runs
    outside the layer loops plus one layer's forward and backward, not the whole step (checked on
    CPU: depth 2 and depth 4 report the same figure). `model_flops_per_step` counts every layer.
    """
    try:
        analysis = compiled.cost_analysis()
    except (NotImplementedError, RuntimeError):
        return None
    if isinstance(analysis, (list, tuple)):  # older JAX: one dict per program
        analysis = analysis[0] if analysis else None
    flops = (analysis or {}).get("flops")
    return float(flops) if flops is not None and flops >= 0 else None


def model_flops_per_step(step: LoweredStep) -> float:
    """Analytic train-step FLOPs (`dit.flops`) with every row one segment of `seq_len` tokens and
    `max_text_tokens` text: the most attention work a packed row can hold."""
    data = step.config.data
    rows = [([data.seq_len], [data.max_text_tokens])] * step.config.global_batch_size
    return train_step_flops(step.task.dit_config, rows)


def is_out_of_memory(error: Exception) -> bool:
    """True for XLA's compile-time verdict that the program does not fit (TPU checks HBM when compiling)."""
    return isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(error)


def compile_report(c: ml_collections.ConfigDict, target: Target, attention: str | None = None) -> dict:
    """Lowers and compiles `c`'s train step for `target` and returns the JSON-ready report.

    A compile that XLA stops for lack of device memory is a result, not a crash: `fits` is False and
    `compile_error` holds XLA's message (with the bytes it needed). Other errors propagate.
    """
    start = time.perf_counter()
    step = lower_train_step(c, target, attention)
    c = step.config
    record = {
        "target": target.name, "platform": target.platform, "device_kind": target.device_kind,
        "devices": len(target.devices), "mesh": dict(step.mesh.shape), "rules": c.rules,
        "attention": c.model.overrides["attention"], "preset": c.model.preset, "params": step.param_count,
        "global_batch_size": c.global_batch_size, "seq_len": c.data.seq_len, "text_len": c.data.text_len,
        "hbm_gib": target.hbm_gib, "model_flops_per_step": model_flops_per_step(step),
    }
    try:
        compiled = step.lowered.compile()
    except jax.errors.JaxRuntimeError as error:
        if not is_out_of_memory(error):
            raise
        return record | {"fits": False, "memory_per_device": None, "xla_flops_per_device": None,
                         "compile_error": str(error).splitlines()[0][:500],
                         "compile_seconds": round(time.perf_counter() - start, 2)}
    memory = memory_report(compiled)
    fits = None if target.hbm_gib is None else memory["total_bytes"] <= target.hbm_gib * GIB
    return record | {"fits": fits, "memory_per_device": memory, "xla_flops_per_device": flops_per_device(compiled),
                     "compile_seconds": round(time.perf_counter() - start, 2)}
