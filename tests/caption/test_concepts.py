"""The captioner's concept head: per-segment max pooling of the memory and a multi-label word loss."""
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

from experiments.caption import get_config
from sora_jax.caption.model import Captioner, CaptionerConfig, concept_loss, segment_max
from sora_jax.caption.task import CaptionTask


def test_segment_max_pools_each_segment_of_its_own_row():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 10, 4)).astype(np.float32)
    ids = np.array([[1, 1, 1, 2, 2, 0, 0, 0, 0, 0], [1, 1, 2, 2, 2, 2, 3, 3, 0, 0]], np.int32)
    x[0, 5:] = 50.0  # padding holds the largest values: it must never be pooled
    queries = np.array([[1, 2, 0], [3, 1, 2]], np.int32)  # sequence order need not follow segment ids
    out = np.asarray(segment_max(jnp.asarray(x), jnp.asarray(ids), jnp.asarray(queries)))
    for b in range(2):
        for k in range(3):
            expected = x[b][ids[b] == queries[b, k]].max(0) if queries[b, k] else np.zeros(4)
            np.testing.assert_array_equal(out[b, k], expected)
    # A queried id with no tokens reads zeros, not -inf.
    absent = np.asarray(segment_max(jnp.asarray(x), jnp.asarray(ids), jnp.asarray([[3, 0, 0], [1, 0, 0]])))
    np.testing.assert_array_equal(absent[0, 0], np.zeros(4))


def test_concept_loss_against_a_reference():
    targets = np.array([[[5, 6, 5, 1, 0], [7, 1, 0, 0, 0], [0, 0, 0, 0, 0]]], np.int32)  # (1, S=3, T=5)
    logits = np.random.default_rng(1).normal(size=(1, 3, 10)).astype(np.float32)
    loss, metrics = concept_loss(jnp.asarray(logits), jnp.asarray(targets))
    per_caption = []
    for k, words in enumerate(({1, 5, 6}, {1, 7})):  # distinct words; the padding id and repeats count once
        labels = np.array([float(v in words) for v in range(10)])
        bce = np.asarray(optax.sigmoid_binary_cross_entropy(logits[0, k], labels))
        per_caption.append(bce[1:].sum() / len(words))
    np.testing.assert_allclose(float(loss), np.mean(per_caption), rtol=1e-6)  # the empty third caption is left out
    predicted = logits[0, :2] > 0
    hits = sum(predicted[k, v] for k, words in enumerate(({1, 5, 6}, {1, 7})) for v in words)
    np.testing.assert_allclose(float(metrics["concept_recall"]), hits / 5, rtol=1e-6)
    np.testing.assert_allclose(float(metrics["concept_precision"]), hits / max(predicted.sum(), 1), rtol=1e-6)
    # Confident right answers cost almost nothing.
    perfect = np.full((1, 3, 10), -20.0, np.float32)
    perfect[0, 0, [1, 5, 6]] = perfect[0, 1, [1, 7]] = 20.0
    loss, metrics = concept_loss(jnp.asarray(perfect), jnp.asarray(targets))
    assert float(loss) < 1e-6 and float(metrics["concept_recall"]) == float(metrics["concept_precision"]) == 1.0


def _batch():
    coords = np.stack(np.meshgrid(np.arange(1), np.arange(4), np.arange(4), indexing="ij"), -1).reshape(-1, 3)
    coords = np.concatenate([coords, coords[:8], np.zeros((8, 3), int)])[None].astype(np.int32)  # (1, 32, 3)
    segments = np.concatenate([np.full(16, 1), np.full(8, 2), np.zeros(8)])[None].astype(np.int32)
    tokens = jax.random.normal(jax.random.key(0), (1, 32, 2 * 8 * 8 * 3))
    targets = np.array([[[5, 6, 1, 0], [7, 8, 9, 1]]], np.int32)
    return dict(tokens=tokens, coords=jnp.asarray(coords), segment_ids=jnp.asarray(segments),
                caption_segments=jnp.asarray([[1, 2]], jnp.int32)), jnp.asarray(targets)


def test_the_concept_head_leaves_captions_unchanged_and_trains_the_encoder():
    config = dict(patch_dim=384, vocab_size=40, dim=48, heads=4, mlp_dim=96, encoder_depth=1, decoder_depth=1,
                  max_caption_len=16, patch=(2, 8, 8), attention="xla")
    batch, targets = _batch()
    inputs = jnp.zeros_like(targets)
    plain = Captioner(CaptionerConfig(**config), rngs=nnx.Rngs(0))
    detecting = Captioner(CaptionerConfig(**config, concepts=True), rngs=nnx.Rngs(0))
    forward = nnx.jit(lambda model: model.forward(batch, inputs))
    logits, concepts = forward(detecting)
    plain_logits, none = forward(plain)
    np.testing.assert_array_equal(np.asarray(plain_logits), np.asarray(logits))  # the head is created last
    assert none is None and concepts.shape == (1, 2, 40)

    def loss(model):
        return concept_loss(model.forward(batch, inputs)[1], targets)[0]

    grads = nnx.jit(nnx.grad(loss))(detecting)
    assert float(jnp.abs(grads.encoder[0].attn.to_q.kernel.value).max()) > 0  # the encoder learns from it
    assert float(jnp.abs(grads.decoder.head.kernel.value).max()) == 0  # the caption head does not


def test_concept_weight_config():
    c = get_config("tiny")
    assert c.model.concept_weight == 0.0 and not CaptionTask(c).model_config.concepts
    c.model.concept_weight = 0.5
    assert CaptionTask(c).model_config.concepts
    c.model.concept_weight = -1.0  # (ConfigDict itself refuses strings in a float field)
    with pytest.raises(ValueError, match="concept_weight must be a number >= 0"):
        CaptionTask.validate_config(c)
    old = ml_collections.ConfigDict(get_config("tiny").to_dict())
    del old.model["concept_weight"]  # workdirs written before the head existed
    assert not CaptionTask(old).model_config.concepts


def test_concept_hits_counts_held_words_among_the_top_k():
    from sora_jax.caption.metrics import concept_hits  # noqa: PLC0415

    scores = np.array([[0.1, 0.9, 0.3, 0.5], [1.0, 2.0, 3.0, 4.0], [5.0, 1.0, 1.0, 1.0]])
    held = np.array([[0, 1, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]], bool)  # top 2 both held; top 1 not held; none held
    hits, words, chance = concept_hits(scores, held)
    assert (hits, words) == (2, 3)
    assert chance == pytest.approx((2 * 2 + 1 * 1) / 4)  # k^2 / C per caption: a random ranking's hits
    rng = np.random.default_rng(0)  # and that is what random scores get on average
    held = rng.random((20000, 5)) < 0.4
    hits, words, chance = concept_hits(rng.random((20000, 5)), held)
    assert hits / words == pytest.approx(chance / words, abs=0.01)


def test_concepts_by_motion_averages_one_object_videos_by_true_motion():
    from sora_jax.caption.metrics import concepts_by_motion  # noqa: PLC0415

    def meta(frames, *motions):
        objects = [dict(size="small", colour="red", shape="square", motion=m, positions=[[0.5, 0.5]]) for m in motions]
        return dict(frames=frames, width=64, height=64, objects=objects)

    class Words:
        ids = {"falls": 2, "spins": 3, "stays": 4}  # no "moves" or "bounces": those are skipped

    probs = np.zeros((6, 6), np.float32)
    probs[:, 2] = [0.8, 0.6, 0.1, 0.9, 0.9, 0.9]  # "falls"
    probs[:, 3] = [0.0, 0.2, 0.5, 0.9, 0.9, 0.9]  # "spins"
    metas = [meta(9, "fall"), meta(9, "fall"), meta(9, "rotate"),
             meta(1, "static"),  # an image: no motion to read
             meta(9, "fall", "rotate"),  # two objects: the clip's words cannot be put on one of them
             json.dumps(meta(9, "static"))]  # metas may come as JSON text
    report = concepts_by_motion(probs, metas, Words())
    assert list(report) == ["stays", "falls", "spins"]  # the order of CONCEPT_WORDS, present words only
    assert list(report["falls"]) == ["static", "fall", "rotate"]  # the order of MOTIONS
    np.testing.assert_allclose([report["falls"][m] for m in ("static", "fall", "rotate")], [0.9, 0.7, 0.1], atol=1e-6)
    np.testing.assert_allclose([report["spins"][m] for m in ("static", "fall", "rotate")], [0.9, 0.1, 0.5], atol=1e-6)
    assert concepts_by_motion(probs[3:5], metas[3:5], Words()) == {}  # no one-object video among them


def test_concept_probabilities_of_packed_clips_equal_each_clip_alone(overfit_workdir, overfit_dataset):
    from sora_jax.caption.inference import ClipCaptioner  # noqa: PLC0415
    from sora_jax.caption.metrics import read_records  # noqa: PLC0415
    from sora_jax.train.restore import load_trained  # noqa: PLC0415

    c = load_trained(overfit_workdir).config.copy_and_resolve_references()
    with c.unlocked():
        c.model.concept_weight = 1.0
    model = CaptionTask(c).make_model()  # untrained weights: any probabilities, the same however packed
    captioner = ClipCaptioner(model, c, rows=2)
    clips = read_records(overfit_dataset, "validation", limit=5)
    packed = captioner.concept_probabilities(clips)
    assert packed.shape == (5, model.config.vocab_size) and np.all((packed > 0) & (packed < 1))
    alone = np.stack([captioner.concept_probabilities([clip], first_index=i)[0] for i, clip in enumerate(clips)])
    np.testing.assert_allclose(packed, alone, atol=1e-5)
    assert np.abs(packed[0] - packed[1]).max() > 1e-4  # and the clips do read differently
    plain = ClipCaptioner(load_trained(overfit_workdir).model, c, rows=2)
    with pytest.raises(ValueError, match="no word-detection head"):
        plain.concept_probabilities(clips)
