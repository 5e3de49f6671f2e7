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
