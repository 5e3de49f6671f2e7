"""The generation sampler against the library one, SDEdit starts, windows and noise (no trained model)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.diffusion.flow import FlowConfig
from sora_jax.diffusion.sampler import SamplerConfig, sample
from sora_jax.generate.pipeline import noise_for, window_starts
from sora_jax.generate.sampling import integrate, shifted_grid

FLOW = FlowConfig()


def toy_velocity(x, t, conditional):
    """A smooth velocity field that depends on x, t and the text flag (so CFG changes it)."""
    return jnp.sin(x) * (1.0 + t[..., None]) + (0.3 if conditional else -0.2)


def rows(seed=0):
    rng = np.random.default_rng(seed)
    segment_ids = jnp.asarray([[1] * 6 + [2] * 4 + [0] * 2, [1] * 12])  # (2, 12): two clips + padding, one clip
    noise = jnp.asarray(rng.normal(size=(2, 12, 5)), jnp.float32)
    known = jnp.asarray(rng.random((2, 12)) < 0.3)
    known_tokens = jnp.asarray(rng.normal(size=(2, 12, 5)), jnp.float32)
    return segment_ids, 2, noise, known, known_tokens


@pytest.mark.parametrize("method,guidance", [("euler", 1.0), ("heun", 1.0), ("heun", 2.5)])
def test_integrate_from_noise_is_the_library_sampler(method, guidance):
    segment_ids, max_segments, noise, known, known_tokens = rows()
    config = SamplerConfig(steps=5, method=method, guidance=guidance)
    ours = integrate(toy_velocity, noise, segment_ids, max_segments, config, FLOW, known, known_tokens)
    theirs = sample(toy_velocity, noise, segment_ids, max_segments, config, FLOW, known, known_tokens)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    # A zero clean latent at start_time 1 starts from the noise itself, so it changes nothing either.
    mixed = integrate(toy_velocity, noise, segment_ids, max_segments, config, FLOW, known, known_tokens,
                      clean=jnp.zeros_like(noise), start_time=jnp.ones((2, max_segments)))
    np.testing.assert_array_equal(np.asarray(mixed), np.asarray(theirs))


def test_sdedit_starts_from_the_noised_clean_latent():
    segment_ids, max_segments, noise, _, _ = rows()
    clean = jnp.full_like(noise, 0.5)
    counts = jnp.array([[6, 4], [12, 0]])
    grid = shifted_grid(4, counts, FLOW, start_time=0.4)  # (5, 2, 2)
    assert np.all(np.diff(np.asarray(grid), axis=0) <= 0) and np.allclose(grid[-1], 0.0)
    # The first time is the shift of 0.4 for each segment's size: e^mu 0.4 / (e^mu 0.4 + 0.6).
    slope = (FLOW.shift_max - FLOW.shift_base) / (FLOW.shift_max_tokens - FLOW.shift_base_tokens)
    mu = FLOW.shift_base + slope * (6 - FLOW.shift_base_tokens)
    assert float(grid[0, 0, 0]) == pytest.approx(np.exp(mu) * 0.4 / (np.exp(mu) * 0.4 + 0.6), rel=1e-5)
    # With a zero velocity the output is the start state: (1 - t0) clean + t0 noise on real tokens.
    still = integrate(lambda x, t, c: jnp.zeros_like(x), noise, segment_ids, max_segments, SamplerConfig(steps=4),
                      FLOW, clean=clean, start_time=0.4)
    t0 = np.asarray(grid[0, 0, 0])
    np.testing.assert_allclose(np.asarray(still)[0, :6], (1 - t0) * 0.5 + t0 * np.asarray(noise)[0, :6], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(still)[0, 10:], np.asarray(noise)[0, 10:])  # padding untouched


def test_window_starts_cover_with_overlap_and_one_shape():
    assert window_starts(7, 9, 3) == [0]
    assert window_starts(30, 9, 3) == [0, 6, 12, 18, 21]
    for total, window, overlap in [(30, 9, 3), (17, 5, 1), (10, 4, 3), (9, 8, 1)]:
        starts = window_starts(total, window, overlap)
        assert starts[0] == 0 and starts[-1] + window == total
        assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:]))


def test_noise_depends_on_seed_and_window_only():
    a = noise_for(3, 0, (16, 12))
    assert a.dtype == np.float32 and abs(float(a.mean())) < 0.3 and 0.7 < float(a.std()) < 1.3
    np.testing.assert_array_equal(a, noise_for(3, 0, (16, 12)))
    assert not np.allclose(a, noise_for(4, 0, (16, 12))) and not np.allclose(a, noise_for(3, 1, (16, 12)))
    assert jax.numpy.asarray(a).shape == (16, 12)
