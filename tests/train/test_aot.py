"""Ahead-of-time compilation of the train step (sora_jax/train/aot.py) on 8 simulated CPU devices:
the abstract path allocates nothing (a 1.4B-parameter state would need ~23 GB here), XLA's memory
figures are real and add up to our shards, they grow with the model, and the AOT-compiled step
computes what the trainer's own jitted step computes on real data."""
import copy
import gc
import importlib.util
import math
import os
import resource
import subprocess
import sys

import jax
import numpy as np
import pytest

from data_pipelines.pipeline import build
from sora_jax import parallel
from sora_jax.train import aot
from sora_jax.train.batch import to_global
from sora_jax.train.optimizer import make_optimizer
from sora_jax.train.step import batch_shardings, create_train_state, make_train_step
from sora_jax.train.tasks import make_task

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "experiments", "pretrain.py") + ":tiny"
# fsdp=4 x tensor=2 with the tensor-parallel rules, so both mesh axes shard parameters.
MESH = ["mesh.data=1", "mesh.fsdp=4", "mesh.tensor=2", "rules='fsdp_tp'"]


def shard_bytes(tree) -> int:
    """Bytes one device holds of a tree of sharded abstract arrays (every device holds as much here)."""
    return sum(math.prod(x.sharding.shard_shape(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree))


def lower(*overrides) -> aot.LoweredStep:
    return aot.lower_train_step(aot.load_for_aot(CONFIG, [*MESH, *overrides]), aot.local_target())


@pytest.fixture(scope="module")
def tiny():
    step = lower()
    return step, step.lowered.compile()


@pytest.fixture(scope="module")
def wider():
    """Tiny's bigger sibling: 4x the width, 11.6x the parameters, the same data shapes."""
    step = lower("model.overrides={'dim': 256, 'heads': 8, 'mlp_dim': 512, 'text_dim': 256}")
    return step, step.lowered.compile()


def test_abstract_state_and_lowering_allocate_nothing():
    """The 1B preset (1.4B parameters) on 8 devices, traced and lowered without a single array."""
    gc.collect()  # arrays earlier tests dropped must not be freed mid-test and blur the count
    live_before = len(jax.live_arrays())
    peak_rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    step = lower("model.preset='1B'")
    peak_rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_rss_before
    assert step.param_count > 1_400_000_000
    state_on_all_devices = 8 * shard_bytes(step.state)  # params, two Adam moments, EMA
    assert state_on_all_devices > 20 * 2**30
    gc.collect()
    assert len(jax.live_arrays()) <= live_before  # nothing new is alive
    assert peak_rss_growth < 0.05 * state_on_all_devices, (peak_rss_growth, state_on_all_devices)


def test_frozen_text_encoder_rows_lower_with_embeddings():
    """With MiniLM as the text encoder the compiled step reads its embeddings (384 wide), not token ids."""
    step = lower("data.text_encoder='minilm'", "data.max_text_tokens=256")
    text = step.batch["text_embeddings"]
    assert "text_tokens" not in step.batch and text.shape[-1] == 384 and text.shape[1] == step.config.data.text_len
    assert step.param_count != lower().param_count  # no trainable token table; a 384-wide text projection


def test_memory_analysis_is_real_and_adds_up(tiny):
    step, compiled = tiny
    memory = aot.memory_report(compiled)
    assert step.mesh.shape == {"data": 1, "fsdp": 4, "tensor": 2, "sequence": 1}
    for field in ("argument_bytes", "output_bytes", "alias_bytes", "temp_bytes", "total_bytes"):
        assert memory[field] > 0, (field, memory)
    assert memory["generated_code_bytes"] >= 0  # XLA:CPU reports 0; TPU reports the program size
    # Arguments are exactly this device's shards of state and batch plus the 8-byte RNG key, less
    # segment_grid when jit drops it as unused (the loss reads only its shape).
    everything = shard_bytes(step.state) + shard_bytes(step.batch) + 8
    assert everything - shard_bytes(step.batch["segment_grid"]) <= memory["argument_bytes"] <= everything
    # The state is donated: its buffers are reused for the new state, not allocated again.
    assert memory["alias_bytes"] == shard_bytes(step.state)
    assert step.param_count == 213_120


def test_argument_bytes_grow_with_parameter_count(tiny, wider):
    (small, small_compiled), (big, big_compiled) = tiny, wider
    assert big.param_count > 10 * small.param_count
    batch = shard_bytes(small.batch)  # the same data shapes for both: not the model's share
    assert shard_bytes(big.batch) == batch
    small_state = aot.memory_report(small_compiled)["argument_bytes"] - batch
    big_state = aot.memory_report(big_compiled)["argument_bytes"] - batch
    # Not exact: tensor parallelism splits MLP and attention weights 8 ways but embeddings only 4,
    # and the wider model has more of the former.
    ratio = (big_state / small_state) / (big.param_count / small.param_count)
    assert 0.8 <= ratio <= 1.2, ratio
    assert aot.memory_report(big_compiled)["temp_bytes"] > aot.memory_report(small_compiled)["temp_bytes"]


def test_compiled_step_matches_the_trainers_jitted_step(tiny, tiny_shapes_world):
    step, compiled = tiny
    c = copy.deepcopy(step.config)
    c.data.sources = [tiny_shapes_world]
    mesh, rules = step.mesh, parallel.get_rules(c.rules)
    assert mesh == parallel.make_mesh(dict(c.mesh))  # the trainer's mesh, device order included
    task = make_task(c)
    tx, _ = make_optimizer(c.optim, c.steps)
    graphdef, state, shardings = create_train_state(task.make_model, tx, mesh, rules, ema=c.optim.ema_decay > 0)
    state_copy = jax.tree.map(lambda x: x.copy(), state)  # each step donates its input state
    host = task.host_batch(next(iter(build(c.data))))
    batch_sh = batch_shardings(host, mesh, rules, c.global_batch_size)
    batch = to_global(host, batch_sh)
    # The abstract batch is the pipeline's real one, field for field.
    assert {k: (v.shape, v.dtype, v.sharding) for k, v in batch.items()} == {
        k: (v.shape, v.dtype, v.sharding) for k, v in step.batch.items()}
    rng = jax.device_put(jax.random.key(3), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    jitted = make_train_step(graphdef, task.loss_fn, tx, shardings, batch_sh, mesh, rules, c.optim.ema_decay)

    aot_state, aot_metrics = compiled(state, batch, rng)
    jit_state, jit_metrics = jitted(state_copy, batch, rng)
    assert np.isfinite(float(jit_metrics["loss"])) and bool(jit_metrics["finite"])
    assert abs(float(aot_metrics["loss"]) - float(jit_metrics["loss"])) <= 1e-6
    assert abs(float(aot_metrics["grad_norm"]) - float(jit_metrics["grad_norm"])) <= 1e-6
    for a, b in zip(jax.tree.leaves(aot_state.params), jax.tree.leaves(jit_state.params), strict=True):
        assert float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) <= 1e-6


@pytest.mark.parametrize("spec,name", [
    ("v5p-8", "v5p:2x2x1"), ("v5p-64", "v5p:2x4x4"), ("v5p-128", "v5p:4x4x4"), ("v5p-1024", "v5p:8x8x8"),
    ("v4-32", "v4:2x2x4"), ("v5litepod-16", "v5e:4x4"), ("v5litepod-128", "v5e:8x16"), ("v6e-256", "v6e:16x16"),
    ("v5p:4x4x8", "v5p:4x4x8"), ("v5e:2x4", "v5e:2x4"),
])
def test_accelerator_types_map_to_cloud_tpu_slice_shapes(spec, name):
    assert aot.topology_name(spec)[1] == name


@pytest.mark.parametrize("spec", ["v5p-63", "v3-8", "v5p:4x4", "tpu"])
def test_unknown_topologies_are_errors(spec):
    with pytest.raises(ValueError):
        aot.topology_name(spec)


def test_tpu_topology_needs_libtpu_or_gives_its_devices():
    if importlib.util.find_spec("libtpu") is None and not os.environ.get("TPU_LIBRARY_PATH"):
        with pytest.raises(aot.TopologyUnavailable, match=r'pip install -e "\.\[tpu\]"'):
            aot.tpu_target("v5p-64")
    else:  # `pip install -e ".[tpu]"` was run: the compile-only devices of a v5p-64, one per chip
        target = aot.tpu_target("v5p-64")
        assert (len(target.devices), target.device_kind, target.hbm_gib) == (32, "TPU v5", 95.0)


def test_script_reports_bad_input_in_one_line():
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tpu", "aot_compile.py"), "--config", CONFIG, "--cpu-devices", "8",
         "--config.mesh.fsdp=3"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().endswith("does not divide 8 devices") and not result.stdout
