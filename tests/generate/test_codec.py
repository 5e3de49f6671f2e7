"""Codecs: exact pixel round trip; the latent codec's normalisation, causality and known-frame rule
with a randomly initialised tiny VAE (the latent-mode pipeline end to end is in test_latent_mode)."""
import jax
import numpy as np
import pytest
from flax import nnx

from data_pipelines.shapes_world import generate_clip
from sora_jax.generate.codec import LatentCodec, PixelCodec, make_codec, read_latent_info, to_uint8, to_unit
from sora_jax.generate.conditioning import Known, encode_known
from sora_jax.models.vae import VAE, get_vae_config


@pytest.fixture(scope="module")
def vae():
    """A random narrow tiny VAE: the codec's arithmetic is under test, not reconstruction quality.
    Weights are drawn with numpy into the abstract model (eager JAX init compiles one random op per
    parameter shape, ~10 s here); std 0.15 keeps decoded frames varied and unsaturated (101..197)."""
    config = get_vae_config("tiny", widths=(8, 8, 8, 8), mid_attention=False)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: VAE(config, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(0)
    return nnx.merge(graphdef, jax.tree.map(lambda s: (0.15 * rng.standard_normal(s.shape)).astype(s.dtype), abstract))


@pytest.fixture(scope="module")
def latent_codec(vae):
    shift = np.linspace(-0.2, 0.2, 16).astype(np.float32)
    scale = np.linspace(0.5, 2.0, 16).astype(np.float32)
    return LatentCodec(vae, shift, scale)


@pytest.fixture(scope="module")
def clip():
    return generate_clip(7, 9, 32, 32)["video"]  # (9, 32, 32, 3)


def test_pixel_codec_round_trip_is_exact(clip):
    codec = PixelCodec()
    latents = codec.encode(clip)
    assert latents.shape == clip.shape and latents.min() >= -1.0 and latents.max() <= 1.0
    np.testing.assert_array_equal(codec.decode(latents), clip)
    np.testing.assert_array_equal(to_uint8(to_unit(np.arange(256, dtype=np.uint8))), np.arange(256))
    assert [list(codec.owned_frames(j)) for j in range(3)] == [[0], [1], [2]] and codec.latent_frames(9) == 9


def test_latent_codec_normalises_the_posterior_mode(latent_codec, clip):
    latents = latent_codec.encode(clip)
    assert latents.shape == (3, 4, 4, 16)
    # The chunked VAE equals the one-pass one (tests/models/test_vae.py); here: the normalisation.
    mode = np.asarray(latent_codec.chunked.encode(to_unit(clip)[None]).mode())[0]  # (3, 4, 4, 16)
    np.testing.assert_allclose(latents, (mode - latent_codec.shift) / latent_codec.scale, rtol=1e-6, atol=1e-6)
    decoded = latent_codec.decode(latents)
    assert decoded.shape == clip.shape and decoded.dtype == np.uint8 and decoded.std() > 5
    reference = to_uint8(latent_codec.chunked.decode(mode[None], clip=True)[0])
    assert np.abs(decoded.astype(int) - reference).max() <= 1  # the de-normalisation inverts, up to rounding


def test_latent_codec_is_causal_and_owns_frames_in_groups(latent_codec, clip):
    assert [list(latent_codec.owned_frames(j)) for j in range(3)] == [[0], [1, 2, 3, 4], [5, 6, 7, 8]]
    assert latent_codec.latent_frames(9) == 3 and latent_codec.pixel_frames(3) == 9
    prefix = latent_codec.encode(clip[:5])  # the first 1 + 4 frames fix the first 2 latent frames
    np.testing.assert_allclose(prefix, latent_codec.encode(clip)[:2], atol=1e-5)
    # Known frames 0..5 of 9: latent frame 2 owns 5..8, of which only 5 is given, so it stays unknown.
    known = Known(clip, np.arange(9) < 6)
    latents, mask = encode_known(known, latent_codec)
    assert mask.tolist() == [True, True, False]
    np.testing.assert_allclose(latents[:2], prefix, atol=1e-5)
    assert np.all(latents[2] == 0)


def test_latent_codec_shape_problems_and_bad_info(vae, latent_codec, tmp_path):
    assert latent_codec.shape_problems(9, 32, 48) == []
    problems = latent_codec.shape_problems(8, 30, 32)
    assert any("T=8 is not 1+4k; nearest valid: 5 or 9" in p for p in problems)
    assert any("H=30 is not a multiple of 8; nearest valid: 24 or 32" in p for p in problems)
    with pytest.raises(ValueError, match="shift has 3 values; the VAE has 16 channels"):
        LatentCodec(vae, [0.0] * 3, [1.0] * 16)
    with pytest.raises(FileNotFoundError, match="latent_info.json not found"):
        read_latent_info(str(tmp_path))
    (tmp_path / "latent_info.json").write_text('{"shift": [0.0]}')
    with pytest.raises(ValueError, match="lacks \\['scale', 'vae_workdir'\\]"):
        read_latent_info(str(tmp_path))


def test_make_codec_by_mode():
    import ml_collections

    config = ml_collections.ConfigDict({"data": {"mode": "pixel", "sources": []}})
    assert isinstance(make_codec(config), PixelCodec)
    config.data.mode = "latent"
    with pytest.raises(ValueError, match="sources is empty"):
        make_codec(config)
