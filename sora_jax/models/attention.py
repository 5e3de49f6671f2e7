"""The one attention dispatch point: segment-masked attention on XLA, cuDNN or Pallas splash.

Every attention in the project (DiT self- and cross-attention, captioner) calls `attention`. A
query attends only to keys of its own segment: packed rows hold many clips, and a clip must never
see another clip's tokens or padding. Padding queries (segment 0) attend to padding keys, so every
softmax row is well defined; their outputs are masked out of the loss downstream.

Implementations:
- `xla`: `jax.nn.dot_product_attention(implementation="xla")` with a boolean segment mask (dense
  scores).
- `flash_xla`: blockwise attention in plain JAX with a FlashAttention-style custom VJP
  (`sora_jax.models.flash_xla`); 3-4x faster than `xla` on CPU for 1k-token rows.
- `cudnn`: the same call with `implementation="cudnn"` (flash attention on NVIDIA GPUs). jax turns
  the boolean mask into a dense `(B, 1, Lq, Lk)` bias the kernel reads: every block is computed.
- `cudnn_packed`: cuDNN's packed ("ragged") layout: each segment's start offset and length per row,
  so the kernel computes only the blocks inside a segment. Needs each segment's tokens contiguous (as
  `pack_rows` and the Grain packer lay them out), bf16/fp16 inputs, and at most `MAX_PACKED_SEGMENTS`
  segments a row; padding queries get zero output (nothing downstream reads it).
- `splash`: Pallas splash attention on TPU with `SegmentIds`, which skips fully-masked blocks.
  Mosaic kernels cannot be partitioned by XLA, so under a mesh (`sora_jax.parallel.use_mesh_rules`)
  the kernel runs per shard in `shard_map`: rows split over the batch axes, heads over the tensor
  axis (sequence-sharded attention would need ring attention and is refused).
  `splash_interpret` runs the same kernel in the Pallas interpreter (CPU tests).
- `auto`: chosen per call from the backend, dtype and key length (`resolve`): on TPU splash; on GPU
  `cudnn_packed` for bf16/fp16 self-attention, `xla` for short keys (<= `SHORT_KV` tokens: the text
  of cross-attention, whose dense scores are small, while every cuDNN backward call pays a fixed
  ~3.8 ms preprocessing kernel at 16k queries, measured on an H200) and for float32 (which cuDNN
  does not take; `flash_xla` when dense scores would pass `DENSE_LIMIT` entries); elsewhere
  flash_xla. `auto:gpu`, `auto:tpu` and `auto:cpu` make the same choice for a named backend (AOT
  compilation for a target that is not attached).

`reference_attention` (einsum and softmax in float32) is the definition all of them are tested against.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec

from sora_jax.models.flash_xla import blockwise_attention
from sora_jax.parallel import current_mesh_rules, logical_spec

IMPLEMENTATIONS = ("auto", "auto:gpu", "auto:tpu", "auto:cpu", "xla", "flash_xla", "cudnn", "cudnn_packed",
                   "splash", "splash_interpret")
MAX_PACKED_SEGMENTS = 256  # segment ids above this get no attention output under `cudnn_packed`
SHORT_KV = 512  # on GPU, keys up to this long use dense XLA attention
DENSE_LIMIT = 1 << 24  # on GPU in float32, query x key entries per row and head above this use flash_xla


def resolve(implementation: str, dtype=None, q_len: int | None = None, kv_len: int | None = None) -> str:
    """The concrete implementation `implementation` stands for (see the module docstring for `auto`).

    `dtype`, `q_len` and `kv_len` describe the call (the query's dtype and the two lengths); without
    them `auto` on GPU assumes half-precision self-attention.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"unknown attention implementation {implementation!r}; known: {IMPLEMENTATIONS}")
    if not implementation.startswith("auto"):
        return implementation
    backend = implementation.partition(":")[2] or jax.default_backend()
    if backend == "tpu":
        return "splash"
    if backend != "gpu":
        return "flash_xla"
    half = dtype is None or jnp.dtype(dtype) in (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
    if half and (kv_len is None or kv_len > SHORT_KV):
        return "cudnn_packed"
    dense = q_len is None or kv_len is None or q_len * kv_len <= DENSE_LIMIT
    return "xla" if dense or kv_len <= SHORT_KV else "flash_xla"


def segment_mask(q_segment_ids: jax.Array, kv_segment_ids: jax.Array) -> jax.Array:
    """Boolean mask `(B, 1, Lq, Lk)`: True where query and key share a segment id."""
    return q_segment_ids[:, None, :, None] == kv_segment_ids[:, None, None, :]  # (B, 1, Lq, Lk)


def attention(
    query: jax.Array,
    key: jax.Array,
    value: jax.Array,
    q_segment_ids: jax.Array,
    kv_segment_ids: jax.Array,
    implementation: str = "auto",
) -> jax.Array:
    """Segment-masked multi-head attention.

    Args:
      query `(B, Lq, H, D)`, key and value `(B, Lk, H, D)`; q_segment_ids `(B, Lq)` and
      kv_segment_ids `(B, Lk)` int32 (0 = padding); implementation: one of `IMPLEMENTATIONS`.
    Returns:
      `(B, Lq, H, D)` in the query's dtype.
    """
    implementation = resolve(implementation, query.dtype, query.shape[1], key.shape[1])
    if implementation in ("xla", "cudnn"):
        mask = segment_mask(q_segment_ids, kv_segment_ids)  # (B, 1, Lq, Lk)
        return jax.nn.dot_product_attention(query, key, value, mask=mask, implementation=implementation)
    if implementation == "cudnn_packed":
        return _cudnn_packed(query, key, value, q_segment_ids, kv_segment_ids)
    if implementation == "flash_xla":
        return blockwise_attention(query, key, value, q_segment_ids, kv_segment_ids, block=128)
    interpret = implementation == "splash_interpret"
    context = current_mesh_rules()
    if context is None:
        return _splash(query, key, value, q_segment_ids, kv_segment_ids, interpret=interpret)
    return _sharded_splash(query, key, value, q_segment_ids, kv_segment_ids, interpret, *context)


def _sharded_splash(query, key, value, q_segment_ids, kv_segment_ids, interpret, mesh, rules):
    """Splash attention per shard: `(B, L, H, D)` split over batch axes (rows) and heads."""
    if logical_spec(("length",), rules)[0] is not None:
        raise ValueError("splash attention with sequence-sharded tokens needs ring attention, which is not "
                         "implemented; use rules without 'length' sharding or attention='flash_xla'")
    rows, heads = logical_spec(("batch",), rules)[0], logical_spec(("heads",), rules)[0]
    qkv = PartitionSpec(rows, None, heads, None)
    ids = PartitionSpec(rows, None)
    kernel = functools.partial(_splash, interpret=interpret)
    return jax.shard_map(kernel, mesh=mesh, in_specs=(qkv, qkv, qkv, ids, ids), out_specs=qkv, check_vma=False)(
        query, key, value, q_segment_ids, kv_segment_ids)


def packed_layout(segment_ids: jax.Array, max_segments: int = MAX_PACKED_SEGMENTS) -> tuple[jax.Array, jax.Array]:
    """cuDNN's packed layout of a row of contiguous segments (ids 1..M, 0 = padding).

    Returns `offsets (B, M + 1)` (each segment's first index) and `lengths (B, M)` (its token count),
    both -1 for segment ids a row does not use.
    """
    positions = jnp.arange(segment_ids.shape[1], dtype=jnp.int32)

    def one_row(ids):  # O(L) scatters; ids above max_segments fall outside and are dropped
        lengths = jax.ops.segment_sum(jnp.ones_like(positions), ids, num_segments=max_segments + 1)
        starts = jax.ops.segment_min(positions, ids, num_segments=max_segments + 1)
        return starts[1:], lengths[1:]  # (M,) each; index 0 is padding

    starts, lengths = jax.vmap(one_row)(segment_ids)  # (B, M) each
    used = lengths > 0
    pad = jnp.full((segment_ids.shape[0], 1), -1, jnp.int32)
    return jnp.concatenate([jnp.where(used, starts, -1), pad], axis=1), jnp.where(used, lengths, -1)


@jax.custom_vjp
def _zero_grad_outside(x: jax.Array, inside: jax.Array) -> jax.Array:
    """Identity on `x (B, L, H, D)`; its gradient is zeroed where `inside (B, L)` is False."""
    return x


def _zero_grad_outside_fwd(x, inside):
    return x, inside


def _zero_grad_outside_bwd(inside, g):
    return jnp.where(inside[:, :, None, None], g, 0).astype(g.dtype), None


_zero_grad_outside.defvjp(_zero_grad_outside_fwd, _zero_grad_outside_bwd)


def _cudnn_packed(query, key, value, q_segment_ids, kv_segment_ids) -> jax.Array:
    """cuDNN flash attention over packed segments: only blocks inside a segment are computed.

    The kernel leaves the output and the q/k/v gradients of tokens outside every segment (padding)
    unwritten, so those are zeroed here: NaN there would reach the parameters through 0 * NaN. (The
    heads-major "BNTH" layout of the same kernel hit an illegal memory access on an H200.)
    """
    from jax._src.cudnn.fused_attention_stablehlo import MaskType  # noqa: PLC0415
    from jax._src.cudnn.fused_attention_stablehlo import dot_product_attention as cudnn_attention  # noqa: PLC0415

    q_offsets, q_lengths = packed_layout(q_segment_ids)
    kv_offsets, kv_lengths = (  # self-attention: the same ids, laid out once
        (q_offsets, q_lengths) if kv_segment_ids is q_segment_ids else packed_layout(kv_segment_ids))
    q_in, kv_in = q_segment_ids > 0, kv_segment_ids > 0
    query = _zero_grad_outside(query, q_in)
    key, value = _zero_grad_outside(key, kv_in), _zero_grad_outside(value, kv_in)
    out = cudnn_attention(
        query, key, value, None, None, q_lengths, kv_lengths, q_offsets, kv_offsets,
        scale=query.shape[-1] ** -0.5, mask_type=MaskType.PADDING, qkv_layout="BTNH",
    )  # (B, Lq, H, D); rows outside every segment are undefined
    return jnp.where(q_in[:, :, None, None], out, 0).astype(query.dtype)


def reference_attention(query, key, value, q_segment_ids, kv_segment_ids) -> jax.Array:
    """Plain-einsum attention in float32: the definition the kernels are tested against."""
    scale = query.shape[-1] ** -0.5
    logits = jnp.einsum("bqhd,bkhd->bhqk", query.astype(jnp.float32), key.astype(jnp.float32)) * scale
    logits = jnp.where(segment_mask(q_segment_ids, kv_segment_ids), logits, -1e30)  # (B, H, Lq, Lk)
    weights = jax.nn.softmax(logits, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, value.astype(jnp.float32)).astype(query.dtype)


def _splash(query, key, value, q_segment_ids, kv_segment_ids, *, interpret: bool) -> jax.Array:
    """Pallas splash attention, vmapped over the batch; lengths must be multiples of 128."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as splash
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as mask_lib

    _, q_len, heads, head_dim = query.shape
    kv_len = key.shape[1]
    if q_len % 128 or kv_len % 128:
        raise ValueError(f"splash attention needs lengths that are multiples of 128, got {q_len} and {kv_len}")
    block_q, block_kv = min(512, q_len), min(512, kv_len)
    kernel = splash.make_splash_mha(
        mask=mask_lib.MultiHeadMask([mask_lib.FullMask((q_len, kv_len))] * heads),
        block_sizes=splash.BlockSizes(
            block_q=block_q, block_kv=block_kv, block_kv_compute=block_kv,
            block_q_dkv=block_q, block_kv_dkv=block_kv, block_kv_dkv_compute=block_kv,
            block_q_dq=block_q, block_kv_dq=block_kv,
        ),
        head_shards=1, q_seq_shards=1, interpret=interpret,
    )
    scale = head_dim ** -0.5

    def one(q, k, v, q_ids, kv_ids):  # (L, H, D) each: splash wants (H, L, D)
        out = kernel(
            (q * scale).swapaxes(0, 1), k.swapaxes(0, 1), v.swapaxes(0, 1),
            segment_ids=splash.SegmentIds(q=q_ids, kv=kv_ids),
        )  # (H, Lq, D)
        return out.swapaxes(0, 1)  # (Lq, H, D)

    return jax.vmap(one)(query, key, value, q_segment_ids, kv_segment_ids)
