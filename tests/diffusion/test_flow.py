"""Rectified flow: times, shift, loss averaging and masking; samplers exact on an ideal velocity."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.diffusion.flow import FlowConfig, masked_mean, sample_times, segment_token_counts, time_shift
from sora_jax.diffusion.sampler import SamplerConfig, sample, time_grid


def test_segment_token_counts():
    ids = jnp.array([[1, 1, 1, 2, 2, 0], [1, 2, 3, 3, 3, 3]])
    np.testing.assert_array_equal(segment_token_counts(ids, 4), [[3, 2, 0, 0], [1, 1, 4, 0]])


def test_time_shift_grows_with_token_count_and_keeps_ends():
    c = FlowConfig()
    t = jnp.array([0.0, 0.25, 0.5, 0.75, 1.0])
    small, large = time_shift(t, jnp.full(5, 256), c), time_shift(t, jnp.full(5, 4096), c)
    np.testing.assert_allclose(np.asarray(small)[[0, -1]], [0.0, 1.0])
    np.testing.assert_allclose(np.asarray(large)[[0, -1]], [0.0, 1.0])
    assert (large[1:-1] > small[1:-1]).all()
    # At the base token count mu = shift_base: t' = e^0.5 t / (e^0.5 t + 1 - t).
    np.testing.assert_allclose(small[2], np.exp(0.5) * 0.5 / (np.exp(0.5) * 0.5 + 0.5), rtol=1e-6)


def test_logit_normal_times_statistics():
    c = FlowConfig(shift=False)
    t = sample_times(jax.random.key(0), jnp.zeros((200, 50)), c)
    assert 0 < float(t.min()) and float(t.max()) < 1
    np.testing.assert_allclose(float(jnp.median(t)), 0.5, atol=0.01)  # sigmoid(N(0, 1)) has median 1/2
    logits = jnp.log(t / (1 - t))
    np.testing.assert_allclose(float(logits.std()), 1.0, atol=0.02)


def test_loss_averaging_per_segment_and_per_token():
    errors = jnp.array([[1.0, 1.0, 1.0, 4.0, 0.0]])
    ids = jnp.array([[1, 1, 1, 2, 0]])
    weights = (ids > 0).astype(jnp.float32)
    assert float(masked_mean(errors, weights, ids, 3, "token")) == pytest.approx(7 / 4)
    assert float(masked_mean(errors, weights, ids, 3, "segment")) == pytest.approx((1 + 4) / 2)
    known = weights.at[0, 3].set(0.0)  # a known token carries no loss
    assert float(masked_mean(errors, known, ids, 3, "segment")) == pytest.approx(1.0)


def ideal_velocity(data):
    """The exact flow velocity towards a single data point: v(x, t) = (x - x0) / t."""

    def velocity_fn(x, t, conditional):
        del conditional
        return (x - data) / jnp.maximum(t, 1e-6)[..., None]

    return velocity_fn


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_samplers_land_exactly_on_the_data_for_the_ideal_velocity(method):
    rng = np.random.default_rng(0)
    data = jnp.asarray(rng.normal(size=(2, 12, 5)).astype(np.float32))
    ids = jnp.array([[1] * 5 + [2] * 7, [1] * 12])
    noise = jax.random.normal(jax.random.key(1), data.shape)
    out = sample(ideal_velocity(data), noise, ids, 3, SamplerConfig(steps=7, method=method), FlowConfig())
    np.testing.assert_allclose(out, data, atol=1e-4)


def test_known_tokens_are_held_and_sampling_is_deterministic():
    data = jnp.ones((1, 6, 2))
    known = jnp.array([[True, True, False, False, False, False]])
    clean = jnp.full((1, 6, 2), 7.0)
    ids = jnp.ones((1, 6), jnp.int32)
    config = SamplerConfig(steps=4, method="heun", guidance=3.0)
    run = functools.partial(sample, ideal_velocity(data), segment_ids=ids, max_segments=1, config=config,
                            flow=FlowConfig(), known_mask=known, known_tokens=clean)
    a = run(jax.random.normal(jax.random.key(5), data.shape))
    b = run(jax.random.normal(jax.random.key(5), data.shape))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0, :2], 7.0)
    np.testing.assert_allclose(a[0, 2:], 1.0, atol=1e-4)


def test_time_grid_is_per_segment_and_monotone():
    grid = time_grid(10, jnp.array([[16, 4096]]), FlowConfig())  # (11, 1, 2)
    assert grid.shape == (11, 1, 2)
    np.testing.assert_allclose(grid[0], 1.0)
    np.testing.assert_allclose(grid[-1], 0.0)
    assert (jnp.diff(grid, axis=0) <= 0).all()
    assert (grid[1:-1, 0, 1] > grid[1:-1, 0, 0]).all()  # the larger clip spends longer at high noise


@pytest.mark.parametrize("kwargs", [dict(steps=0), dict(method="rk4"), dict(guidance=-1.0)])
def test_bad_sampler_config(kwargs):
    with pytest.raises(ValueError):
        SamplerConfig(**kwargs)
