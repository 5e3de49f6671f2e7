"""Live Shapes World: records rendered on demand equal the built dataset's, and feed the pipelines."""
import json

import numpy as np
import pytest

from data_pipelines import pipeline
from data_pipelines.clips import ClipBatchConfig, build_clip_batches
from data_pipelines.shapes_world.builder import VALIDATION_SEED_OFFSET
from data_pipelines.shapes_world.live import TEST_CLIPS, TEST_SEED_OFFSET, LiveShapesWorld
from data_pipelines.sources import DecodeOptions, _text, clip_decoder, open_source
from sora_jax.text.tokenizers import get_tokenizer
from tests.data_pipelines.test_pipeline import make_config

LIVE = "shapes_world_live:tiny"


@pytest.mark.parametrize("split", ["train", "validation"])
def test_live_records_equal_the_built_records(tiny_shapes_world, split):
    built, built_name = open_source(tiny_shapes_world, split)
    live, live_name = open_source(LIVE, split)
    assert live_name == built_name == "shapes_world"
    decode = clip_decoder("shapes_world", DecodeOptions())
    offset = VALIDATION_SEED_OFFSET if split == "validation" else 0
    for index in (0, 1, 7, len(built) - 1):  # TFDS stores records shuffled: match them by seed
        a = decode(built[index])
        b = decode(live[json.loads(a["meta"])["seed"] - offset])
        np.testing.assert_array_equal(a["video"], b["video"])
        for key in ("caption_short", "caption", "meta"):
            assert a[key] == b[key], (index, key)
    assert len(live) == (VALIDATION_SEED_OFFSET if split == "train" else len(built))


def test_live_source_feeds_the_packed_pipeline():
    c = make_config([LIVE])
    source, _ = open_source(LIVE, "train")
    tokenizer = get_tokenizer("bytes")
    batch = next(iter(pipeline.build(c)))
    records = set()
    for row in range(batch["segment_ids"].shape[0]):
        for k in range(1, int(batch["segment_ids"][row].max()) + 1):
            text = tokenizer.decode(batch["text_tokens"][row][batch["text_segment_ids"][row] == k])
            _, record = batch["segment_record"][row, k - 1]
            assert len(text) > 0 and text == _text(source[int(record)]["caption"])[: len(text)]
            records.add(int(record))
    assert len(records) >= 2 and max(records) > 1000  # shuffled over the whole seed range


def test_live_source_feeds_the_vae_batches():
    batch = next(iter(build_clip_batches(ClipBatchConfig(sources=(LIVE,), frames=5, size=32, batch_size=2))))
    assert batch["video"].shape == (2, 5, 32, 32, 3) and batch["video"].std() > 5


def test_single_config_shows_one_object_per_clip():
    """The captioner's curriculum config: every clip one object, at the config's sizes; the same seed
    under `tiny` (up to 3 objects) shows more than one object often."""
    single, tiny = LiveShapesWorld("single", "train"), LiveShapesWorld("tiny", "train")
    counts = [len(json.loads(single[i]["meta"])["objects"]) for i in range(40)]
    assert counts == [1] * 40
    assert sum(len(json.loads(tiny[i]["meta"])["objects"]) > 1 for i in range(40)) >= 10
    shapes = {single[i]["video"].shape for i in range(40)}
    assert {s[0] for s in shapes} == {1, 9, 17} and min(min(s[1:3]) for s in shapes) >= 48


def test_bad_live_specs_are_named():
    with pytest.raises(ValueError, match="known configs"):
        LiveShapesWorld("huge", "train")
    with pytest.raises(ValueError, match=r"available: \['train', 'validation', 'test'\]"):
        open_source(LIVE, "holdout")


def test_encode_rejects_a_live_source(tmp_path):
    from sora_jax.encode.job import EncodeConfig, run_encode  # noqa: PLC0415

    with pytest.raises(ValueError, match="has no end"):
        run_encode(EncodeConfig(vae_workdir=str(tmp_path / "vae"), data=LIVE, out=str(tmp_path / "out")))


def test_test_split_is_held_out_from_train_and_validation():
    """The live-only `test` split: many clips whose seeds no train or validation record uses."""
    test, validation = LiveShapesWorld("tiny", "test"), LiveShapesWorld("tiny", "validation")
    train = LiveShapesWorld("tiny", "train")
    assert len(test) == TEST_CLIPS and test.seeds[0] == TEST_SEED_OFFSET
    assert test.seeds[0] > validation.seeds[-1] and test.seeds[0] > train.seeds[-1]  # ranges: last = largest
    seeds = [json.loads(test[i]["meta"])["seed"] for i in (0, 5)]
    assert seeds == [TEST_SEED_OFFSET, TEST_SEED_OFFSET + 5]
    source, _ = open_source(LIVE, "test")
    assert len(source) == TEST_CLIPS
