"""Initialising a new stage from an earlier one whose model lacks some of the new parameters."""
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sora_jax import parallel
from sora_jax.train.checkpoint import Checkpointer
from sora_jax.train.loop import _initialise_from
from sora_jax.train.step import create_train_state


class Body(nnx.Module):
    def __init__(self, rngs, head: bool = False, width: int = 8):
        self.encoder = nnx.List([nnx.Linear(4, width, rngs=rngs), nnx.Linear(width, 8, rngs=rngs)])
        if head:
            self.head = nnx.Linear(8, 3, rngs=rngs)


def _state(seed, ema, **kwargs):
    mesh, rules = parallel.make_mesh({"data": -1}), parallel.get_rules("fsdp")
    return create_train_state(lambda: Body(nnx.Rngs(seed), **kwargs), optax.adam(1e-3), mesh, rules, ema=ema)[1:]


def _save(directory, state):
    checkpoints = Checkpointer(directory, keep=1, async_save=False)
    try:
        # The data item is not read by `restore_weights`; any grain-checkpointable iterator will do.
        import grain  # noqa: PLC0415

        iterator = iter(grain.MapDataset.range(4).to_iter_dataset())
        checkpoints.save(7, state, iterator, force=True)
    finally:
        checkpoints.close()


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("source_ema", [True, False])
def test_new_parameters_keep_their_initialisation(tmp_path, source_ema):
    earlier, _ = _state(0, ema=source_ema)
    if source_ema:  # an EMA unlike the parameters, to see which one the new stage starts from
        earlier = earlier.replace(ema=jax.tree.map(lambda x: x + 1.0, earlier.ema))
    _save(str(tmp_path / "earlier" / "checkpoints"), earlier)
    fresh, shardings = _state(1, ema=True, head=True)
    config = types.SimpleNamespace(init_from=str(tmp_path / "earlier"), get=lambda key, default=None: default)
    with pytest.raises(ValueError, match=r"lacks 2 parameters of this model \(params/head/bias/value, params/head"):
        _initialise_from(config, fresh, shardings, print)

    config.get = lambda key, default=None: key == "init_new_params" or default
    logged = []
    state = _initialise_from(config, fresh, shardings, logged.append)
    assert logged == [f"initialised parameters from {tmp_path / 'earlier'} (step 7); 2 new parameters keep their "
                      "initialisation"]
    for a, b in zip(_leaves(state.params["encoder"]), _leaves(earlier.params["encoder"])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_leaves(state.params["head"]), _leaves(fresh.params["head"])):
        np.testing.assert_array_equal(a, b)
    # The EMA: the earlier one where it was kept, else the restored parameters; the head's is fresh.
    expected = earlier.ema if source_ema else earlier.params
    for a, b in zip(_leaves(state.ema["encoder"]), _leaves(expected["encoder"])):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_leaves(state.ema["head"]), _leaves(fresh.params["head"])):
        np.testing.assert_array_equal(a, b)
    assert int(state.step) == 0 and float(jnp.abs(jax.tree.leaves(state.opt_state)[1]).max()) == 0  # fresh optimizer


def test_a_parameter_of_another_shape_is_named(tmp_path):
    earlier, _ = _state(0, ema=False)
    _save(str(tmp_path / "earlier" / "checkpoints"), earlier)
    fresh, shardings = _state(1, ema=False, width=16)
    with pytest.raises(ValueError, match=r"params/encoder/0/bias/value is \(8,\) in .*, \(16,\) in the new model"):
        Checkpointer(str(tmp_path / "earlier" / "checkpoints"), keep=1).restore_weights(fresh, shardings)
