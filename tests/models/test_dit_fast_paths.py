"""The DiT's CPU fast paths compute what the plain formulations compute.

- `flash_xla`'s backward (transposed dK/dV accumulators) gives the reference gradients for q, k
  and v, with segments, padding and a row length that is not a block multiple;
- the timestep MLPs run once per distinct time (`distinct_times`) and give the per-token result,
  forward and gradients, and a batch with too many distinct times takes the per-token path.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.models import flash_xla
from sora_jax.models.attention import reference_attention
from sora_jax.models.dit import model as dit_model
from sora_jax.models.dit.config import get_dit_config


def test_flash_xla_gradients_match_the_reference_for_q_k_and_v():
    rng = np.random.default_rng(0)
    length = 100  # not a multiple of the block: queries are padded inside
    q, k, v, d_out = (jnp.asarray(rng.normal(size=(2, length, 3, 16)).astype(np.float32)) for _ in range(4))
    ids = np.ones((2, length), np.int32)
    ids[0, 40:90], ids[0, 90:] = 2, 0  # two segments then padding
    ids = jnp.asarray(ids)
    real = (ids > 0)[..., None, None]  # padding rows' outputs are defined but unused
    flash = functools.partial(flash_xla.blockwise_attention, q_ids=ids, kv_ids=ids, block=32)
    reference = functools.partial(reference_attention, q_segment_ids=ids, kv_segment_ids=ids)
    out, vjp = jax.vjp(lambda *a: flash(*a) * real, q, k, v)
    ref_out, ref_vjp = jax.vjp(lambda *a: reference(*a) * real, q, k, v)
    np.testing.assert_allclose(out, ref_out, atol=2e-5)
    for name, grad, ref_grad in zip("qkv", vjp(d_out), ref_vjp(d_out)):
        assert np.abs(ref_grad).max() > 0.1, name  # the comparison is not between zeros
        np.testing.assert_allclose(grad, ref_grad, atol=5e-5, err_msg=f"d{name}")


def test_distinct_times_and_the_one_hot_rebuild_each_row():
    times = jnp.asarray([[0.3, 0.3, 0.0, 0.7, 0.7, 0.0], [0.5] * 6], jnp.float32)
    values, onehot = dit_model.distinct_times(times, 4)  # (B, K), (B, K, L)
    np.testing.assert_array_equal(dit_model.count_distinct(times), [3, 1])
    np.testing.assert_array_equal(values, np.float32([[0.0, 0.3, 0.7, 0.0], [0.5, 0.0, 0.0, 0.0]]))
    np.testing.assert_array_equal(onehot.sum(axis=1), np.ones((2, 6)))  # each token picks one value
    np.testing.assert_array_equal(jnp.einsum("bkl,bk->bl", onehot, values), times)


def _time_terms_and_grads(model, times, max_distinct, monkeypatch):
    """`DiT._time_terms` and the gradients of a weighted sum of its outputs, with `MAX_DISTINCT_TIMES`
    patched (0 forces the per-token path)."""
    monkeypatch.setattr(dit_model, "MAX_DISTINCT_TIMES", max_distinct)
    graphdef, params = nnx.split(model)
    weights = jax.random.normal(jax.random.key(1), (7, *times.shape, model.config.dim))  # (7, B, L, D)

    def loss(p):
        temb, time_mod = nnx.merge(graphdef, p)._time_terms(times)  # (B, L, D), 6 x (B, L, D)
        terms = jnp.stack([temb, *time_mod])  # (7, B, L, D)
        return jnp.sum(terms * weights), terms

    (_, terms), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    return terms, grads


def test_time_mlps_once_per_distinct_time_equal_the_per_token_path(monkeypatch):
    model = dit_model.DiT(get_dit_config("tiny", depth=1), rngs=nnx.Rngs(0))
    segment_ids = np.repeat([[1] * 10 + [2] * 10 + [0] * 4], 2, axis=0)  # (B, L)
    times = np.where(segment_ids == 1, 0.25, np.where(segment_ids == 2, 0.8, 0.0)).astype(np.float32)
    times[:, :3] = 0.0  # known frames at t = 0 inside segment 1
    times[1, 10:20] = 0.6  # another time in row 1
    per_value, per_value_grads = _time_terms_and_grads(model, jnp.asarray(times), 16, monkeypatch)
    per_token, per_token_grads = _time_terms_and_grads(model, jnp.asarray(times), 0, monkeypatch)
    assert np.abs(per_token).max() > 1e-2
    np.testing.assert_allclose(per_value, per_token, atol=1e-5, rtol=0)
    time_params = 0
    for (path, b), a in zip(jax.tree.leaves_with_path(per_token_grads), jax.tree.leaves(per_value_grads)):
        np.testing.assert_allclose(a, b, atol=1e-5 * max(1.0, float(np.abs(b).max())), rtol=0, err_msg=str(path))
        time_params += int(np.abs(b).max() > 1e-3)
    assert time_params >= 6  # time_embed_1/2 and time_proj kernels and biases all receive gradients
