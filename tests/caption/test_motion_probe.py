"""The motion probe's clips and labels are the rendered scenes' ground truth, and its encoder is the captioner's."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from data_pipelines.shapes_world import generate_clip
from data_pipelines.shapes_world.scene import COLOURS, MOTIONS
from sora_jax.caption.motion_probe import MotionProbe, confusion, main, probe_clips
from sora_jax.models.dit.patchify import unpatchify


@pytest.mark.parametrize("pt", [1, 2])
def test_probe_clips_are_the_rendered_clips_and_their_motions(pt):
    seeds = range(70, 82)
    clips = probe_clips(seeds, 4, 32, pt, objects=2)
    assert clips["tokens"].shape == (12, (4 // pt) * 16, pt * 8 * 8 * 3)
    assert clips["coords"][0, -1].tolist() == [4 // pt - 1, 3, 3]
    for i, seed in enumerate(seeds):
        clip = generate_clip(seed, 4, 32, 32, max_objects=2)
        video = unpatchify(clips["tokens"][i], (4 // pt, 4, 4), (pt, 8, 8))  # (4, 32, 32, 3)
        np.testing.assert_array_equal(np.round((video + 1) * 127.5).astype(np.uint8), clip["video"])
        objects = json.loads(clip["meta"])["objects"]
        asked = (MOTIONS[clips["motions"][i]], list(COLOURS)[clips["colours"][i]])
        assert asked in [(o["motion"], o["colour"]) for o in objects]
        assert clips["counts"][i] == len(objects)
    assert len(set(clips["motions"].tolist())) >= 3  # the seeds cover several motions


def test_probe_reads_every_frame_and_the_asked_colour():
    probe = MotionProbe(1, rngs=nnx.Rngs(0), depth=1, identity_init=False, query_colour=True)
    clips = probe_clips(range(2), 4, 32, 1, objects=3)
    tokens, coords = jnp.asarray(clips["tokens"]), jnp.asarray(clips["coords"])
    red, blue = (probe(tokens, coords, jnp.full((2,), list(COLOURS).index(c))) for c in ("red", "blue"))
    assert red.shape == (2, len(MOTIONS))
    assert np.abs(np.asarray(red) - np.asarray(blue)).min() > 1e-6
    late = tokens.at[:, -16:].set(0.0)  # blank the last frame: the answer must change
    assert np.abs(np.asarray(probe(late, coords, jnp.zeros((2,), jnp.int32)))
                  - np.asarray(probe(tokens, coords, jnp.zeros((2,), jnp.int32)))).max() > 1e-6


def test_confusion_counts_every_clip_under_its_true_motion():
    truth = np.array([0, 0, 3, 3, 3, 4])
    predicted = np.array([0, 1, 2, 2, 1, 0])
    table = confusion(truth, predicted)
    assert table == {"static": {"static": 1, "linear": 1}, "fall": {"linear": 1, "bounce": 2}, "rotate": {"static": 1}}
    assert sum(sum(row.values()) for row in table.values()) == len(truth)


@pytest.mark.parametrize("flags, match", [(["--frames", "5", "--pt", "2"], "multiple"),
                                          (["--objects", "0"], "--objects")])
def test_probe_rejects_frames_that_do_not_fit_the_patch_and_bad_object_counts(flags, match):
    with pytest.raises(ValueError, match=match):
        main(["--steps", "1", *flags])


def test_max_head_pools_the_memory_and_refuses_a_colour_query():
    probe = MotionProbe(2, rngs=nnx.Rngs(0), depth=1, identity_init=False, head="max")
    clips = probe_clips(range(3), 4, 32, 2)
    tokens, coords = jnp.asarray(clips["tokens"]), jnp.asarray(clips["coords"])
    colours = jnp.zeros((3,), jnp.int32)
    memory = probe.captioner.encode(tokens, coords, jnp.ones(tokens.shape[:2], jnp.int32))  # (3, L, 128)
    np.testing.assert_allclose(np.asarray(probe(tokens, coords, colours)), np.asarray(probe.out(memory.max(axis=1))),
                               atol=1e-6)
    with pytest.raises(ValueError, match="--head max"):
        MotionProbe(2, rngs=nnx.Rngs(0), depth=1, head="max", query_colour=True)
