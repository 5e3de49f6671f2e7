"""The captioner: overfits a handful of clips through the real trainer (loss down >= 10x, greedy
decoding reproduces every training caption exactly), and its KV-cache decoding equals a
fixed-length recompute."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sora_jax.caption.decode import teacher_forced_greedy
from sora_jax.caption.inference import ClipCaptioner, clip_patches
from sora_jax.caption.metrics import read_records
from sora_jax.train.metrics import read_metrics
from tests.caption.conftest import OVERFIT_STEPS


@pytest.fixture(scope="module")
def captioner(overfit_workdir):
    return ClipCaptioner.from_workdir(overfit_workdir, rows=2)


def test_loss_falls_at_least_tenfold(overfit_workdir):
    records = [r for r in read_metrics(os.path.join(overfit_workdir, "metrics.jsonl")) if "loss" in r]
    losses = [r["loss"] for r in records]
    assert len(losses) == OVERFIT_STEPS and np.all(np.isfinite(losses))
    # ln(619) = 6.4 at the start (uniform over the vocabulary); memorised captions end near 0.
    assert losses[0] > 5.0 and np.mean(losses[-5:]) < losses[0] / 10, (losses[0], losses[-5:])


def test_greedy_decoding_reproduces_training_captions(captioner, overfit_dataset):
    clips = read_records(overfit_dataset, "train")
    assert len(clips) == 4
    assert captioner.caption(clips) == [clip["caption"] for clip in clips]


def test_kv_cache_decoding_equals_fixed_length_recompute(captioner, overfit_dataset):
    clips = read_records(overfit_dataset, "validation", limit=4)  # unseen clips: arbitrary outputs
    segments = [clip_patches(clip, captioner.c, i) for i, clip in enumerate(clips)]
    batch, _ = captioner._packed(segments)
    graphdef, params = nnx.split(captioner.model)
    cached = captioner._decode(batch)  # (R, S, T)
    recompute = jax.jit(lambda p, b, t: teacher_forced_greedy(nnx.merge(graphdef, p), b, t))
    reference = np.asarray(recompute(params, {k: jnp.asarray(v) for k, v in batch.items()}, jnp.asarray(cached)))
    written = np.cumsum(cached == 1, axis=-1) - (cached == 1) == 0  # up to and including the end token
    written &= batch["caption_segments"][..., None] > 0
    assert written.sum() > 20 and np.array_equal(reference[written], cached[written])


def test_temperature_sampling_is_seeded(captioner, overfit_dataset):
    clips = read_records(overfit_dataset, "validation", limit=2)
    first = captioner.caption(clips, temperature=1.5, seed=3)
    assert first == captioner.caption(clips, temperature=1.5, seed=3)
    assert first != captioner.caption(clips, temperature=1.5, seed=4)


def test_teacher_forced_attribute_words_of_memorised_clips(overfit_workdir, caption_data_root, monkeypatch):
    from sora_jax.caption.metrics import teacher_forced_attributes
    from sora_jax.train.restore import load_trained

    monkeypatch.setenv("SORA_JAX_DATA", caption_data_root)
    trained = load_trained(overfit_workdir)
    report = teacher_forced_attributes(trained.task, trained.model, "train", batches=1)
    words = report["words"]
    assert words["colour"] == words["shape"] > 0, words  # one colour and one shape per listed object
    assert report["colour"] == report["shape"] == 1.0, report  # memorised: greedy reproduces every caption


def test_teacher_forced_cli_scores_the_given_data(overfit_workdir, caption_data_root, monkeypatch, capsys):
    """`--data` swaps the run's sources for one other, packed as the run packs."""
    import json

    from sora_jax.caption.metrics import main

    monkeypatch.setenv("SORA_JAX_DATA", caption_data_root)
    main(["--workdir", overfit_workdir, "--teacher-forced", "1", "--split", "train"])
    own = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["teacher_forced"]
    main(["--workdir", overfit_workdir, "--teacher-forced", "1", "--data", "shapes_world_live:single"])
    single = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["teacher_forced"]
    assert own["colour"] == own["shape"] == 1.0  # the memorised training clips
    assert single["words"]["colour"] >= single["words"]["shape"] > 0  # listing colours include the background's
    assert single["words"] != own["words"]


def test_evaluate_captioner_scores_memorised_clips_as_right(captioner, overfit_dataset):
    """The report a run writes as `captions.json`: every attribute and every size class of the memorised
    clips right, counted over each object of their meta."""
    import json

    from sora_jax.caption.metrics import evaluate_captioner

    report = evaluate_captioner(captioner.model, captioner.c, overfit_dataset, "train", rows=2)
    objects = sum(len(json.loads(clip["meta"])["objects"]) for clip in read_records(overfit_dataset, "train"))
    assert report["clips"] == 4 and report["exact_captions"] == 1.0
    assert report["overall"] == report["colour"] == report["shape"] == 1.0, report
    assert report["counts"]["shape"] == [objects, objects]
    assert set(report["shape_by_size"].values()) == {1.0}
    assert report["motion_by_type"] and set(report["motion_by_type"].values()) == {1.0}  # the 4 clips hold videos
