"""The latent-encoding job: shapes, normalisation, equality with a direct encode, resume, and the
pipeline's latent mode reading what it wrote."""
from __future__ import annotations

import json
import os

import jax
import numpy as np
import pytest

from data_pipelines.sources import clip_decoder, DecodeOptions, open_source
from sora_jax.encode.job import EncodeConfig, encodable_shape, fit_clip, load_vae, read_latent_info, run_encode
from sora_jax.models.vae.config import get_vae_config
from sora_jax.models.vae.model import latent_shape


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> str:
    """A small Shapes World of 3 shapes (16x16 and 16x32 images and 5-frame clips), 12 validation records."""
    import tensorflow_datasets as tfds

    from data_pipelines.shapes_world.builder import ShapesWorld, ShapesWorldConfig

    config = ShapesWorldConfig(name="encode_test", num_train=4, num_validation=12, short_sides=(16,),
                               frame_counts=(1, 5), aspects=(1.0, 2.0), max_side=32)
    builder = ShapesWorld(config=config, data_dir=str(tmp_path_factory.mktemp("clips")), file_format="array_record")
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return str(builder.data_path)


@pytest.fixture(scope="module")
def vae_workdir(tmp_path_factory) -> str:
    """A workdir holding a freshly initialised tiny VAE (weights need not be good, only fixed)."""
    from sora_jax.train.config import load_config
    from sora_jax.train.restore import init_workdir

    return init_workdir(load_config("experiments/vae.py:tiny"), str(tmp_path_factory.mktemp("vae")))


def _config(vae_workdir, clips, out, batch_size=2):
    return EncodeConfig(vae_workdir=vae_workdir, data=clips, out=out, splits=("validation",), batch_size=batch_size)


@pytest.fixture(scope="module")
def encoded(vae_workdir, clips, tmp_path_factory) -> tuple[str, dict]:
    out = str(tmp_path_factory.mktemp("latents"))
    return out, run_encode(_config(vae_workdir, clips, out), log=lambda *a: None)


def test_encodable_shape_trims_frames_and_crops_sides():
    config = get_vae_config("tiny")  # time 4, space 8
    assert encodable_shape((17, 64, 64), config) == (17, 64, 64)
    assert encodable_shape((20, 70, 61), config) == (17, 64, 56)  # frames trimmed to 1 + 4k, sides to 8k
    assert encodable_shape((1, 8, 8), config) == (1, 8, 8)
    assert encodable_shape((5, 7, 64), config) is None  # smaller than one latent pixel: skipped
    video = np.arange(20 * 70 * 61 * 3, dtype=np.int64).reshape(20, 70, 61, 3)
    fitted = fit_clip(video, (17, 64, 56))
    assert fitted.shape == (17, 64, 56, 3)
    np.testing.assert_array_equal(fitted, video[:17, 3:67, 2:58])  # centre crop


def test_every_record_encoded_with_its_latent_shape(encoded, vae_workdir, clips):
    out, report = encoded
    split = report["splits"]["validation"]
    assert split["records"] == split["written"] == 12 and split["skipped"] == {}
    assert report["lost_on_reread"] == 0 and report["encoded_batches"] >= split["shapes"] >= 2
    source, _ = open_source(out, "validation")
    clips, _ = open_source(clips, "validation")
    vae, _ = load_vae(vae_workdir)
    assert len(source) == 12
    for i in range(len(source)):
        record = source[i]
        meta = json.loads(record["meta"])
        index = meta["encoding"]["index"]
        video = np.asarray(clips[index]["video"])
        want = latent_shape(encodable_shape(video.shape[:3], vae.config), vae.config) + (vae.config.latent_channels,)
        assert record["latent"].shape == want
        assert "objects" in meta  # the source clip's ground truth is kept


def test_latents_equal_a_direct_encode_after_normalisation(encoded, vae_workdir, clips):
    out, _ = encoded
    info = read_latent_info(out)
    shift, scale = np.asarray(info["shift"]), np.asarray(info["scale"])
    assert shift.shape == scale.shape == (16,) and np.all(scale > 0)
    vae, _ = load_vae(vae_workdir)
    source, _ = open_source(out, "validation")
    clips, name = open_source(clips, "validation")
    decode = clip_decoder(name, DecodeOptions())
    stored = np.concatenate([source[i]["latent"].reshape(-1, 16) for i in range(len(source))])
    np.testing.assert_allclose(stored.mean(0), 0.0, atol=1e-4)  # normalised with this split's own stats
    np.testing.assert_allclose(stored.std(0), 1.0, atol=1e-3)
    for i in (0, 5, 11):
        record = source[i]
        clip = decode(clips[json.loads(record["meta"])["encoding"]["index"]])
        video = fit_clip(clip["video"], encodable_shape(clip["video"].shape[:3], vae.config))
        direct = np.asarray(jax.jit(lambda v: vae.encode(v).mode())(video[None].astype(np.float32) / 127.5 - 1.0))[0]
        np.testing.assert_allclose(record["latent"] * scale + shift, direct, atol=1e-4)
        assert record["caption"].decode() == clip["caption"]


def test_rerun_resumes_without_encoding_again(encoded, vae_workdir, clips):
    out, first = encoded
    parts = sorted(p for p in os.listdir(os.path.join(out, "work")) if p.startswith("validation-"))
    os.remove(os.path.join(out, "work", parts[1]))  # as if killed before that batch was written
    second = run_encode(_config(vae_workdir, clips, out), log=lambda *a: None)
    assert second["encoded_batches"] == 1
    assert second["resumed_batches"] == first["encoded_batches"] - 1
    with pytest.raises(ValueError, match="different"):
        run_encode(_config(vae_workdir, clips, out, batch_size=3), log=lambda *a: None)


def test_pipeline_latent_mode_reads_the_encoded_dataset(encoded):
    from data_pipelines import pipeline
    from data_pipelines.config import get_data_config
    from sora_jax.models.dit.patchify import patchify

    out, _ = encoded
    c = get_data_config()
    c.update(dict(sources=[out], mode="latent", patch=(1, 2, 2), seq_len=512, max_tokens_per_clip=512, batch_size=2,
                  shuffle=False, num_epochs=1, max_text_tokens=64, text_len=256, packing_bins=4))
    batch = next(iter(pipeline.build(c, "validation")))
    source, _ = open_source(out, "validation")
    row, segment = 0, 1
    record_index = int(batch["segment_record"][row, segment - 1, 1])
    tokens, _, _ = patchify(source[record_index]["latent"], (1, 2, 2))
    got = batch["tokens"][row][batch["segment_ids"][row] == segment]
    np.testing.assert_allclose(got, tokens, atol=1e-6)  # whole clip (a prefix within budget)
