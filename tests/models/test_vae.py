"""Spatiotemporal causal VAE: shapes, causality, chunked == one pass, tiling, size policy, losses,
logical-axis annotations. Tiny config, small clips; compiled functions shared per module."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from data_pipelines.shapes_world import generate_clip
from sora_jax.models.vae import VAE, DiagonalGaussian, get_vae_config, latent_shape
from sora_jax.models.vae.chunked import ChunkedVAE, blend_tiles, ramp, tile_starts
from sora_jax.models.vae.layers import CausalConv3d, TimeStream, upsample_conv
from sora_jax.models.vae.losses import (
    PatchDiscriminator3D,
    hinge_discriminator_loss,
    hinge_generator_loss,
    kl_loss,
    reconstruction_loss,
    ssim,
    ssim_loss,
    vae_loss,
)
from sora_jax.parallel import LOGICAL_AXES, get_rules, make_mesh, state_shardings


def shapes_world(frames: int, height: int, width: int, seed: int = 7) -> np.ndarray:
    """A real Shapes World clip as float32 in [-1, 1], `(1, T, H, W, 3)`."""
    video = generate_clip(seed, frames, height, width)["video"]
    return (video.astype(np.float32) / 127.5 - 1.0)[None]


@pytest.fixture(scope="module")
def vae() -> VAE:
    return VAE(get_vae_config("tiny"), rngs=nnx.Rngs(0))


@pytest.fixture(scope="module")
def one_pass(vae):
    """Jitted one-pass encode (posterior mean) and decode, compiled once per shape for the module."""
    graphdef, state = nnx.split(vae)
    encode = jax.jit(lambda s, video: nnx.merge(graphdef, s).encode(video).mean)
    decode = jax.jit(lambda s, latents: nnx.merge(graphdef, s).decode(latents))
    return (lambda video: np.asarray(encode(state, video))), (lambda latents: np.asarray(decode(state, latents)))


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return shapes_world(17, 32, 32)


@pytest.fixture(scope="module")
def runner(vae) -> ChunkedVAE:
    """Chunks of 3 latent frames: a 17-frame clip is frame 0, 12 frames, then 4 frames padded to 12."""
    return ChunkedVAE(vae, chunk_latent_frames=3)


def test_config_presets_and_validation():
    tiny, base = get_vae_config("tiny"), get_vae_config("base")
    assert (base.time_factor, base.space_factor, base.latent_channels) == (4, 8, 16)
    assert base.widths == (96, 192, 384, 384) and tiny.num_res_blocks == 1
    assert base.space_stages == (True, True, True) and base.time_stages == (False, True, True)
    assert get_vae_config("tiny", time_factor=8, space_factor=16, widths=(8, 8, 8, 8, 8)).time_stages == (
        False, True, True, True)
    for field, value in [("time_factor", 3), ("space_factor", 2), ("size_policy", "crop"), ("latent_channels", 0),
                         ("tile_overlap", 12)]:
        with pytest.raises(ValueError, match=field):
            get_vae_config("tiny", **{field: value})
    with pytest.raises(ValueError, match="widths"):
        get_vae_config("tiny", widths=(16, 32), space_factor=8)
    with pytest.raises(ValueError, match="unknown VAE config fields"):
        get_vae_config("tiny", width=3)


@pytest.mark.parametrize("batch,shape", [(1, (17, 32, 32)), (1, (1, 32, 32)), (2, (5, 16, 40))])
def test_shapes(one_pass, batch, shape):
    encode, decode = one_pass
    config = get_vae_config("tiny")
    latents = encode(jnp.zeros((batch, *shape, 3)))
    assert latents.shape == (batch, *latent_shape(shape, config), 16)
    assert decode(latents).shape == (batch, *shape, 3)


@pytest.mark.parametrize("channels", [16, 64])  # both 2D formulations: taps as channels, sum over taps
@pytest.mark.parametrize("kernel,stride", [((3, 3, 3), (1, 1, 1)), ((3, 1, 1), (2, 1, 1)), ((1, 3, 3), (1, 2, 2))])
def test_causal_conv_matches_3d_reference(channels, kernel, stride):
    conv = CausalConv3d(channels, 8, kernel, stride, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (1, 9, 8, 8, channels))
    padding = [(kernel[0] - 1, 0)] + list(conv.spatial_padding)
    reference = jax.lax.conv_general_dilated(x, conv.kernel[...], stride, padding,
                                             dimension_numbers=("NDHWC", "DHWIO", "NDHWC"))  # (1, T', H', W', 8)
    np.testing.assert_allclose(conv(x), reference, atol=1e-4, rtol=1e-5)
    # Frame 0 alone, then the rest through the stream cache: the same outputs.
    stream = TimeStream()
    head = conv(x[:, :1], stream)
    tail = conv(x[:, 1:], TimeStream(stream.next_cache))
    np.testing.assert_allclose(jnp.concatenate([head, tail], axis=1), reference, atol=1e-4, rtol=1e-5)


def test_subpixel_upsample_equals_nearest_then_conv():
    x = jax.random.normal(jax.random.key(1), (2, 3, 5, 7, 8))
    kernel = jax.random.normal(jax.random.key(2), (3, 3, 8, 4))
    upsampled = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3).reshape(6, 10, 14, 8)
    reference = jax.lax.conv_general_dilated(upsampled, kernel, (1, 1), ((1, 1), (1, 1)),
                                             dimension_numbers=("NHWC", "HWIO", "NHWC")).reshape(2, 3, 10, 14, 4)
    np.testing.assert_allclose(upsample_conv(x, kernel), reference, atol=1e-4, rtol=1e-5)


def test_image_is_one_frame_video(one_pass, clip):
    encode, decode = one_pass
    image = clip[:, :1]
    latents = encode(image)
    assert latents.shape == (1, 1, 4, 4, 16)
    assert decode(latents).shape == (1, 1, 32, 32, 3)
    # Frame 0 is encoded alone: the image latent IS the first latent frame of any clip starting with it.
    np.testing.assert_allclose(latents[:, 0], encode(clip)[:, 0], atol=1e-5)


@pytest.mark.parametrize("changed", [1, 4, 5, 8, 13])
def test_encoder_is_causal(one_pass, clip, changed):
    encode, _ = one_pass
    reference = encode(clip)
    edited = clip.copy()
    edited[:, changed] = -edited[:, changed]
    latents = encode(edited)
    first_affected = -(-changed // 4)  # ceil(k / time_factor)
    np.testing.assert_array_equal(latents[:, :first_affected], reference[:, :first_affected])
    assert np.abs(latents[:, first_affected] - reference[:, first_affected]).max() > 1e-4


def test_chunked_encode_and_decode_equal_one_pass(one_pass, runner, clip):
    encode, decode = one_pass
    reference = encode(clip)
    # The cache crosses two chunk boundaries and the last chunk is padded by repetition: still exact.
    np.testing.assert_allclose(np.asarray(runner.encode(clip).mean), reference, atol=1e-5, rtol=0)
    np.testing.assert_allclose(runner.decode(reference), decode(reference), atol=1e-5, rtol=0)
    shorter = runner.encode(clip[:, :9])
    np.testing.assert_allclose(np.asarray(shorter.mean), reference[:, :3], atol=1e-5, rtol=0)
    # One compilation for frame 0 and one for all later chunks, whatever the clip length.
    assert runner.encode_step._cache_size() == 2 and runner.decode_step._cache_size() == 2


def test_tile_blending_is_a_partition_of_unity():
    assert tile_starts(64, 32, 16) == [0, 16, 32] and tile_starts(40, 32, 8) == [0, 8] and tile_starts(24, 32, 8) == [0]
    np.testing.assert_allclose(ramp(8, 4, True, False)[:4] + ramp(8, 4, False, True)[4:], np.ones(4))
    array = np.random.default_rng(0).normal(size=(1, 3, 40, 56, 5)).astype(np.float32)
    np.testing.assert_allclose(blend_tiles(array, 16, 8, lambda tile: tile, 1.0), array, atol=1e-6, rtol=0)


def test_tiled_matches_untiled(runner, one_pass):
    """Bounds: (1) a tile covering the frame is exactly the untiled computation; (2) with several
    tiles, each output pixel is a convex combination of the tiles covering it, so its error is at most
    the worst covering tile's standalone error (pointwise), and pixels covered by one tile equal that
    tile's output. A random network has no locality, so no tighter bound holds for its error; the
    quality cost of tiling on a trained model is reported by benchmarks/vae.py."""
    encode, decode = one_pass
    video = shapes_world(17, 32, 32, seed=11)
    latents = encode(video)
    np.testing.assert_allclose(np.asarray(runner.tiled_encode(video, tile=32, overlap=16).mean), latents, atol=1e-5)
    tiles = []

    def recording_decode(tile_latents):
        tiles.append(runner.decode_frames(tile_latents))
        return tiles[-1]

    tiled = blend_tiles(latents, 2, 1, recording_decode, scale=8)  # 16-pixel tiles, 8-pixel overlap
    np.testing.assert_allclose(runner.tiled_decode(latents, tile=16, overlap=8), tiled, atol=1e-6)
    untiled = decode(latents)
    starts = tile_starts(32, 16, 8)  # [0, 8, 16] in pixels
    worst = np.zeros_like(untiled)
    for index, (top, left) in enumerate((t, l) for t in starts for l in starts):
        error = np.abs(tiles[index] - untiled[:, :, top : top + 16, left : left + 16])
        view = worst[:, :, top : top + 16, left : left + 16]
        np.maximum(view, error, out=view)
    assert np.all(np.abs(tiled - untiled) <= worst + 1e-5)
    np.testing.assert_allclose(tiled[:, :, :8, :8], tiles[0][:, :, :8, :8], atol=1e-6)


def test_size_policy_error_names_nearest_valid_sizes(vae):
    with pytest.raises(ValueError, match=r"T=18 is not 1\+4k; nearest valid: 17 or 21"):
        vae.encode(jnp.zeros((1, 18, 32, 32, 3)))
    with pytest.raises(ValueError, match=r"H=30 is not a multiple of 8; nearest valid: 24 or 32.*W=5 .*: 8"):
        vae.encode(jnp.zeros((1, 1, 30, 5, 3)), policy="error")


def test_size_policy_pad_returns_original_shape(vae, runner):
    graphdef, state = nnx.split(vae)
    reconstruct = jax.jit(lambda s, video: nnx.merge(graphdef, s)(video, policy="pad")[0])
    video = shapes_world(14, 30, 27, seed=5)  # pads to 17 x 32 x 32
    reconstruction = reconstruct(state, video)
    assert reconstruction.shape == (1, 14, 30, 27, 3)
    posterior = runner.encode(video, policy="pad")
    assert posterior.source_shape == (14, 30, 27) and posterior.mean.shape == (1, 5, 4, 4, 16)
    decoded = runner.decode(posterior.mode(), shape=posterior.source_shape)
    np.testing.assert_allclose(decoded, reconstruction, atol=1e-5)


def test_posterior_kl_sample_and_mode():
    zeros = jnp.zeros((2, 3, 4, 4, 16))
    standard = DiagonalGaussian(zeros, zeros)
    assert float(kl_loss(standard)) == 0.0 and np.all(np.asarray(standard.kl()) == 0.0)
    shifted = DiagonalGaussian(zeros + 1.0, zeros + np.log(0.5))
    # Per element: 0.5 * (1 + 0.5 - 1 - log 0.5) = 0.5963...
    np.testing.assert_allclose(float(kl_loss(shifted)), 0.5 * (0.5 - np.log(0.5)), rtol=1e-4)
    assert float(kl_loss(DiagonalGaussian(zeros, zeros - 1.0))) > 0.0
    draws = standard.sample(jax.random.key(0))
    assert draws.shape == zeros.shape and abs(float(draws.std()) - 1.0) < 0.05
    assert np.all(np.asarray(shifted.mode()) == 1.0)


def test_reconstruction_and_ssim_terms(clip):
    video = jnp.asarray(clip)
    noisy = video + 0.3 * jax.random.normal(jax.random.key(1), video.shape)
    assert float(reconstruction_loss(video, video + 0.5, "l1")) == pytest.approx(0.5)
    assert float(reconstruction_loss(video, video + 0.5, "l2")) == pytest.approx(0.25)
    assert float(ssim(video, video)) == pytest.approx(1.0, abs=1e-6)
    assert float(ssim_loss(video, video)) == pytest.approx(0.0, abs=1e-6)
    noisy_ssim, noisier_ssim = float(ssim(video, noisy)), float(ssim(video, video + 2 * (noisy - video)))
    assert noisier_ssim < noisy_ssim < 0.9
    total, terms = vae_loss(video, noisy, DiagonalGaussian(jnp.zeros(3), jnp.zeros(3)), ssim_weight=0.5)
    assert float(total) == pytest.approx(float(terms["l1"] + 0.5 * terms["ssim"]), rel=1e-6)


def test_hinge_losses_textbook_numbers():
    real, fake = jnp.array([2.0, 0.5, -1.0]), jnp.array([-2.0, 0.0, 1.0])
    # real: relu(1 - [2, .5, -1]) = [0, .5, 2] -> 5/6; fake: relu(1 + [-2, 0, 1]) = [0, 1, 2] -> 1.
    assert float(hinge_discriminator_loss(real, fake)) == pytest.approx(5 / 6 + 1.0)
    assert float(hinge_generator_loss(fake)) == pytest.approx(1 / 3)
    assert float(hinge_discriminator_loss(jnp.ones(4), -jnp.ones(4))) == 0.0


def test_discriminator_patch_logits(clip):
    disc = PatchDiscriminator3D(widths=(8, 16), rngs=nnx.Rngs(0))
    logits = disc(jnp.asarray(clip))
    assert logits.shape == (1, 17, 8, 8, 1) and np.isfinite(np.asarray(logits)).all()


def _annotations(module) -> list:
    params = jax.tree.leaves(nnx.state(module, nnx.Param), is_leaf=lambda x: isinstance(x, nnx.Variable))
    return [(p.get_metadata().get("out_sharding"), p.shape) for p in params]


def test_every_parameter_has_logical_axes(vae):
    annotations = _annotations(vae) + _annotations(PatchDiscriminator3D(widths=(8, 16), rngs=nnx.Rngs(0)))
    assert len(annotations) > 100
    for axes, shape in annotations:
        assert axes is not None and len(axes) == len(shape), (axes, shape)
        assert all(name in LOGICAL_AXES for name in axes), axes
    # The annotations resolve on a real (simulated) mesh: conv output channels over fsdp.
    mesh = make_mesh({"fsdp": -1})
    shardings = state_shardings(nnx.state(vae, nnx.Param), mesh, get_rules("fsdp"))
    kernel = shardings["encoder"]["conv_in"]["kernel"]
    assert tuple(kernel.get_value().spec) == (None, None, None, None, "fsdp")


def test_shortcuts_pass_a_pooled_copy_through_resampling():
    """DC-AE shortcuts: with the convolutions zeroed, a Downsample is exactly average pooling (space
    and causal time) and an Upsample exactly the repeat, first chunk and later chunks alike."""
    from sora_jax.models.vae.layers import Downsample, Upsample, pool_space, pool_time

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(1, 5, 8, 8, 4)), jnp.float32)
    down = Downsample(4, True, True, shortcut=True, rngs=nnx.Rngs(0))
    up = Upsample(4, True, True, shortcut=True, rngs=nnx.Rngs(0))
    for conv in (down.space, down.time, up.space, up.time):
        conv.kernel.value = jnp.zeros_like(conv.kernel.value)
    pooled = down(x)  # (1, 3, 4, 4, 4)
    np.testing.assert_allclose(pooled[:, 0], x[:, 0].reshape(1, 4, 2, 4, 2, 4).mean((2, 4)), atol=1e-6)
    np.testing.assert_allclose(pooled[:, 1], x[:, 1:3].reshape(1, 2, 4, 2, 4, 2, 4).mean((1, 3, 5)), atol=1e-6)
    np.testing.assert_allclose(pool_time(pool_space(x), first=True), pooled, atol=1e-6)
    restored = up(pooled)  # (1, 5, 8, 8, 2)
    assert restored.shape == (1, 5, 8, 8, 2)
    expected = np.asarray(pooled).reshape(1, 3, 4, 4, 2, 2).mean(-1)  # channel pairs averaged
    np.testing.assert_allclose(restored[:, 2], np.repeat(np.repeat(expected[:, 1], 2, 1), 2, 2), atol=1e-6)
    np.testing.assert_allclose(restored[:, 0], np.repeat(np.repeat(expected[:, 0], 2, 1), 2, 2), atol=1e-6)


@pytest.mark.slow
def test_tiny_vae_training_beats_the_block_mean(tmp_path):
    """300 steps of `experiments/vae.py:tiny` (batch 8) on Shapes World (CPU, ~5 minutes): held-out
    video PSNR well above what the best constant per 4x8x8 latent cell gives (block mean, ~17.5 dB on
    these clips), i.e. the 16 latent channels carry structure, not just the average colour. Measured
    21.9 dB (2026-11-22); 20 dB leaves room for other CPUs' float differences."""
    from sora_jax.train.config import load_config
    from sora_jax.train.loop import train
    from sora_jax.train.metrics import read_metrics

    overrides = ["steps=300", "global_batch_size=8", "eval_every=300", "checkpoint_every=0", "sample_every=0",
                 "progress=False"]
    train(load_config("experiments/vae.py:tiny", overrides), str(tmp_path), log=lambda *a: None)
    final = [r for r in read_metrics(str(tmp_path / "metrics.jsonl")) if "val_video_psnr" in r][-1]
    assert final["val_video_psnr"] > 20.0
