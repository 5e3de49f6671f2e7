"""DiT: packed == unpacked, RoPE shift invariance, attention paths mask like the reference,
sharded == unsharded, and a tiny model that overfits and samples back what it learned."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from sora_jax import parallel
from sora_jax.diffusion.flow import FlowConfig, flow_loss
from sora_jax.diffusion.rows import latent_segment, pack_rows, unpack_rows
from sora_jax.models.attention import attention, packed_layout, reference_attention, resolve
from sora_jax.models.dit.config import get_dit_config
from sora_jax.models.dit.rope import apply_rope, rope_angles
from sora_jax.models.text_to_video import TextToVideo
from sora_jax.text.tokenizers import get_tokenizer
from sora_jax.train import step as train_step

PATCH = (1, 2, 2)
TOKENIZER = get_tokenizer("bytes")


def make_model(seed=0, **overrides):
    config = get_dit_config("tiny", in_channels=4, attention="xla", **overrides)
    return TextToVideo(config, max_text_len=64, rngs=nnx.Rngs(seed))


def randomize(model, seed=1):
    """Random values for every parameter (zero-initialised heads would hide masking bugs)."""
    graphdef, state = nnx.split(model)
    leaves, treedef = jax.tree.flatten(state)

    @jax.jit
    def draw(key):  # one compilation instead of one per parameter shape
        keys = jax.random.split(key, len(leaves))
        return [0.2 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)]

    return nnx.merge(graphdef, jax.tree.unflatten(treedef, draw(jax.random.key(seed))))


CLIP_SHAPES = [(3, 4, 6), (1, 6, 4), (2, 2, 8)]  # latent (t, h, w): a video, an image, a wide clip


def clip_segments(seed=0, shapes=CLIP_SHAPES, channels=4):
    rng = np.random.default_rng(seed)
    return [
        latent_segment(rng.normal(size=(*shape, channels)).astype(np.float32), PATCH, TOKENIZER.encode(f"clip {i} of shape {shape}"))
        for i, shape in enumerate(shapes)
    ]


@functools.partial(jax.jit, static_argnums=0)
def _forward(graphdef, state, tokens, coords, segment_ids, text_tokens, text_segment_ids, t):
    timesteps = jnp.where(segment_ids > 0, t, 0.0)
    return nnx.merge(graphdef, state)(tokens, coords, segment_ids, timesteps, text_tokens, text_segment_ids)


def run(model, batch, t=0.37):
    keys = ("tokens", "coords", "segment_ids", "text_tokens", "text_segment_ids")
    return _forward(*nnx.split(model), *(batch[k] for k in keys), t)


def test_packed_equals_unpacked():
    model = randomize(make_model())
    segments = clip_segments()
    packed = pack_rows(segments, seq_len=64, text_len=96, max_segments=4, feature_dim=16)
    assert len(packed["tokens"]) == 1  # all three clips share one row (36 of 64 tokens)
    together = unpack_rows(np.asarray(run(model, packed)), packed, PATCH)
    for segment, out in zip(segments, together):
        alone = pack_rows([segment], seq_len=64, text_len=96, max_segments=4, feature_dim=16)  # same shapes: one compile
        expected = unpack_rows(np.asarray(run(model, alone)), alone, PATCH)[0]
        np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)
        assert np.abs(expected).max() > 1e-2  # the comparison is not between zeros


def test_rope_scores_depend_only_on_coordinate_differences():
    rng = np.random.default_rng(0)
    q, k = (jnp.asarray(rng.normal(size=(1, 10, 2, 24)).astype(np.float32)) for _ in range(2))
    coords = jnp.asarray(rng.integers(0, 20, size=(1, 10, 3)))

    def scores(c):
        cos, sin = rope_angles(c, 24)
        return jnp.einsum("blhd,bmhd->bhlm", apply_rope(q, cos, sin), apply_rope(k, cos, sin))

    shifted = coords + jnp.array([7, -3, 11])
    np.testing.assert_allclose(scores(coords), scores(shifted), atol=2e-4)
    assert np.abs(scores(coords) - jnp.einsum("blhd,bmhd->bhlm", q, k)).max() > 0.1  # RoPE does act


def segment_batch(seed=0, length=128, heads=2, head_dim=32):
    rng = np.random.default_rng(seed)
    q, k, v = (jnp.asarray(rng.normal(size=(2, length, heads, head_dim)).astype(np.float32)) for _ in range(3))
    ids = np.zeros((2, length), np.int32)
    ids[0, :50], ids[0, 50:100] = 1, 2  # two segments then padding
    ids[1, :] = 1  # one full-length segment
    return q, k, v, jnp.asarray(ids)


@pytest.mark.parametrize("implementation", ["xla", "flash_xla", "splash_interpret", "cudnn", "cudnn_packed"])
def test_attention_paths_mask_like_the_reference(implementation):
    gpu_only = implementation.startswith("cudnn")
    if gpu_only and jax.default_backend() != "gpu":
        pytest.skip("cuDNN flash attention needs an NVIDIA GPU; run this test on one")
    q, k, v, ids = segment_batch()
    # cuDNN takes bf16/fp16 only: compare against the reference on the same rounded inputs.
    dtype, out_tol, grad_tol = (jnp.bfloat16, 2e-2, 5e-2) if gpu_only else (jnp.float32, 2e-5, 5e-5)
    q, k, v = (x.astype(dtype) for x in (q, k, v))
    f32 = [x.astype(jnp.float32) for x in (q, k, v)]
    expected = reference_attention(*f32, ids, ids)
    out = attention(q, k, v, ids, ids, implementation)
    real = np.asarray(ids > 0)
    np.testing.assert_allclose(np.asarray(out, np.float32)[real], np.asarray(expected)[real], atol=out_tol)
    # Gradients through the kernel match too (real query rows only).
    loss = lambda f, *a: jnp.sum(f(*a).astype(jnp.float32) * (ids > 0)[..., None, None])  # noqa: E731
    grads = jax.grad(lambda q_: loss(functools.partial(attention, implementation=implementation), q_, k, v, ids, ids))(q)
    ref_grads = jax.grad(lambda q_: loss(reference_attention, q_, *f32[1:], ids, ids))(f32[0])
    np.testing.assert_allclose(np.asarray(grads, np.float32), np.asarray(ref_grads), atol=grad_tol)


def test_packed_layout_gives_each_segment_its_offset_and_length():
    ids = jnp.asarray([[1, 1, 1, 2, 2, 3, 0, 0], [1, 1, 1, 1, 1, 1, 1, 1]], jnp.int32)
    offsets, lengths = packed_layout(ids, max_segments=4)
    np.testing.assert_array_equal(np.asarray(offsets), [[0, 3, 5, -1, -1], [0, -1, -1, -1, -1]])
    np.testing.assert_array_equal(np.asarray(lengths), [[3, 2, 1, -1], [8, -1, -1, -1]])


def test_changing_another_segment_does_not_change_this_one():
    q, k, v, ids = segment_batch()
    out = attention(q, k, v, ids, ids, "xla")
    k2 = k.at[0, 60:90].add(5.0)  # perturb segment 2 of row 0
    out2 = attention(q, k2, v, ids, ids, "xla")
    np.testing.assert_array_equal(np.asarray(out[0, :50]), np.asarray(out2[0, :50]))
    assert np.abs(np.asarray(out[0, 50:100] - out2[0, 50:100])).max() > 1e-3


def train_batch(rows=4):
    segments = clip_segments(0) + clip_segments(1) + clip_segments(2) + clip_segments(3)
    packed = pack_rows(segments, seq_len=64, text_len=96, max_segments=4, feature_dim=16)
    assert len(packed["tokens"]) == rows
    return {k: v for k, v in packed.items() if k != "placement"}


def sharded_loss_and_grads(axes, devices):
    """Flow loss and gradients of the tiny model on a mesh, with fsdp+tensor rules."""
    batch = train_batch()
    loss_fn = functools.partial(flow_loss, c=FlowConfig(text_dropout=0.3))
    mesh, rules = parallel.make_mesh(axes, devices), parallel.get_rules("fsdp_tp")
    model, shardings = parallel.init_sharded(make_model, mesh, rules)
    graphdef, params = nnx.split(model)
    batch_sh = train_step.batch_shardings(batch, mesh, rules)
    fn = jax.jit(functools.partial(train_step.loss_and_grads, graphdef, loss_fn, mesh=mesh, rules=rules),
                 in_shardings=(shardings, batch_sh, None))
    (loss, _), grads = fn(params, {k: jax.device_put(v, batch_sh[k]) for k, v in batch.items()}, jax.random.key(3))
    return float(loss), jax.tree.map(np.asarray, grads), params


@pytest.fixture(scope="module")
def single_device_reference():
    loss, grads, _ = sharded_loss_and_grads({"data": 1}, jax.devices()[:1])
    return loss, grads


@pytest.mark.parametrize("mesh_axes", [{"fsdp": 4, "tensor": 2}, {"data": 2, "fsdp": 2, "tensor": 2}])
def test_sharded_loss_and_grads_equal_single_device(mesh_axes, single_device_reference):
    sharded_loss, sharded_grads, params = sharded_loss_and_grads(mesh_axes, jax.devices())
    kernel = params["dit"]["blocks"]["mlp"]["fc_in"]["kernel"][...]  # (layers, embed, mlp) over fsdp x tensor
    assert len(kernel.sharding.device_set) == 8 and kernel.addressable_shards[0].data.shape != kernel.shape
    loss, grads = single_device_reference
    assert abs(sharded_loss - loss) <= 1e-5 * abs(loss)
    for a, b in zip(jax.tree.leaves(sharded_grads), jax.tree.leaves(grads)):
        assert np.abs(a - b).max() <= 1e-5 * max(np.abs(b).max(), 1e-6) + 1e-7


def test_tiny_dit_overfits_fixed_latents_and_samples_them_back():
    """Two captioned latents, trained with the real sharded train step: flow loss falls at least 10x,
    and Euler sampling from noise with each caption lands close to that caption's latent."""
    from sora_jax.diffusion.sampler import SamplerConfig, sample

    rng = np.random.default_rng(0)
    latents = [rng.normal(size=(2, 4, 4, 4)).astype(np.float32), rng.normal(size=(1, 4, 6, 4)).astype(np.float32)]
    segments = [latent_segment(x, PATCH, TOKENIZER.encode(f"latent number {i}")) for i, x in enumerate(latents)]
    packed = pack_rows(segments, seq_len=16, text_len=32, max_segments=2, feature_dim=16)
    batch = {k: np.repeat(v, 4, axis=0) for k, v in packed.items() if k != "placement"}  # 4 copies: 4 noise draws

    flow = FlowConfig(text_dropout=0.0)
    mesh, rules = parallel.make_mesh({"data": 1}, jax.devices()[:1]), parallel.get_rules("fsdp")
    tx = optax.adam(3e-3)
    graphdef, state, shardings = train_step.create_train_state(lambda: make_model(scan_layers=False), tx, mesh, rules)
    batch_sh = train_step.batch_shardings(batch, mesh, rules)
    step = train_step.make_train_step(graphdef, functools.partial(flow_loss, c=flow), tx, shardings, batch_sh, mesh, rules)
    device_batch = {k: jax.device_put(v, batch_sh[k]) for k, v in batch.items()}
    losses = []
    for i in range(600):
        state, metrics = step(state, device_batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 600
    start, end = np.mean(losses[:20]), np.mean(losses[-50:])
    assert end < start / 10, (start, end)

    model = nnx.merge(graphdef, state.params)
    fields = {k: jnp.asarray(packed[k]) for k in ("coords", "segment_ids", "text_tokens", "text_segment_ids")}
    velocity = lambda x, t, conditional: model(x, fields["coords"], fields["segment_ids"], t,  # noqa: E731
                                               fields["text_tokens"], fields["text_segment_ids"])
    noise = jax.random.normal(jax.random.key(42), packed["tokens"].shape)
    out = sample(velocity, noise, fields["segment_ids"], 2, SamplerConfig(steps=25), flow)
    for latent, recovered in zip(latents, unpack_rows(np.asarray(out), packed, PATCH)):
        error = np.sqrt(np.mean((recovered - latent) ** 2))
        assert error < 0.25, error  # the latents have unit scale; noise alone would be ~1.4 away


def test_remat_and_layer_loop_do_not_change_the_math():
    """remat policies and the unscanned loop give the scanned model's loss and gradients."""
    batch = {k: jnp.asarray(v) for k, v in train_batch().items()}
    loss_fn = functools.partial(flow_loss, c=FlowConfig(text_dropout=0.0))

    def loss_and_grads(model):
        graphdef, params = nnx.split(model)
        fn = jax.jit(lambda p: jax.value_and_grad(lambda q: loss_fn(nnx.merge(graphdef, q), batch, jax.random.key(0))[0])(p))
        return fn(params)

    base_loss, base_grads = loss_and_grads(make_model())
    for policy in ("full", "dots_attention"):
        remat_loss, remat_grads = loss_and_grads(make_model(remat=policy))
        assert abs(float(remat_loss) - float(base_loss)) < 1e-6
        for a, b in zip(jax.tree.leaves(remat_grads), jax.tree.leaves(base_grads)):
            np.testing.assert_allclose(a, b, atol=1e-6)


def test_dots_attention_policy_keeps_attention_kernel_outputs():
    """`dots_attention` keeps a fused attention kernel's forward outputs for its backward (here a
    Pallas kernel in interpret mode with a hand-written VJP, as the attention kernels have): the
    gradient runs the forward kernel once; under `dots` the backward runs it a second time."""
    from jax.experimental import pallas as pl  # noqa: PLC0415

    from sora_jax.models.dit.model import REMAT  # noqa: PLC0415

    def kernel(x_ref, out_ref, stats_ref):
        out_ref[...] = jnp.exp(x_ref[...])
        stats_ref[...] = jnp.cos(x_ref[...])

    def forward_kernel(h):
        shape = jax.ShapeDtypeStruct(h.shape, h.dtype)
        return pl.pallas_call(kernel, out_shape=(shape, shape), interpret=True)(h)

    @jax.custom_vjp
    def fused(h):
        return forward_kernel(h)[0]

    def fused_fwd(h):
        out, stats = forward_kernel(h)
        return out, (out, stats)  # the backward reads the output and the statistics

    fused.defvjp(fused_fwd, lambda res, g: (g * res[0] * res[1],))

    def block(x, w):
        return jnp.sum(jnp.sin(fused(x @ w)))

    x, w = jax.random.normal(jax.random.key(0), (2, 8, 8))

    def forward_kernel_runs(policy):
        grad = jax.grad(jax.checkpoint(block, policy=REMAT[policy]), argnums=(0, 1))
        return str(jax.make_jaxpr(grad)(x, w)).count("pallas_call")

    assert forward_kernel_runs("dots") == 2
    assert forward_kernel_runs("dots_attention") == 1
    expected = jax.grad(block, argnums=(0, 1))(x, w)
    got = jax.grad(jax.checkpoint(block, policy=REMAT["dots_attention"]), argnums=(0, 1))(x, w)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_bfloat16_compute_tracks_float32():
    segments = clip_segments()
    packed = pack_rows(segments, seq_len=64, text_len=96, max_segments=4, feature_dim=16)
    out32 = np.asarray(run(randomize(make_model()), packed))
    out16 = np.asarray(run(randomize(make_model(dtype="bfloat16")), packed))
    assert out16.dtype == np.float32  # the head runs in float32 whatever the compute dtype
    real = packed["segment_ids"][0] > 0
    relative = np.linalg.norm(out16[0][real] - out32[0][real]) / np.linalg.norm(out32[0][real])
    assert relative < 0.05, relative


def test_splash_runs_per_shard_under_a_mesh():
    """Mosaic kernels cannot be auto-partitioned: under a mesh, splash runs in shard_map over rows and
    heads and still matches the reference."""
    q, k, v, ids = segment_batch(heads=4)
    q, k, v, ids = (jnp.concatenate([x, x[::-1]]) for x in (q, k, v, ids))  # 4 rows over data x fsdp = 4
    mesh, rules = parallel.make_mesh({"data": 2, "fsdp": 2, "tensor": 2}), parallel.get_rules("fsdp_tp")

    @jax.jit
    def run(q, k, v, ids):
        with parallel.use_mesh_rules(mesh, rules):
            return attention(q, k, v, ids, ids, "splash_interpret")

    out = run(q, k, v, ids)
    expected = reference_attention(q, k, v, ids, ids)
    real = np.asarray(ids > 0)
    np.testing.assert_allclose(np.asarray(out)[real], np.asarray(expected)[real], atol=2e-5)
    with pytest.raises(ValueError, match="ring attention"):
        with parallel.use_mesh_rules(mesh, parallel.get_rules("fsdp_tp_sp")):
            attention(q, k, v, ids, ids, "splash_interpret")


def test_auto_attention_picks_by_backend_dtype_and_key_length():
    bf16, f32 = jnp.bfloat16, jnp.float32
    assert resolve("auto:gpu", bf16, 16384, 16384) == "cudnn_packed"  # long self-attention
    assert resolve("auto:gpu", bf16, 16384, 256) == "xla"  # text cross-attention: dense scores are small
    assert resolve("auto:gpu", f32, 1024, 1024) == "xla"  # cuDNN takes no float32
    assert resolve("auto:gpu", f32, 16384, 16384) == "flash_xla"  # ... nor dense 16k x 16k scores
    assert resolve("auto:tpu", f32, 16384, 256) == "splash"
    assert resolve("auto:cpu", bf16, 16384, 16384) == "flash_xla"
    assert resolve("cudnn", f32, 8, 8) == "cudnn"  # an explicit choice is kept
    with pytest.raises(ValueError, match="unknown attention implementation"):
        resolve("auto:npu")
