"""Mesh construction, logical rules, and sharding goldens for the DiT's parameters."""
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from sora_jax import parallel
from sora_jax.models.dit.config import get_dit_config
from sora_jax.models.text_to_video import TextToVideo


def test_mesh_shape_fills_and_validates():
    assert parallel.mesh_shape({"data": -1, "tensor": 2}, 8) == {"data": 4, "fsdp": 1, "tensor": 2, "sequence": 1}
    assert parallel.mesh_shape({}, 1) == {"data": 1, "fsdp": 1, "tensor": 1, "sequence": 1}
    with pytest.raises(ValueError, match="at most one mesh axis may be -1"):
        parallel.mesh_shape({"data": -1, "fsdp": -1}, 8)
    with pytest.raises(ValueError, match="needs 6 devices, have 8"):
        parallel.mesh_shape({"data": 3, "tensor": 2}, 8)
    with pytest.raises(ValueError, match="does not divide 8 devices"):
        parallel.mesh_shape({"data": -1, "tensor": 3}, 8)
    with pytest.raises(ValueError, match="unknown mesh axes"):
        parallel.mesh_shape({"model": 2}, 8)
    mesh = parallel.make_mesh({"fsdp": -1, "tensor": 2})
    assert dict(mesh.shape) == {"data": 1, "fsdp": 4, "tensor": 2, "sequence": 1}


def test_logical_spec_uses_each_mesh_axis_once():
    rules = parallel.get_rules("fsdp_tp")
    assert parallel.logical_spec(("batch", "length", "embed"), rules) == P(("data", "fsdp"), None, None)
    assert parallel.logical_spec(("embed", "mlp"), rules) == P("fsdp", "tensor")
    assert parallel.logical_spec(("layers", "heads", "embed"), rules) == P(None, "tensor", "fsdp")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        parallel.logical_spec(("hidden",), rules)
    with pytest.raises(ValueError, match="unknown sharding rules"):
        parallel.get_rules("zero3")


def make():
    return TextToVideo(get_dit_config("tiny", in_channels=4), max_text_len=64, rngs=nnx.Rngs(0))


def test_every_parameter_carries_logical_axes():
    state = nnx.state(nnx.eval_shape(make), nnx.Param)
    for path, variable in nnx.to_flat_state(state):
        axes = variable.get_metadata().get("out_sharding")
        assert axes is not None and len(axes) == len(variable.shape), path
        assert all(a is None or a in parallel.LOGICAL_AXES for a in axes), (path, axes)


def test_sharding_goldens_under_fsdp_tp():
    mesh = parallel.make_mesh({"fsdp": 4, "tensor": 2})
    model, shardings = parallel.init_sharded(make, mesh, parallel.get_rules("fsdp_tp"))
    golden = {
        ("dit", "blocks", "mlp", "fc_in", "kernel"): P(None, "fsdp", "tensor"),  # (layers, embed, mlp)
        ("dit", "blocks", "mlp", "fc_out", "kernel"): P(None, "tensor", "fsdp"),
        ("dit", "blocks", "self_attn", "to_q", "kernel"): P(None, "fsdp", "tensor"),
        ("dit", "blocks", "self_attn", "to_out", "kernel"): P(None, "tensor", "fsdp"),
        ("dit", "patch_embed", "kernel"): P(None, "fsdp"),
        ("text_encoder", "tokens", "embedding"): P("tensor", "fsdp"),  # (vocab 258, embed 64)
        ("text_encoder", "positions", "embedding"): P(None, "fsdp"),
    }
    flat = dict(nnx.to_flat_state(shardings))
    for path, spec in golden.items():
        assert flat[path].value.spec == spec, path
    kernel = model.dit.blocks.mlp.fc_in.kernel[...]
    assert kernel.addressable_shards[0].data.shape == (2, 64 // 4, 128 // 2)
    # Built sharded == built on one device.
    np.testing.assert_array_equal(np.asarray(kernel), np.asarray(make().dit.blocks.mlp.fc_in.kernel[...]))
