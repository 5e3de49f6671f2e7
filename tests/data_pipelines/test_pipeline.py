"""The Grain patch-n-pack pipeline: every token exactly once, valid rows, exact resume, disjoint shards."""
import collections
import functools
import hashlib

import numpy as np
import pytest

from data_pipelines import config as data_config
from data_pipelines import pipeline
from data_pipelines.sources import open_source
from sora_jax.text.tokenizers import get_tokenizer


def make_config(sources, **overrides):
    c = data_config.get_data_config()
    c.sources = list(sources)
    c.seq_len = c.max_tokens_per_clip = 256
    c.text_len = 512
    c.max_text_tokens = 96
    c.batch_size = 2
    c.packing_bins = 8
    c.max_frames = 9
    for key, value in overrides.items():
        setattr(c, key, value)
    return c


def token_multiset(batches) -> collections.Counter:
    """(source, record, t, h, w, token digest) of every real token in packed batches."""
    seen = collections.Counter()
    for batch in batches:
        for row in range(batch["segment_ids"].shape[0]):
            ids = batch["segment_ids"][row]
            for pos in np.flatnonzero(ids):
                source, record = batch["segment_record"][row, ids[pos] - 1]
                digest = hashlib.md5(batch["tokens"][row, pos].tobytes()).hexdigest()
                seen[(int(source), int(record), *map(int, batch["coords"][row, pos]), digest)] += 1
    return seen


def prepared_multiset(c, split="train") -> collections.Counter:
    """The same multiset from the per-clip stage before packing (the reference)."""
    source, _ = open_source(c.sources[0], split)
    tokenizer = get_tokenizer(c.tokenizer)
    ds = pipeline._source_dataset(0, c.sources[0], c, split, 0, 1)
    prepare = pipeline._prepare_pixels if c.mode == "pixel" else pipeline._prepare_latents
    ds = ds.seed(c.seed).random_map(functools.partial(prepare, c=c, tokenizer=tokenizer))
    seen = collections.Counter()
    for element in ds:
        for coord, token in zip(element["coords"], element["tokens"]):
            seen[(*map(int, element["record"]), *map(int, coord), hashlib.md5(token.tobytes()).hexdigest())] += 1
    return seen


@pytest.mark.parametrize("mode", ["pixel", "latent"])
def test_packing_keeps_every_token_exactly_once(mode, request):
    if mode == "pixel":
        c = make_config([request.getfixturevalue("tiny_shapes_world")], num_epochs=1)
    else:
        c = make_config([request.getfixturevalue("tiny_latents")], num_epochs=1, mode="latent", patch=(1, 2, 2), seq_len=64, max_tokens_per_clip=64)
    batches = list(pipeline.build(c))
    reference = prepared_multiset(c)
    assert sum(reference.values()) > 0
    assert token_multiset(batches) == reference
    records = {(s, r) for (s, r, *_rest) in reference}
    assert len(records) == len(open_source(c.sources[0], "train")[0])  # one pass sees every record


def test_rows_are_valid_packed_rows(tiny_shapes_world):
    c = make_config([tiny_shapes_world], num_epochs=1)
    tokenizer = get_tokenizer("bytes")
    source, _ = open_source(tiny_shapes_world, "train")
    for batch in pipeline.build(c):
        B, L = batch["segment_ids"].shape
        assert batch["tokens"].shape == (B, L, 8 * 8 * 3) and batch["coords"].shape == (B, L, 3)
        np.testing.assert_array_equal(batch["loss_mask"], batch["segment_ids"] > 0)
        for row in range(B):
            ids = batch["segment_ids"][row]
            used = ids[ids > 0]
            # Segments are contiguous, numbered 1..n in order, and padding only trails.
            assert (np.diff(ids[: len(used)]) >= 0).all() and (ids[len(used):] == 0).all()
            n = int(used.max())
            np.testing.assert_array_equal(np.unique(used), np.arange(1, n + 1))
            assert n <= c.max_segments_per_row
            grids = batch["segment_grid"][row]
            for k in range(1, n + 1):
                assert (ids == k).sum() == grids[k - 1].prod()  # grid matches token count
                text = tokenizer.decode(batch["text_tokens"][row][batch["text_segment_ids"][row] == k])
                s, r = batch["segment_record"][row, k - 1]
                assert text == source[int(r)]["caption"].decode()[: len(text)] and len(text) > 0
            assert (grids[n:] == 0).all() and (batch["segment_record"][row, n:] == -1).all()
            np.testing.assert_array_equal(np.unique(batch["text_segment_ids"][row]), np.arange(0, n + 1))


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


@pytest.mark.parametrize("workers", [0, 2])
def test_iterator_state_restores_exact_following_batches(workers, tiny_shapes_world):
    c = make_config([tiny_shapes_world], worker_count=workers)
    it = iter(pipeline.build(c))
    take(it, 3)
    state = it.get_state()
    expected = take(it, 4)
    resumed = iter(pipeline.build(c))
    resumed.set_state(state)
    assert_batches_equal(take(resumed, 4), expected)


def test_pipeline_is_deterministic_and_seed_dependent(tiny_shapes_world):
    first = take(iter(pipeline.build(make_config([tiny_shapes_world]))), 2)
    again = take(iter(pipeline.build(make_config([tiny_shapes_world]))), 2)
    other = take(iter(pipeline.build(make_config([tiny_shapes_world], seed=1))), 2)
    assert_batches_equal(first, again)
    assert not np.array_equal(first[0]["segment_record"], other[0]["segment_record"])


def test_process_shards_are_disjoint_and_complete(tiny_shapes_world):
    count = 3
    shards = []
    for index in range(count):
        c = make_config([tiny_shapes_world], num_epochs=1)
        records = set()
        for batch in pipeline.build(c, process_index=index, process_count=count):
            used = batch["segment_record"][batch["segment_record"][..., 0] >= 0]  # (n, 2)
            records |= {int(r) for r in used[:, 1]}
        shards.append(records)
    total = len(open_source(tiny_shapes_world, "train")[0])
    assert sum(len(s) for s in shards) == total
    assert set.union(*shards) == set(range(total))
    for i in range(count):
        for j in range(i + 1, count):
            assert not shards[i] & shards[j]


def test_bad_config_values_are_named(tiny_shapes_world):
    with pytest.raises(ValueError, match="max_tokens_per_clip"):
        pipeline.build(make_config([tiny_shapes_world], max_tokens_per_clip=4096))
    with pytest.raises(ValueError, match="sources is empty"):
        pipeline.build(make_config([]))
    with pytest.raises(ValueError, match="mode must be one of"):
        pipeline.build(make_config([tiny_shapes_world], mode="pixels"))
    with pytest.raises(FileNotFoundError, match="not a built dataset"):
        pipeline.build(make_config(["/nonexistent/dir"]))
    with pytest.raises(ValueError, match="process_index"):
        pipeline.build(make_config([tiny_shapes_world]), process_index=2, process_count=2)
    with pytest.raises(ValueError, match="max_segments_per_row must be in 1..256"):
        pipeline.build(make_config([tiny_shapes_world], max_segments_per_row=257))


def test_row_segment_bound_matches_the_packed_attention_layout():
    from data_pipelines.config import MAX_SEGMENTS_PER_ROW  # noqa: PLC0415
    from sora_jax.models.attention import MAX_PACKED_SEGMENTS  # noqa: PLC0415

    assert MAX_SEGMENTS_PER_ROW == MAX_PACKED_SEGMENTS


def test_known_first_frames_for_image_to_video(tiny_shapes_world):
    c = make_config([tiny_shapes_world], num_epochs=1, known_first_frame_prob=1.0)
    conditioned = 0
    for batch in pipeline.build(c):
        assert batch["known_mask"].dtype == bool
        for row in range(batch["segment_ids"].shape[0]):
            ids, known, t = batch["segment_ids"][row], batch["known_mask"][row], batch["coords"][row, :, 0]
            assert not known[ids == 0].any()
            for k in range(1, ids.max() + 1):
                seg = ids == k
                if t[seg].max() > 0:  # videos: exactly their first token frame is known
                    np.testing.assert_array_equal(known[seg], t[seg] == 0)
                    conditioned += 1
                else:  # images are never conditioned on themselves
                    assert not known[seg].any()
    assert conditioned > 10
    plain = next(iter(pipeline.build(make_config([tiny_shapes_world]))))
    assert not plain["known_mask"].any()
