"""The shape probe's labels are the rendered scenes' ground truth."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from data_pipelines.shapes_world import generate_clip
from data_pipelines.shapes_world.render import object_ids
from data_pipelines.shapes_world.scene import COLOURS, SHAPES, SIZES, sample_scene
from sora_jax.caption.shape_probe import Probe, main, patch_labels, probe_images, probe_scenes


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


def test_binding_probe_asks_about_one_object_of_each_multi_object_scene():
    seeds = range(60, 84)
    scenes = probe_scenes(seeds, 32, objects=3)
    for i, seed in enumerate(seeds):
        clip = generate_clip(seed, 1, 32, 32, max_objects=3)
        objects = json.loads(clip["meta"])["objects"]
        np.testing.assert_array_equal(np.round((scenes["images"][i] + 1) * 127.5).astype(np.uint8), clip["video"][0])
        asked = (SHAPES[scenes["shapes"][i]], list(SIZES)[scenes["sizes"][i]], list(COLOURS)[scenes["colours"][i]])
        assert asked in [(o["shape"], o["size"], o["colour"]) for o in objects]
        assert scenes["counts"][i] == len(objects) == len({o["colour"] for o in objects})  # colours name objects
    assert set(scenes["counts"].tolist()) == {1, 2, 3}


def test_colour_query_changes_the_attention_heads_answer():
    probe = Probe("stem", "attn", "max", (4, 4, 4, 4), 1, rngs=nnx.Rngs(0), query=True)
    images = jnp.asarray(probe_scenes(range(2), 32, objects=3)["images"])
    red, blue = (probe(images, jnp.full((2,), list(COLOURS).index(c))) for c in ("red", "blue"))
    assert red.shape == (2, len(SHAPES) + len(SIZES))
    assert np.abs(np.asarray(red) - np.asarray(blue)).min() > 1e-6  # every logit reads the query


def test_probe_rejects_bad_object_counts():
    with pytest.raises(ValueError, match="--objects"):
        main(["--objects", "0", "--steps", "1"])


@pytest.mark.parametrize("flags, match", [(["--single-steps", "2"], "single-steps"), (["--dense", "-1"], "--dense"),
                                          (["--qk-scale", "0"], "--qk-scale")])
def test_probe_rejects_a_curriculum_longer_than_the_run_and_negative_loss_weights_or_scales(flags, match):
    with pytest.raises(ValueError, match=match):
        main(["--objects", "3", "--steps", "2", *flags])


def test_curriculum_trains_on_one_object_images_first():
    records = main(["--front", "stem", "--head", "attn", "--widths", "16,32,64,128", "--depth", "1",
                    "--objects", "3", "--single-steps", "1", "--steps", "2", "--eval-every", "1",
                    "--batch", "2", "--side", "32", "--held-out", "4"])
    assert [(r["step"], r["train_objects"]) for r in records] == [(1, 1), (2, 3)]


def test_probe_rejects_widths_that_do_not_reach_stride_8():
    with pytest.raises(ValueError, match="--widths"):
        main(["--widths", "8,8", "--steps", "1"])


def test_stem_front_keeps_the_images_of_a_batch_apart():
    probe = Probe("stem", "pool", "max", (4, 4, 4, 4), 1, rngs=nnx.Rngs(0))
    images, _, _ = probe_images(range(3), 32)
    changed = images.copy()
    changed[0] = -changed[0]
    before, after = np.asarray(probe(jnp.asarray(images))), np.asarray(probe(jnp.asarray(changed)))
    assert np.abs(before[0] - after[0]).max() > 1e-4  # image 0's logits follow image 0
    np.testing.assert_allclose(before[1:], after[1:], atol=1e-6)  # and nothing else


def test_patch_labels_name_the_shape_each_patch_shows():
    labelled = 0
    for seed in range(12):
        scene = sample_scene(seed, 1, 64, 64, 8.0, 3)
        labels, ids = patch_labels(scene), object_ids(scene)[0]  # (8, 8), (64, 64)
        blocks = ids.reshape(8, 8, 8, 8).transpose(0, 2, 1, 3).reshape(8, 8, 64)
        for k, obj in enumerate(scene.objects):
            full = (blocks == k).all(-1)  # patches the object fills
            assert np.all(labels[full] == 1 + SHAPES.index(obj.shape))
            labelled += full.sum()
        assert np.all(labels[(blocks == -1).mean(-1) > 0.75] == 0)  # mostly background: background
    assert labelled > 10


def test_qk_scale_is_a_temperature_on_the_encoder_attention():
    def probe(qk_scale):
        return Probe("stem", "attn", "max", (16, 32, 64, 128), 2, rngs=nnx.Rngs(0), query=True, qk_scale=qk_scale)

    images, colours = jax.random.uniform(jax.random.key(1), (2, 32, 32, 3), minval=-1), jnp.array([0, 3])
    plain, sharp = probe(1.0), probe(2.0)
    before, after = np.asarray(plain(images, colours)), np.asarray(sharp(images, colours))
    for block in plain.blocks:  # the same logits with the whole factor on the query side
        block.attn.norm_q.scale[...] = jnp.full_like(block.attn.norm_q.scale[...], 4.0)
    np.testing.assert_allclose(after, np.asarray(plain(images, colours)), atol=1e-5)
    assert np.abs(after - before).max() > 1e-3  # and not the default
