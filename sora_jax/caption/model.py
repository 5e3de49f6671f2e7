"""The captioner: a transformer over packed spacetime patches (pixels or VAE latents) and an
autoregressive text decoder that writes each segment's detailed caption.

Input rows are the DiT's packed rows (`data_pipelines.packing`): many clips per row, each a segment
of patches with `(t, h, w)` coordinates. The encoder embeds patches linearly (or with a conv stem that
equals a CNN over whole frames, `stem.py`) and attends within each segment with 3D RoPE from the
coordinates, so any duration, resolution and aspect works. Decoder sequence k of a row captions
segment k + 1 of that row.

RoPE is relative: it tells a patch how far away another patch is, not where in the frame it sits.
Captions say where ("in the top left", "bounces off the right wall") and when ("at frame 7"), so
with `frame_position` each patch also gets an embedding of its place in its own frame (height and
width scaled to [-1, 1] by the segment's grid, so the same for any resolution or aspect) and of its
frame index (`frame_position_features`).

A caption names each attribute once among 20-200 words, so under the caption loss alone the
encoder is barely asked for the features that decide a rare word (shape, in Shapes World: one
word in ~20, stuck at chance while colour and size were learnt). With `concepts` a word-detection
head reads each segment's max-pooled memory and predicts which vocabulary words its caption
contains (multi-label, as the visual concept detectors of Fang et al., "From captions to visual
concepts and back", 2015). Its targets are the caption's own words, so it needs no labels beyond
the captions, and every word of every caption gets a direct per-clip gradient into the encoder.

With `identity_init` the encoder blocks start as the identity (zero output projections, as
adaLN-Zero starts the DiT's blocks), so at initialisation the memory is the stem's features and
the blocks add to them as they learn. In the shape probe, three randomly initialised blocks between
the conv stem and the readout delayed shape learning; started as the identity they did not
(docs/caption.md).

The decoder reads the encoder only through cross-attention, which starts near uniform over all of a
segment's patches, so an object's few patches reach it diluted by the background. In the motion
probe a learned query reading the memory that way sat at chance for 500-750 steps (one seed: all
1,500), while max pooling over the same memory named falls at 0.9 within 500, and appending the max
pooling to the memory as one more token did not help: the query has to find that token too
(docs/caption.md). With `memory_summary` the segment's normalised max pooling is added to every
decoder input of its caption (as show-and-tell captioners feed the image feature in), a path that
needs no attention; the cross-attention to the patches stays for binding ("the red one").
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from sora_jax.caption.layers import EncoderBlock, TextDecoder, layer_norm
from sora_jax.caption.stem import ConvStem, grid_extent
from sora_jax.models.dit.layers import dense
from sora_jax.models.dit.rope import rope_angles


@dataclasses.dataclass(frozen=True)
class CaptionerConfig:
    """Sizes of the captioner.

    Attributes:
      patch_dim: features of one input patch (pt * ph * pw * channels).
      vocab_size: caption tokenizer vocabulary (the decoder adds a start token).
      dim, heads, mlp_dim: width, attention heads and MLP width of encoder and decoder.
      encoder_depth, decoder_depth: blocks in each.
      max_caption_len: longest caption in tokens, end token included (decoder positions, KV cache).
      dtype: compute dtype ("float32" or "bfloat16"); parameters stay float32.
      attention: implementation for segment-masked attention (`sora_jax.models.attention`).
      stem: "linear" (one matrix per patch) or "conv" (`stem.ConvStem`, a CNN over whole frames).
      stem_widths: the conv stem's layer widths (1 + log2 of the patch side of them).
      stem_kernel: kernel of the conv stem's stride-2 layers after the second (2 or 3, `stem.py`).
      stem_motion: the conv stem also reads each frame's difference from the previous one (`stem.py`).
      patch, channels: patch `(pt, ph, pw)` and channels per pixel (the conv stem's input layout).
      frame_position: add an embedding of each patch's place in its frame and its frame index
        (module docstring); its projection starts at zero.
      concepts: add the word-detection head (module docstring, `concept_logits`).
      identity_init: the encoder blocks start as the identity (`EncoderBlock.start_as_identity`),
        so the memory starts as the patch embedding's features (module docstring).
      memory_summary: every decoder input of a caption gains its segment's max-pooled memory
        (normalised, through a projection that starts at zero; module docstring).
    """

    patch_dim: int
    vocab_size: int
    dim: int = 128
    heads: int = 4
    mlp_dim: int = 512
    encoder_depth: int = 3
    decoder_depth: int = 2
    max_caption_len: int = 160
    eps: float = 1e-6
    dtype: str = "float32"
    attention: str = "auto"
    rope_theta: float = 10000.0
    stem: str = "linear"
    stem_widths: tuple[int, ...] = ()
    stem_kernel: int = 2
    stem_motion: bool = False
    patch: tuple[int, int, int] = (1, 1, 1)
    channels: int = 3
    frame_position: bool = False
    concepts: bool = False
    identity_init: bool = False
    memory_summary: bool = False

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


def check_sizes(dim: int, heads: int, what: str) -> None:
    """ValueError unless `dim` splits into `heads` heads of an even size >= 6 (3D RoPE needs pairs per axis)."""
    if heads < 1 or dim % heads or (dim // heads) % 2 or dim // heads < 6:
        raise ValueError(f"config: {what}: dim ({dim}) must split into {heads} heads of an even size >= 6")


SPATIAL_HARMONICS = (1, 2, 3, 4)  # sin/cos(pi * k * u / 2) of u in [-1, 1]: k=1 is monotone across the frame
FRAME_PERIODS = (4, 8, 16, 32, 64)  # sin/cos(2 pi t / P) of the patch frame index t
POSITION_FEATURES = 4 * len(SPATIAL_HARMONICS) + 2 * len(FRAME_PERIODS)
CONCEPT_PRIOR = 4.0  # concept logits start near sigmoid(-4) = 0.018: a caption holds few of the vocabulary's words


def frame_position_features(coords: jax.Array, segment_ids: jax.Array) -> jax.Array:
    """Fourier features `(B, L, POSITION_FEATURES)` of where each token sits in its own frame and when.

    Height and width become `u = (2 * (x + 0.5) / size) - 1` in (-1, 1), with `size` the token's
    segment grid size, so a patch at the left edge reads the same at 32 or 256 pixels; the time
    coordinate is the patch frame index itself (captions name frames counted from the clip's start).
    """
    extent = grid_extent(coords, segment_ids).astype(jnp.float32)  # (B, L, 3)
    u = 2.0 * (coords[..., 1:].astype(jnp.float32) + 0.5) / extent[..., 1:] - 1.0  # (B, L, 2)
    spatial = jnp.pi / 2 * u[..., None] * jnp.asarray(SPATIAL_HARMONICS, jnp.float32)  # (B, L, 2, K)
    frames = 2 * jnp.pi * coords[..., :1].astype(jnp.float32) / jnp.asarray(FRAME_PERIODS, jnp.float32)  # (B, L, P)
    angles = jnp.concatenate([spatial.reshape(*u.shape[:2], -1), frames], axis=-1)  # (B, L, 2K + P)
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)  # (B, L, POSITION_FEATURES)


class Captioner(nnx.Module):
    """Patch encoder (segment-masked, 3D RoPE) plus caption decoder; see the module docstring."""

    def __init__(self, config: CaptionerConfig, *, rngs: nnx.Rngs):
        check_sizes(config.dim, config.heads, "model")
        self.config = config
        dtype = jnp.dtype(config.dtype)
        block_args = dict(eps=config.eps, dtype=dtype, implementation=config.attention, rngs=rngs)
        if config.stem == "conv":
            self.patch_embed = ConvStem(config.patch, config.channels, config.stem_widths, config.dim, dtype=dtype,
                                        rngs=rngs, deep_kernel=config.stem_kernel, motion=config.stem_motion)
        else:
            self.patch_embed = dense(config.patch_dim, config.dim, (None, "embed"), dtype=dtype, rngs=rngs)
        self.encoder = nnx.List([EncoderBlock(config.dim, config.heads, config.mlp_dim, **block_args)
                                 for _ in range(config.encoder_depth)])
        for block in self.encoder if config.identity_init else ():
            block.start_as_identity()
        self.encoder_norm = layer_norm(config.dim, config.eps, rngs)
        self.decoder = TextDecoder(config.vocab_size, config.dim, config.decoder_depth, config.heads, config.mlp_dim,
                                   config.max_caption_len, **block_args)
        if config.frame_position:  # created last and zero: switching it on leaves the other weights as they were
            self.position_embed = dense(POSITION_FEATURES, config.dim, (None, "embed"), dtype=dtype, rngs=rngs,
                                        kernel_init=nnx.initializers.zeros_init())
        if config.memory_summary:
            self.summary_norm = layer_norm(config.dim, config.eps, rngs)
            self.summary_proj = dense(config.dim, config.dim, ("embed", None), dtype=dtype, rngs=rngs,
                                      kernel_init=nnx.initializers.zeros_init())
        if config.concepts:
            self.concept_norm = layer_norm(config.dim, config.eps, rngs)
            self.concept_head = dense(config.dim, config.vocab_size, ("embed", "vocab"), dtype=dtype, rngs=rngs)

    def encode(self, tokens: jax.Array, coords: jax.Array, segment_ids: jax.Array) -> jax.Array:
        """Memory `(B, L, D)` of packed patches `tokens (B, L, patch_dim)` with `coords (B, L, 3)`."""
        tokens = tokens.astype(jnp.dtype(self.config.dtype))
        if self.config.stem == "conv":
            x = self.patch_embed(tokens, coords, segment_ids)  # (B, L, D)
        else:
            x = self.patch_embed(tokens)  # (B, L, D)
        if self.config.frame_position:
            x = x + self.position_embed(frame_position_features(coords, segment_ids).astype(x.dtype))  # (B, L, D)
        rope = rope_angles(coords, self.config.head_dim, self.config.rope_theta)  # 2 x (B, L, Dh/2)
        for block in self.encoder:
            x = block(x, segment_ids, rope)  # (B, L, D)
        return self.encoder_norm(x)  # (B, L, D)

    def memory(self, batch: dict) -> tuple[jax.Array, jax.Array]:
        """`(memory (B, L, D), memory_segment_ids (B, L))` of a model-input batch (the decode interface)."""
        return self.encode(batch["tokens"], batch["coords"], batch["segment_ids"]), batch["segment_ids"]

    def context(self, memory: jax.Array, memory_ids: jax.Array, query_segments: jax.Array) -> jax.Array | None:
        """What every decoder input of sequence k adds, `(B, S, D)`: the projected, normalised max pooling
        of segment `query_segments[:, k]`'s memory with `memory_summary` (the decode interface), else None."""
        if not self.config.memory_summary:
            return None
        return self.summary_proj(self.summary_norm(segment_max(memory, memory_ids, query_segments)))  # (B, S, D)

    def concept_logits(self, memory: jax.Array, memory_ids: jax.Array, query_segments: jax.Array) -> jax.Array:
        """Word-detection logits `(B, S, V)` of segments `query_segments (B, S)` from `memory (B, L, D)`.

        Each segment's memory is max-pooled over its own tokens (padding and other segments excluded;
        an unused sequence, id 0, pools nothing and reads zeros).
        """
        pooled = segment_max(memory, memory_ids, query_segments)  # (B, S, D)
        return self.concept_head(self.concept_norm(pooled)).astype(jnp.float32) - CONCEPT_PRIOR  # (B, S, V)

    def forward(self, batch: dict, caption_inputs: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        """Teacher-forced logits `(B, S, T, V)` for `caption_inputs (B, S, T)` of `batch["caption_segments"]`,
        and the concept logits `(B, S, V)` (None without `concepts`), from one encoder pass."""
        memory, memory_ids = self.memory(batch)
        segments = batch["caption_segments"]
        logits = self.decoder(caption_inputs, self.decoder.memory_kv(memory), segments, memory_ids,
                              self.context(memory, memory_ids, segments))
        return logits, (self.concept_logits(memory, memory_ids, segments) if self.config.concepts else None)

    def __call__(self, batch: dict, caption_inputs: jax.Array) -> jax.Array:
        """Teacher-forced logits `(B, S, T, V)` (`forward` without the concepts)."""
        return self.forward(batch, caption_inputs)[0]


def segment_max(x: jax.Array, segment_ids: jax.Array, query_segments: jax.Array) -> jax.Array:
    """Max of `x (B, L, D)` over the tokens of each segment `query_segments (B, S)` of its row: `(B, S, D)`.

    Zeros where a queried id has no tokens (0, the padding id, is never pooled).
    """
    batch, length, dim = x.shape
    slots = query_segments.shape[1] + 1  # ids 0..S of a row
    flat_ids = (segment_ids + slots * jnp.arange(batch)[:, None]).reshape(-1)  # (B*L,)
    pooled = jax.ops.segment_max(x.reshape(batch * length, dim), flat_ids, num_segments=batch * slots)
    pooled = pooled.reshape(batch, slots, dim)  # (B, S+1, D); -inf (or the lowest value) where empty
    picked = jnp.take_along_axis(pooled, query_segments[..., None], axis=1)  # (B, S, D)
    present = jnp.zeros((batch, slots), bool).at[jnp.arange(batch)[:, None], segment_ids].set(True)  # (B, S+1)
    real = jnp.take_along_axis(present, query_segments, axis=1) & (query_segments > 0)  # (B, S)
    return jnp.where(real[..., None], picked, 0).astype(x.dtype)  # (B, S, D)


def teacher_forcing_inputs(targets: jax.Array, bos_id: int) -> jax.Array:
    """Decoder inputs `(..., T)`: the start token, then the targets shifted right by one."""
    start = jnp.full(targets.shape[:-1] + (1,), bos_id, targets.dtype)
    return jnp.concatenate([start, targets[..., :-1]], axis=-1)  # (..., T)


def caption_loss(logits: jax.Array, targets: jax.Array, pad_id: int = 0) -> tuple[jax.Array, dict]:
    """Token-averaged cross-entropy of `logits (..., T, V)` against `targets (..., T)` (padding ignored).

    Returns `(loss, metrics)`; metrics hold `token_accuracy` and `sequence_accuracy` (every token of a
    caption right, over the captions present) for teacher-forced predictions.
    """
    real = targets != pad_id  # (..., T)
    log_probs = jax.nn.log_softmax(logits, axis=-1)  # (..., T, V)
    nll = -jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]  # (..., T)
    count = jnp.maximum(real.sum(), 1)
    loss = jnp.sum(jnp.where(real, nll, 0.0)) / count
    right = (jnp.argmax(logits, axis=-1) == targets) | ~real  # (..., T)
    present = real.any(axis=-1)  # (...,)
    sequences = jnp.sum(right.all(axis=-1) & present) / jnp.maximum(present.sum(), 1)
    return loss, {"token_accuracy": jnp.sum(right & real) / count, "sequence_accuracy": sequences}


def concept_loss(logits: jax.Array, targets: jax.Array, pad_id: int = 0) -> tuple[jax.Array, dict]:
    """Multi-label loss of concept `logits (B, S, V)` against the words of `targets (B, S, T)`.

    A word is positive for a caption when it occurs in it (the padding id never is). Each caption's
    binary cross-entropy is summed over the vocabulary and divided by its count of distinct words,
    so a caption weighs about as much as one token of the caption loss per word it holds; captions
    are averaged. Metrics: `concept_recall` and `concept_precision` of the words predicted at p > 0.5.
    """
    batch, segments, vocab = logits.shape
    rows, slots = jnp.arange(batch)[:, None, None], jnp.arange(segments)[None, :, None]
    words = jnp.zeros((batch, segments, vocab), jnp.float32).at[rows, slots, targets].set(1.0)
    words = words.at[..., pad_id].set(0.0)  # (B, S, V)
    present = (targets != pad_id).any(axis=-1)  # (B, S)
    bce = optax.sigmoid_binary_cross_entropy(logits, words).at[..., pad_id].set(0.0)  # (B, S, V)
    per_caption = bce.sum(-1) / jnp.maximum(words.sum(-1), 1.0)  # (B, S)
    loss = jnp.sum(jnp.where(present, per_caption, 0.0)) / jnp.maximum(present.sum(), 1)
    predicted = (logits > 0) & present[..., None]  # (B, S, V)
    hits = jnp.sum(predicted * words)
    return loss, {"concept_recall": hits / jnp.maximum(words.sum(), 1.0),
                  "concept_precision": hits / jnp.maximum(predicted.sum(), 1)}
