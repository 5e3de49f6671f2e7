"""Frozen text encoders in DiT training: caption embeddings computed once by `sora-jax encode
--text-encoder minilm`, stored in the latent records, packed into rows, fed to the DiT, and the
same encoder used for prompts at generation.

Fixtures (module scope): a 6-clip Shapes World (5 frames of 16x16, one shape so the VAE compiles
once), a freshly initialised tiny VAE, the encode job with MiniLM at `max_len` 32 (so detailed
captions are truncated), and a 2-step latent-mode DiT run on the records.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from data_pipelines import pipeline
from data_pipelines.config import get_data_config
from data_pipelines.sources import open_source
from sora_jax.diffusion.flow import FlowConfig, flow_loss
from sora_jax.text.interface import CaptionEmbedder, get_text_encoder

MAX_LEN = 32  # MiniLM truncation in these tests: Shapes World's detailed captions are longer
FP16_RTOL = 2.0**-11  # float16 rounding to nearest: relative error at most half an ulp (10-bit mantissa)
FP16_ATOL = 2.0**-25  # half the spacing of float16 subnormals, for values near zero


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> str:
    """6 Shapes World clips (4 train, 2 validation), all 5x16x16: one VAE program."""
    import tensorflow_datasets as tfds

    from data_pipelines.shapes_world.builder import ShapesWorld, ShapesWorldConfig

    config = ShapesWorldConfig(name="precomputed_test", num_train=4, num_validation=2, short_sides=(16,),
                               frame_counts=(5,), image_fraction=0.0, aspects=(1.0,), max_side=16)
    builder = ShapesWorld(config=config, data_dir=str(tmp_path_factory.mktemp("clips")), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return str(builder.data_path)


@pytest.fixture(scope="module")
def encoded(clips, tmp_path_factory) -> str:
    """The latents dataset of `clips` with MiniLM caption embeddings; returns its directory."""
    from sora_jax.encode.job import EncodeConfig, run_encode
    from sora_jax.train.config import load_config
    from sora_jax.train.restore import init_workdir

    vae = init_workdir(load_config("experiments/vae.py:tiny"), str(tmp_path_factory.mktemp("vae")))
    out = str(tmp_path_factory.mktemp("latents"))
    run_encode(EncodeConfig(vae_workdir=vae, data=clips, out=out, batch_size=4, text_encoder="minilm",
                            text_max_len=MAX_LEN), log=lambda *a: None)
    return out


@pytest.fixture(scope="module")
def encoder():
    return get_text_encoder("minilm", max_len=MAX_LEN, batch_size=4)


def records(out: str, split: str) -> list[dict]:
    source, _ = open_source(out, split)
    return [source[i] for i in range(len(source))]


def text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def data_config(out: str, **overrides):
    c = get_data_config()
    c.update(dict(sources=[out], mode="latent", patch=(1, 2, 2), seq_len=16, max_tokens_per_clip=16, batch_size=2,
                  shuffle=False, num_epochs=1, max_text_tokens=MAX_LEN, text_len=128, packing_bins=2,
                  text_encoder="minilm"))
    c.update(overrides)
    return c


def assert_fp16_of(stored: np.ndarray, reference: np.ndarray) -> None:
    """`stored` (float16) is `reference` (float32) rounded to float16, elementwise."""
    assert stored.dtype == np.float16 and stored.shape == reference.shape
    error = np.abs(stored.astype(np.float32) - reference)
    assert np.all(error <= FP16_RTOL * np.abs(reference) + FP16_ATOL), float(error.max())


def test_encode_stores_the_encoders_embeddings_of_the_real_tokens(encoded, encoder):
    with open(os.path.join(pipeline.resolve_source(encoded), "latent_info.json")) as f:
        info = json.load(f)["text_encoder"]
    assert info == {"spec": "minilm", "name": "minilm", "dim": 384, "max_len": MAX_LEN, "dtype": "float16",
                    "fields": ["caption_embedding", "caption_short_embedding"]}
    stored = records(encoded, "train") + records(encoded, "validation")
    assert len(stored) == 6
    lengths = []
    for key in ("caption", "caption_short"):
        captions = [text(r[key]) for r in stored]
        reference, mask = encoder.encode(captions)  # (6, 32, 384), (6, 32)
        ids, _ = encoder.tokenize(captions)
        for record, row, row_mask, row_ids in zip(stored, reference, mask, ids):
            n = int(row_mask.sum())
            assert record[f"{key}_embedding"].shape == (n, 384)  # n = the caption's token count
            assert_fp16_of(record[f"{key}_embedding"], row[:n])
            assert row_ids[n - 1] == encoder.tokenizer._tokenizer.token_to_id("[SEP]")  # truncated, [SEP] kept
            lengths.append(n)
    assert max(lengths) == MAX_LEN and min(lengths) < MAX_LEN  # some detailed captions were cut, short ones not


def test_packed_rows_carry_each_records_embeddings(encoded):
    stored = records(encoded, "train")
    rows = 0
    for batch in pipeline.build(data_config(encoded), "train"):
        assert "text_tokens" not in batch and batch["text_embeddings"].dtype == np.float16
        for row in range(len(batch["segment_ids"])):
            text_ids = batch["text_segment_ids"][row]
            for k, (_, index) in enumerate(batch["segment_record"][row], start=1):
                if index < 0:
                    continue
                np.testing.assert_array_equal(batch["text_embeddings"][row][text_ids == k],
                                              stored[index]["caption_embedding"])
            assert not batch["text_embeddings"][row][text_ids == 0].any()  # padding is zero
            rows += 1
    assert rows >= 1


def test_pixel_mode_computes_the_same_embeddings_in_the_pipeline(clips, encoded):
    c = data_config(clips, mode="pixel", patch=(1, 8, 8), seq_len=64, max_tokens_per_clip=64, text_len=256)
    batch = next(iter(pipeline.build(c, "train")))
    source = records(encoded, "train")  # the same clips, embedded by the encode job
    by_caption = {text(r["caption"]): r["caption_embedding"] for r in source}
    clip_source, _ = open_source(clips, "train")
    row, k = 0, 1
    index = int(batch["segment_record"][row, k - 1, 1])
    got = batch["text_embeddings"][row][batch["text_segment_ids"][row] == k]  # (n, 384) float16
    want = by_caption[text(clip_source[index]["caption"])]
    assert got.shape == want.shape
    # Same encoder, other batch rows and length bucket: equal up to float32 noise, so one fp16 ulp.
    np.testing.assert_allclose(got.astype(np.float32), want.astype(np.float32), rtol=2 * FP16_RTOL, atol=1e-6)
    embedder = pickle.loads(pickle.dumps(CaptionEmbedder("minilm", MAX_LEN)))  # what a Grain worker gets
    assert embedder._encoder is None and embedder.dim == 384 and embedder.max_len == MAX_LEN


def tiny_run_config(out: str):
    """`tiny_latent_minilm` shrunk to a 32-wide one-block DiT on the test records (8 rows of 16 tokens)."""
    from sora_jax.train.config import load_config

    return load_config("experiments/pretrain.py:tiny_latent_minilm", [
        "model.overrides={'dim': 32, 'depth': 1, 'heads': 2, 'mlp_dim': 64}", f"data.sources=['{out}']",
        f"data.max_text_tokens={MAX_LEN}", "data.seq_len=16", "data.max_tokens_per_clip=16", "data.text_len=128",
        "data.packing_bins=2", "global_batch_size=8", "steps=2", "optim.warmup_steps=0", "optim.learning_rate=0.01",
        "checkpoint_every=0", "log_every=1", "progress=False", "async_checkpoints=False"])


@pytest.fixture(scope="module")
def run(encoded, tmp_path_factory):
    """`(config, task, model, workdir)`: a frozen-text DiT whose zero-initialised output layer is made
    random (so its velocity, and loss, depend on the text), saved as a workdir generation can load."""
    from sora_jax.train.checkpoint import save_weights
    from sora_jax.train.tasks import make_task

    c = tiny_run_config(encoded)
    task = make_task(c)
    model = task.make_model()
    kernel = model.dit.proj_out.kernel
    kernel[...] = 0.2 * jax.random.normal(jax.random.key(1), kernel.shape)  # (32, 64)
    workdir = str(tmp_path_factory.mktemp("dit_minilm_init"))
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(c.to_json_best_effort(indent=2))
    save_weights(os.path.join(workdir, "checkpoints"), 0, nnx.state(model).to_pure_dict())
    return c, task, model, workdir


def test_loss_with_stored_embeddings_equals_loss_with_the_encoders_output(run, encoded, encoder):
    c, task, model, _ = run
    assert task.dit_config.text_dim == 384 and model.text_encoder is None
    packed = next(iter(task.build_input("train", 2, 0, 1)))
    batch = task.host_batch(packed)  # text_embeddings (2, 128, 384) float16, as the trainer feeds it
    graphdef, state = nnx.split(model)
    rng, flow = jax.random.key(3), FlowConfig(**dict(c.flow))
    loss = jax.jit(lambda state, batch: task.loss_fn(nnx.merge(graphdef, state), batch, rng)[0])(state, batch)
    # Reference: the encoder run now on each segment's caption, placed by the text segment ids.
    stored = records(encoded, "train")
    direct = np.zeros(batch["text_embeddings"].shape, np.float32)  # (B, Lt, 384)
    for row in range(len(direct)):
        for k, (_, index) in enumerate(packed["segment_record"][row], start=1):
            if index >= 0:
                embeddings, mask = encoder.encode([text(stored[index]["caption"])])  # (1, 32, 384)
                direct[row, batch["text_segment_ids"][row] == k] = embeddings[0, : mask.sum()]
    text_free = {k: v for k, v in batch.items() if k != "text_embeddings"}
    loss_of = jax.jit(lambda state, batch: flow_loss(nnx.merge(graphdef, state), batch, rng, flow)[0])
    direct_loss = loss_of(state, text_free | {"text_tokens": direct})
    rounded_loss = loss_of(state, text_free | {"text_tokens": direct.astype(np.float16).astype(np.float32)})
    no_text_loss = loss_of(state, text_free | {"text_tokens": np.zeros_like(direct)})
    print(f"loss {float(loss):.8f} direct {float(direct_loss):.8f} rounded {float(rounded_loss):.8f} "
          f"no text {float(no_text_loss):.8f}")
    assert abs(float(no_text_loss) - float(loss)) > 1e-3  # the text matters to this loss
    np.testing.assert_allclose(float(loss), float(rounded_loss), rtol=1e-6)  # the stored numbers, bit for bit
    np.testing.assert_allclose(float(loss), float(direct_loss), rtol=1e-5)  # float16 storage costs < 1e-5


def test_generation_encodes_prompts_with_the_runs_encoder(run, encoded):
    from sora_jax.diffusion.sampler import SamplerConfig
    from sora_jax.generate import Generator

    generator = Generator.from_workdir(run[3])
    assert isinstance(generator.tokenizer, CaptionEmbedder) and generator.tokenizer.max_len == MAX_LEN
    record = records(encoded, "train")[0]
    plan = generator._plan(text(record["caption"]), (5, 16, 16), 0, None)
    assert plan.text.dtype == np.float16 and plan.text.shape == record["caption_embedding"].shape  # (32, 384)
    # Same encoder, other batch and length bucket: equal up to float32 noise, so within one fp16 ulp.
    np.testing.assert_allclose(plan.text.astype(np.float32), record["caption_embedding"].astype(np.float32),
                               rtol=2 * FP16_RTOL, atol=1e-6)
    one_step = lambda guidance, p=plan: generator._sample_plans([p], [0], SamplerConfig(1, "euler", guidance))[0]
    conditional, unconditional = one_step(1.0), one_step(0.0)  # guidance 0: the unconditional velocity alone
    zero_text = one_step(1.0, dataclasses.replace(plan, text=np.zeros_like(plan.text)))
    np.testing.assert_allclose(unconditional, zero_text, atol=1e-6)  # unconditional = zero embeddings
    change = np.abs(conditional - unconditional).max() / np.abs(conditional).max()
    assert change > 1e-2, change  # the prompt moves the sample: the text reaches the model


@pytest.mark.slow
def test_two_training_steps_then_generation_from_the_workdir(encoded, tmp_path):
    """The trainer on the records for 2 steps (about 30 s of compiling on 2 CPU cores), then
    `Generator.from_workdir` makes frames and its conditional and unconditional velocities differ."""
    from sora_jax.diffusion.sampler import SamplerConfig
    from sora_jax.generate import Generator
    from sora_jax.train.loop import train
    from sora_jax.train.metrics import read_metrics

    workdir = str(tmp_path / "dit")
    assert train(tiny_run_config(encoded), workdir, log=lambda *a: None)["step"] == 2
    losses = [r["loss"] for r in read_metrics(os.path.join(workdir, "metrics.jsonl")) if "loss" in r]
    assert len(losses) == 2 and all(np.isfinite(losses))
    generator = Generator.from_workdir(workdir)
    caption = text(records(encoded, "train")[0]["caption"])
    video = generator.generate(caption, 5, 16, 16, steps=2, guidance=3.0, seed=0)
    assert video.shape == (5, 16, 16, 3) and video.dtype == np.uint8
    plan = generator._plan(caption, (5, 16, 16), 0, None)
    one_step = lambda guidance: generator._sample_plans([plan], [0], SamplerConfig(1, "euler", guidance))[0]
    conditional, unconditional = one_step(1.0), one_step(0.0)
    change = np.abs(conditional - unconditional).max() / np.abs(conditional).max()
    assert change > 1e-4, change  # two steps from a zero output layer: small, but the text is used


def test_bad_inputs_fail_with_clear_errors(tiny_latents, encoded, tmp_path):
    from sora_jax.encode.job import EncodeConfig
    from sora_jax.models.dit.config import get_dit_config
    from sora_jax.models.text_to_video import TextToVideo

    with pytest.raises(ValueError, match="--text-encoder minilm"):  # records without embeddings
        pipeline.build(data_config(tiny_latents, seq_len=64, max_tokens_per_clip=64))
    with pytest.raises(ValueError, match="max_text_tokens=32"):  # embedded at another max_len
        pipeline.build(data_config(encoded, max_text_tokens=64))
    with pytest.raises(ValueError, match="holds 'minilm' caption embeddings"):
        pipeline.build(data_config(encoded, text_encoder=f"t5:{tmp_path}"))
    with pytest.raises(ValueError, match="unknown text encoder spec 'clip'"):
        pipeline.build(data_config(encoded, text_encoder="clip"))
    with pytest.raises(ValueError, match="trainable tiny encoder"):
        EncodeConfig(vae_workdir="v", data="d", out="o", text_encoder="tiny")
    frozen = nnx.eval_shape(lambda: TextToVideo(get_dit_config("tiny", in_channels=4, text_dim=8), frozen_text=True,
                                                rngs=nnx.Rngs(0)))  # abstract: the check comes before any weight
    inputs = (jnp.zeros((1, 4, 4)), jnp.zeros((1, 4, 3), jnp.int32), jnp.ones((1, 4), jnp.int32), jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match="frozen-encoder embeddings"):
        frozen(*inputs, jnp.ones((1, 5), jnp.int32), jnp.ones((1, 5), jnp.int32))
