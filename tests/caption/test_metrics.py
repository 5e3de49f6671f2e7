"""The accuracy metric on hand-written captions against hand-written meta, and on the grammar's own
captions (which must score exactly 1)."""
import json

import pytest

from data_pipelines.shapes_world import generate_clip
from sora_jax.caption.metrics import (agreement, motion_by_type, motion_of, parse_caption, score_caption, shape_by_size,
                                      summarize)


def meta(*objects, frames=9):
    """Meta of a 48x32 clip; an object's optional fifth entry is its first (x, y), else the centre."""
    keys = ("size", "colour", "shape", "motion")
    listed = [dict(zip(keys, obj)) | {"positions": [obj[4] if len(obj) > 4 else (24, 16)]} for obj in objects]
    return json.dumps({"frames": frames, "width": 48, "height": 32, "objects": listed})


VIDEO = meta(("small", "red", "circle", "linear"), ("large", "blue", "star", "bounce"))
RIGHT = ("A small red circle and a large blue star on a plain black background. The red circle moves quickly "
         "left to right. The blue star moves downward and bounces off the bottom wall at frame 4. "
         "The camera does not move.")


def test_a_correct_caption_scores_one_whatever_its_object_order():
    assert agreement(RIGHT, VIDEO) == {"size": [2, 2], "colour": [2, 2], "shape": [2, 2], "motion": [2, 2],
                                       "objects": [1, 1], "placement": [0, 0]}
    swapped = ("A large blue star and a small red circle on a plain black background. The blue star moves "
               "downward and bounces off the bottom wall at frame 4. The red circle moves left to right.")
    assert agreement(swapped, VIDEO)["colour"] == [2, 2] and agreement(swapped, VIDEO)["motion"] == [2, 2]


def test_each_wrong_attribute_costs_exactly_one():
    wrong_colour = RIGHT.replace("red", "green")
    assert agreement(wrong_colour, VIDEO) | {} == {"size": [2, 2], "colour": [1, 2], "shape": [2, 2],
                                                   "motion": [2, 2], "objects": [1, 1], "placement": [0, 0]}
    wrong_motion = RIGHT.replace("moves downward and bounces off the bottom wall at frame 4", "spins clockwise in place")
    assert agreement(wrong_motion, VIDEO)["motion"] == [1, 2]
    report = summarize([agreement(wrong_colour, VIDEO), agreement(RIGHT, VIDEO)])
    assert report["colour"] == 3 / 4 and report["overall"] == (3 + 4 + 4) / 12


def test_missing_and_invented_objects_are_counted():
    missing = "A small red circle on a plain black background. The red circle moves left to right."
    assert agreement(missing, VIDEO) == {"size": [1, 2], "colour": [1, 2], "shape": [1, 2], "motion": [1, 2],
                                         "objects": [0, 1], "placement": [0, 0]}
    invented = RIGHT.replace("and a large blue star", ", a large blue star and a small pink hexagon")
    assert agreement(invented, VIDEO)["colour"] == [2, 3] and agreement(invented, VIDEO)["objects"] == [0, 1]
    assert agreement("", VIDEO)["colour"] == [0, 2]


def test_motion_words_of_the_grammar():
    assert motion_of("moves slowly upward") == "linear"
    assert motion_of("moves quickly right to left and bounces off the left wall at frame 3") == "bounce"
    assert motion_of("moves downward but the clip ends before it bounces") == "bounce"
    assert motion_of("falls and bounces twice on the floor (at frames 3 and 7)") == "fall"
    assert motion_of("spins counterclockwise while drifting upward") == "rotate"
    assert motion_of("stays still in the top left") == "static"
    assert motion_of("passes behind the red circle from frame 2 to 5.") is None


def test_shape_by_size_counts_each_meta_object_once_under_its_own_size():
    clip = meta(("small", "red", "circle", "linear"), ("large", "blue", "star", "bounce"),
                ("small", "green", "square", "static"))
    assert shape_by_size(RIGHT, clip) == {"small": [1, 2], "large": [1, 1]}  # the green square is left out
    wrong = RIGHT.replace("blue star", "blue hexagon")
    assert shape_by_size(wrong, clip) == {"small": [1, 2], "large": [0, 1]}
    invented = RIGHT.replace("and a large blue star", ", a large blue star and a small pink hexagon")
    assert shape_by_size(invented, VIDEO) == {"small": [1, 1], "large": [1, 1]}  # inventions cost shape, not here
    report = summarize([shape_by_size(RIGHT, clip), shape_by_size(wrong, clip)])
    assert report["small"] == 2 / 4 and report["large"] == 1 / 2
    # One parse and one matching give all three: the hexagon is paired with the star (colour, size and
    # motion right, shape wrong), the unnamed square costs every attribute, its placement and the count.
    assert score_caption(wrong, clip) == (
        {"size": [2, 3], "colour": [2, 3], "shape": [1, 3], "motion": [2, 3], "objects": [0, 1], "placement": [0, 1]},
        {"small": [1, 2], "large": [0, 1]},
        {"linear": [1, 1], "bounce": [1, 1], "static": [0, 1]},
    )


def test_motion_by_type_counts_each_video_object_under_its_true_motion():
    clip = meta(("small", "red", "circle", "linear"), ("large", "blue", "star", "bounce"),
                ("small", "green", "square", "fall"))
    assert motion_by_type(RIGHT, clip) == {"linear": [1, 1], "bounce": [1, 1], "fall": [0, 1]}  # square left out
    spun = RIGHT.replace("moves downward and bounces off the bottom wall at frame 4", "spins clockwise in place")
    assert motion_by_type(spun, clip) == {"linear": [1, 1], "bounce": [0, 1], "fall": [0, 1]}
    image = meta(("medium", "cyan", "hexagon", "static"), frames=1)
    assert motion_by_type("A medium cyan hexagon on a plain brown background.", image) == {}


def test_images_are_not_scored_on_motion():
    image = meta(("medium", "cyan", "hexagon", "static"), frames=1)
    caption = "A medium cyan hexagon on a plain brown background. The cyan hexagon is in the centre."
    assert agreement(caption, image) == {"size": [1, 1], "colour": [1, 1], "shape": [1, 1], "objects": [1, 1],
                                         "placement": [1, 1]}
    assert parse_caption(caption) == [{"size": "medium", "colour": "cyan", "shape": "hexagon", "motion": None,
                                       "placement": "in the centre"}]


def test_placement_is_scored_where_the_caption_states_it():
    clip = meta(("small", "red", "circle", "static", (40, 4)), ("large", "blue", "star", "linear", (5, 30)))
    right = ("A small red circle and a large blue star on a plain black background. The red circle stays still "
             "in the top right. The blue star moves upward.")
    assert agreement(right, clip)["placement"] == [1, 1] and agreement(right, clip)["motion"] == [2, 2]
    wrong = right.replace("in the top right", "on the left")
    assert agreement(wrong, clip)["placement"] == [0, 1] and agreement(wrong, clip)["motion"] == [2, 2]
    image = meta(("small", "red", "circle", "static", (3, 16)), ("large", "blue", "star", "static", (24, 30)),
                 frames=1)
    caption = ("A small red circle and a large blue star on a plain black background. The red circle is on the "
               "left. The blue star is in the centre.")
    assert agreement(caption, image)["placement"] == [1, 2]  # the star sits at the bottom
    assert agreement(caption, image)["colour"] == [2, 2]


@pytest.mark.parametrize("frames", [1, 9, 17])
def test_reference_captions_score_exactly_one(frames):
    counts = [agreement(clip["caption"], clip["meta"]) for clip in
              (generate_clip(seed, frames, 32, 48, max_objects=6) for seed in range(40))]
    report = summarize(counts)
    assert report["overall"] == 1.0 and report["size"] == 1.0 and report["objects"] == 1.0
    assert report["placement"] == 1.0 and report["counts"]["placement"][1] > 10


def test_teacher_forced_attributes_needs_the_word_tokenizer():
    from types import SimpleNamespace

    from sora_jax.caption.metrics import teacher_forced_attributes, word_class_ids
    from sora_jax.caption.vocab import caption_tokenizer
    from sora_jax.text.tokenizers import get_tokenizer

    with pytest.raises(ValueError, match="needs the word tokenizer"):
        teacher_forced_attributes(SimpleNamespace(tokenizer=get_tokenizer("bytes")), None)
    ids = word_class_ids(caption_tokenizer("words"))
    from data_pipelines.shapes_world import COLOURS, SHAPES

    assert [len(ids[k]) for k in ("colour", "shape", "motion")] == [len(COLOURS), len(SHAPES), 4]
