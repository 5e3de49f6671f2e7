"""The Diffusion Transformer over packed rows of spacetime patches.

Inputs are packed rows (see `data_pipelines.packing`): noisy patch tokens with their `(t, h, w)`
coordinates and segment ids, a flow time per token (known frames sit at t = 0), and text
embeddings with their own segment ids. Each token attends only within its segment and
cross-attends only to its segment's text, so a row of many clips computes exactly what each clip
would alone. Output: the predicted velocity per token, in patch space.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
from flax import nnx

from sora_jax.models.dit.config import DiTConfig
from sora_jax.models.dit.layers import MLP, Attention, LayerNorm, dense, timestep_features
from sora_jax.models.dit.rope import rope_angles
from sora_jax.parallel import constrain

MAX_DISTINCT_TIMES = 16  # time-MLP evaluations per row; a row of S segments has at most S + 1 distinct times
# Forward primitives of fused attention kernels whose outputs (attention output and softmax
# statistics: what their backward reads) the `dots_attention` policy keeps: cuDNN's (GPU) and any
# Pallas kernel (TPU splash). Under `dots` they are recomputed in the backward pass, which re-runs
# the attention forward kernel, the costliest part of a long-sequence step.
ATTENTION_FORWARD_PRIMITIVES = ("dot_product_attention_fwd_wrapper", "pallas_call")


def dots_and_attention_saveable(prim, *args, **params) -> bool:
    """Remat policy: keep matmul/conv outputs and fused attention kernels' forward outputs."""
    return (jax.checkpoint_policies.checkpoint_dots(prim, *args, **params)
            or prim.name in ATTENTION_FORWARD_PRIMITIVES)


REMAT = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
    "dots_attention": dots_and_attention_saveable,
}


class DiTBlock(nnx.Module):
    """Self-attention, cross-attention and MLP with adaLN-Zero modulation from per-token timesteps."""

    def __init__(self, c: DiTConfig, *, rngs: nnx.Rngs):
        dtype = c.compute_dtype
        self.norm1 = LayerNorm(c.dim, eps=c.eps, affine=False, rngs=rngs)
        self.self_attn = Attention(c.dim, c.heads, c.dim, eps=c.eps, dtype=dtype, implementation=c.attention, rngs=rngs)
        self.norm2 = LayerNorm(c.dim, eps=c.eps, affine=True, rngs=rngs)
        self.cross_attn = Attention(c.dim, c.heads, c.dim, eps=c.eps, dtype=dtype, implementation=c.attention, rngs=rngs)
        self.norm3 = LayerNorm(c.dim, eps=c.eps, affine=False, rngs=rngs)
        self.mlp = MLP(c.dim, c.mlp_dim, dtype=dtype, rngs=rngs)
        table = jax.random.normal(rngs.params(), (6, c.dim), jnp.float32) / c.dim**0.5
        self.modulation = nnx.Param(table, out_sharding=(None, "embed"))

    def __call__(self, x, time_mod, rope, segment_ids, text, text_segment_ids) -> jax.Array:
        """One block; `time_mod` is the six `(B, L, D)` per-token modulation terms (see `DiT._time_terms`)."""
        table = self.modulation[...]  # (6, D) float32
        shift_sa, scale_sa, gate_sa, shift_ff, scale_ff, gate_ff = (
            (table[i] + time_mod[i].astype(jnp.float32)).astype(x.dtype) for i in range(6))  # (B, L, D) each
        hidden = self.norm1(x) * (1 + scale_sa) + shift_sa
        x = x + gate_sa * self.self_attn(hidden, segment_ids, hidden, segment_ids, rope)
        x = x + self.cross_attn(self.norm2(x), segment_ids, text, text_segment_ids)
        hidden = self.norm3(x) * (1 + scale_ff) + shift_ff
        x = x + gate_ff * self.mlp(hidden)
        return constrain(x, ("batch", "length", "embed"))  # (B, L, D)


class DiT(nnx.Module):
    """Patch embedding, timestep and text conditioning, a stack of DiT blocks, and the output head."""

    def __init__(self, c: DiTConfig, *, rngs: nnx.Rngs):
        self.config = c
        dtype = c.compute_dtype
        self.patch_embed = dense(c.patch_dim, c.dim, ("patch", "embed"), dtype=dtype, rngs=rngs)
        self.time_embed_1 = dense(c.freq_dim, c.dim, (None, "embed"), dtype=jnp.float32, rngs=rngs)
        self.time_embed_2 = dense(c.dim, c.dim, ("embed", None), dtype=jnp.float32, rngs=rngs)
        self.time_proj = dense(c.dim, 6 * c.dim, ("embed", None), dtype=jnp.float32, rngs=rngs)
        self.text_embed_1 = dense(c.text_dim, c.dim, (None, "embed"), dtype=dtype, rngs=rngs)
        self.text_embed_2 = dense(c.dim, c.dim, ("embed", None), dtype=dtype, rngs=rngs)
        if c.scan_layers:
            self.blocks = _stacked_blocks(c, rngs)
        else:
            self.blocks = nnx.List([DiTBlock(c, rngs=rngs) for _ in range(c.depth)])
        self.norm_out = LayerNorm(c.dim, eps=c.eps, affine=False, rngs=rngs)
        table = jax.random.normal(rngs.params(), (2, c.dim), jnp.float32) / c.dim**0.5
        self.out_modulation = nnx.Param(table, out_sharding=(None, "embed"))
        self.proj_out = dense(c.dim, c.patch_dim, ("embed", "patch"), dtype=jnp.float32, rngs=rngs,
                              kernel_init=nnx.initializers.zeros_init())

    def __call__(self, tokens, coords, segment_ids, timesteps, text, text_segment_ids) -> jax.Array:
        """Velocity prediction.

        Args:
          tokens `(B, L, patch_dim)` noisy patches; coords `(B, L, 3)` int; segment_ids `(B, L)` int
          (0 = padding); timesteps `(B, L)` flow time per token; text `(B, Lt, text_dim)` embeddings;
          text_segment_ids `(B, Lt)`.
        Returns:
          `(B, L, patch_dim)` float32 velocity.
        """
        c = self.config
        x = self.patch_embed(tokens.astype(c.compute_dtype))  # (B, L, D)
        x = constrain(x, ("batch", "length", "embed"))
        temb, time_mod = self._time_terms(timesteps)  # (B, L, D), 6 x (B, L, D)
        context = self.text_embed_2(jax.nn.gelu(self.text_embed_1(text.astype(c.compute_dtype)), approximate=True))  # (B, Lt, D)
        rope = rope_angles(coords, c.head_dim, c.rope_theta)  # 2 x (B, L, Dh/2)
        x = self._run_blocks(x, time_mod, rope, segment_ids, context, text_segment_ids)
        table = self.out_modulation[...]  # (2, D)
        shift, scale = table[0] + temb, table[1] + temb  # (B, L, D)
        x = self.norm_out(x).astype(jnp.float32) * (1 + scale) + shift  # (B, L, D)
        return self.proj_out(x)  # (B, L, patch_dim)

    def _time_terms(self, timesteps):
        """Timestep embedding `(B, L, D)` and the six adaLN terms `6 x (B, L, D)` of per-token times.

        A row's tokens share a handful of times (one per segment, 0 for known frames and padding), so
        the time MLPs run once per distinct value and a one-hot matmul spreads the results over the
        tokens; that also keeps the per-token gradients out of a `(L, D) x (D, 6D)` weight-gradient
        matmul. Batches with a row of more than `MAX_DISTINCT_TIMES` distinct times (or a non-finite
        time) take the per-token path; both paths compute the same function.
        The six terms are separate arrays so every block's gradients add into them directly (slices of
        one `(B, L, 6, D)` array would pad and re-add the whole array once per block).
        """
        c = self.config

        def embed(t):  # (..., ) -> (..., D), (..., 6D)
            temb = self.time_embed_2(jax.nn.silu(self.time_embed_1(timestep_features(t, c.freq_dim))))
            return temb, self.time_proj(jax.nn.silu(temb))

        def per_value(t):
            values, onehot = distinct_times(t, MAX_DISTINCT_TIMES)  # (B, K), (B, K, L)
            temb, mod = embed(values)  # (B, K, D), (B, K, 6D)
            spread = lambda v: jnp.einsum("bkl,bkd->bld", onehot, v)  # noqa: E731  (B, K, D) -> (B, L, D)
            return spread(temb), tuple(spread(m) for m in jnp.split(mod, 6, axis=-1))

        def per_token(t):
            temb, mod = embed(t)  # (B, L, D), (B, L, 6D)
            return temb, tuple(jnp.split(mod, 6, axis=-1))

        few = jnp.all(count_distinct(timesteps) <= MAX_DISTINCT_TIMES) & jnp.all(jnp.isfinite(timesteps))
        return jax.lax.cond(few, per_value, per_token, timesteps.astype(jnp.float32))

    def _run_blocks(self, x, time_mod, rope, segment_ids, context, text_segment_ids):
        c = self.config
        call = lambda block, h: block(h, time_mod, rope, segment_ids, context, text_segment_ids)  # noqa: E731
        if c.remat != "none":
            call = nnx.remat(call, policy=REMAT[c.remat])
        if not c.scan_layers:
            for block in self.blocks:
                x = call(block, x)
            return x

        @nnx.scan(in_axes=(nnx.Carry, 0), out_axes=nnx.Carry, transform_metadata={nnx.PARTITION_NAME: "layers"})
        def body(h, block):
            return call(block, h)

        return body(x, self.blocks)


def count_distinct(timesteps: jax.Array) -> jax.Array:
    """Number of distinct values in each row of `timesteps (B, L)`: `(B,)` int (NaNs count once each)."""
    ordered = jnp.sort(timesteps, axis=-1)  # (B, L)
    return 1 + jnp.sum(ordered[:, 1:] != ordered[:, :-1], axis=-1)  # (B,)


def distinct_times(timesteps: jax.Array, max_values: int) -> tuple[jax.Array, jax.Array]:
    """The distinct values of each row of `timesteps (B, L)` and which token holds which.

    Returns `values (B, K)` (unused slots hold 0) and the float one-hot `(B, K, L)`: 1 where token
    `l` has value `k`. Exact when every row has at most `K = max_values` distinct values (see
    `count_distinct`); a row with more loses the largest.
    """
    ordered = jnp.sort(timesteps, axis=-1)  # (B, L)
    first = jnp.concatenate([jnp.ones_like(ordered[:, :1], bool), ordered[:, 1:] != ordered[:, :-1]], axis=1)  # (B, L)
    slot = jnp.where(first, jnp.cumsum(first, axis=1) - 1, -1)  # (B, L): distinct-value index at first occurrences
    picks = (slot[:, None, :] == jnp.arange(max_values)[None, :, None]).astype(timesteps.dtype)  # (B, K, L)
    values = jnp.einsum("bkl,bl->bk", picks, ordered)  # (B, K): one pick per used slot, so the sum is exact
    used = jnp.sum(picks, axis=-1) > 0  # (B, K)
    onehot = (timesteps[:, None, :] == values[:, :, None]) & used[:, :, None]  # (B, K, L)
    return values, onehot.astype(timesteps.dtype)


def _stacked_blocks(c: DiTConfig, rngs: nnx.Rngs) -> DiTBlock:
    """`depth` DiT blocks with parameters stacked on a leading `layers` axis, for `nnx.scan`."""

    @nnx.split_rngs(splits=c.depth)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make(rngs: nnx.Rngs) -> DiTBlock:
        return DiTBlock(c, rngs=rngs)

    return make(rngs)


def count_params(model: nnx.Module) -> int:
    """Number of parameters of a module."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
