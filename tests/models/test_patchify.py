import jax.numpy as jnp
import numpy as np
import pytest

from sora_jax.models.dit.patchify import grid_coords, patchify, token_grid, unpatchify


@pytest.mark.parametrize("shape,patch", [((1, 16, 24, 3), (1, 8, 8)), ((6, 8, 4, 16), (2, 2, 2)), ((5, 6, 10, 4), (1, 2, 2))])
def test_round_trip_and_coords(shape, patch):
    array = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    tokens, coords, grid = patchify(array, patch)
    assert grid == tuple(s // p for s, p in zip(shape[:3], patch))
    assert tokens.shape == (np.prod(grid), np.prod(patch) * shape[3])
    np.testing.assert_array_equal(unpatchify(tokens, grid, patch), array)
    # Each token holds exactly the pixels of the patch at its coordinate.
    pt, ph, pw = patch
    for k in (0, len(tokens) // 2, len(tokens) - 1):
        t, h, w = coords[k]
        block = array[t * pt : (t + 1) * pt, h * ph : (h + 1) * ph, w * pw : (w + 1) * pw]
        np.testing.assert_array_equal(tokens[k], block.reshape(-1))


def test_jax_arrays_match_numpy():
    array = np.random.default_rng(1).normal(size=(4, 6, 8, 5)).astype(np.float32)
    np_tokens, _, grid = patchify(array, (2, 3, 4))
    jax_tokens, _, _ = patchify(jnp.asarray(array), (2, 3, 4))
    np.testing.assert_array_equal(np.asarray(jax_tokens), np_tokens)
    np.testing.assert_array_equal(np.asarray(unpatchify(jax_tokens, grid, (2, 3, 4))), array)


def test_coords_are_raster_order_and_unique():
    coords = grid_coords((2, 3, 4))
    assert coords.shape == (24, 3) and coords.dtype == np.int32
    assert len({tuple(c) for c in coords}) == 24
    np.testing.assert_array_equal(coords[5], [0, 1, 1])


def test_non_multiple_sizes_are_an_error():
    with pytest.raises(ValueError, match="axis h of size 10 is not a multiple of patch size 8"):
        token_grid((1, 10, 16, 3), (1, 8, 8))
    with pytest.raises(ValueError, match="do not fit grid"):
        unpatchify(np.zeros((5, 12)), (1, 2, 2), (1, 1, 1))
