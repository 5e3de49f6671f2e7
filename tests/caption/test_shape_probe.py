"""The shape probe's labels are the rendered scenes' ground truth."""
import json

import numpy as np
import pytest

from data_pipelines.shapes_world import generate_clip
from data_pipelines.shapes_world.scene import SHAPES, SIZES
from sora_jax.caption.shape_probe import main, probe_images


def test_probe_labels_match_the_clip_meta():
    seeds = range(40, 52)
    images, shapes, sizes = probe_images(seeds, 32)
    assert images.shape == (12, 32, 32, 3) and -1.0 <= images.min() and images.max() <= 1.0
    for seed, image, shape, size in zip(seeds, images, shapes, sizes):
        clip = generate_clip(seed, 1, 32, 32, max_objects=1)
        (obj,) = json.loads(clip["meta"])["objects"]
        assert (SHAPES[shape], list(SIZES)[size]) == (obj["shape"], obj["size"])
        np.testing.assert_array_equal(np.round((image + 1) * 127.5).astype(np.uint8), clip["video"][0])
    assert len(set(shapes.tolist())) >= 3  # the seeds cover several shapes


def test_probe_rejects_widths_that_do_not_reach_stride_8():
    with pytest.raises(ValueError, match="--widths"):
        main(["--widths", "8,8", "--steps", "1"])


def test_stem_front_keeps_the_images_of_a_batch_apart():
    import jax.numpy as jnp
    from flax import nnx

    from sora_jax.caption.shape_probe import Probe

    probe = Probe("stem", "pool", "max", (4, 4, 4, 4), 1, rngs=nnx.Rngs(0))
    images, _, _ = probe_images(range(3), 32)
    changed = images.copy()
    changed[0] = -changed[0]
    before, after = np.asarray(probe(jnp.asarray(images))), np.asarray(probe(jnp.asarray(changed)))
    assert np.abs(before[0] - after[0]).max() > 1e-4  # image 0's logits follow image 0
    np.testing.assert_allclose(before[1:], after[1:], atol=1e-6)  # and nothing else
