"""T5-family text encoders in Flax NNX (T5 v1.1 / mT5 / Flan-T5 and umT5), loaded from HF safetensors.

One module, the variant chosen by config:
- pre-norm blocks with T5's RMS LayerNorm (scale only, no mean, computed in float32);
- attention without a 1/sqrt(d) scale (T5 folds it into the weights) plus a learned relative
  position bias over log-spaced buckets: computed by the FIRST layer and shared by all layers (T5,
  mT5), or owned by EVERY layer (umT5, `model_type: "umt5"`);
- a gated-GELU MLP (`feed_forward_proj: "gated-gelu"`, tanh GELU) or an ungated one (`"relu"`, T5 1.0).

Weights: `T5EncoderModel` / `UMT5EncoderModel` files (`shared.weight`, `encoder.*`), or full
encoder-decoder files, whose `decoder.*` and `lm_head.*` tensors are skipped without being read;
one file or a sharded folder (`model.safetensors.index.json`); float32 or bfloat16.
`T5TextEncoder` puts a loaded encoder and its `tokenizer.json` (SentencePiece/Unigram) behind the
`TextEncoder` interface.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.models.dit.layers import RMSNorm
from sora_jax.text.encoders import (
    FrozenTextEncoder, HFName, PretrainedTokenizer, activation, import_hf_weights, linear_names, masked_attention,
    read_safetensors,
)

_MODEL_TYPES = ("t5", "mt5", "umt5")


@dataclasses.dataclass(frozen=True)
class T5Config:
    """Sizes of a T5-family encoder (HF `config.json` names); defaults are a tiny test model."""

    vocab_size: int = 128
    d_model: int = 32
    d_kv: int = 8
    d_ff: int = 64
    num_layers: int = 2
    num_heads: int = 4
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "gated-gelu"
    bias_in_every_layer: bool = False  # umT5: every layer has its own relative position bias
    dtype: str = "float32"  # parameters and activations; "bfloat16" halves memory for XXL models

    def __post_init__(self):
        activation(self.activation)  # raises on an unsupported name
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be float32 or bfloat16, got {self.dtype!r}")

    @property
    def gated(self) -> bool:
        return self.feed_forward_proj.startswith("gated-")

    @property
    def activation(self) -> str:
        """HF's activation name: `gated-gelu` means the tanh approximation (`gelu_new`)."""
        name = self.feed_forward_proj.split("-")[-1]
        return "gelu_new" if self.feed_forward_proj == "gated-gelu" else name

    @classmethod
    def from_hf(cls, config: Mapping, dtype: str = "float32") -> "T5Config":
        """From a HF `config.json` dict (`model_type` t5, mt5 or umt5)."""
        model_type = config.get("model_type", "t5")
        if model_type not in _MODEL_TYPES:
            raise ValueError(f"not a T5-family config: model_type={model_type!r} (known: {_MODEL_TYPES})")
        return cls(
            vocab_size=config["vocab_size"], d_model=config["d_model"], d_kv=config["d_kv"], d_ff=config["d_ff"],
            num_layers=config["num_layers"], num_heads=config["num_heads"],
            relative_attention_num_buckets=config.get("relative_attention_num_buckets", 32),
            relative_attention_max_distance=config.get("relative_attention_max_distance", 128),
            layer_norm_epsilon=config.get("layer_norm_epsilon", 1e-6),
            feed_forward_proj=config.get("feed_forward_proj", "relu"),
            bias_in_every_layer=model_type == "umt5", dtype=dtype,
        )


def relative_position_bucket(relative_position: np.ndarray, num_buckets: int = 32,
                             max_distance: int = 128) -> np.ndarray:
    """Bidirectional T5 bucket of each `key - query` offset, int32, in `[0, num_buckets)`.

    Half the buckets hold positive offsets. Within a half, offsets below `num_buckets // 4` get a
    bucket each; larger ones share log-spaced buckets up to `max_distance`, beyond which all share
    the last. Computed on the host in float32 like the Mesh-TensorFlow/HF code (positions are static).
    """
    relative_position = np.asarray(relative_position, np.int64)
    half = num_buckets // 2
    buckets = (relative_position > 0).astype(np.int64) * half
    distance = np.abs(relative_position)
    max_exact = half // 2
    safe = np.maximum(distance, 1).astype(np.float32)  # distances below max_exact take the exact branch
    log_ratio = np.log(safe / np.float32(max_exact)) / np.float32(math.log(max_distance / max_exact))
    large = max_exact + (log_ratio * np.float32(half - max_exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    return (buckets + np.where(distance < max_exact, distance, large)).astype(np.int32)


def _linear(in_dim: int, out_dim: int, axes: tuple[str, str], dtype, *, rngs: nnx.Rngs) -> nnx.Linear:
    init = nnx.with_partitioning(nnx.initializers.normal(in_dim ** -0.5), axes)
    return nnx.Linear(in_dim, out_dim, use_bias=False, dtype=dtype, param_dtype=dtype, kernel_init=init, rngs=rngs)


class T5Block(nnx.Module):
    """Pre-norm encoder block: RMS norm -> attention (+ position bias) -> add; RMS norm -> MLP -> add."""

    def __init__(self, config: T5Config, has_bias: bool, *, rngs: nnx.Rngs):
        d, inner, dtype = config.d_model, config.num_heads * config.d_kv, jnp.dtype(config.dtype)
        self.num_heads, self.act, self.gated = config.num_heads, activation(config.activation), config.gated
        self.attn_norm = RMSNorm(d, eps=config.layer_norm_epsilon, rngs=rngs)
        self.query = _linear(d, inner, ("embed", "heads"), dtype, rngs=rngs)
        self.key = _linear(d, inner, ("embed", "heads"), dtype, rngs=rngs)
        self.value = _linear(d, inner, ("embed", "heads"), dtype, rngs=rngs)
        self.attn_out = _linear(inner, d, ("heads", "embed"), dtype, rngs=rngs)
        self.position_bias = nnx.Embed(
            config.relative_attention_num_buckets, config.num_heads, param_dtype=dtype,
            embedding_init=nnx.with_partitioning(nnx.initializers.normal(1.0), (None, "heads")), rngs=rngs,
        ) if has_bias else None
        self.mlp_norm = RMSNorm(d, eps=config.layer_norm_epsilon, rngs=rngs)
        self.mlp_gate = _linear(d, config.d_ff, ("embed", "mlp"), dtype, rngs=rngs) if config.gated else None
        self.mlp_in = _linear(d, config.d_ff, ("embed", "mlp"), dtype, rngs=rngs)
        self.mlp_out = _linear(config.d_ff, d, ("mlp", "embed"), dtype, rngs=rngs)

    def bias(self, buckets: jax.Array) -> jax.Array:
        """Relative position bias `(1, H, L, L)` from bucket ids `(L, L)`."""
        return jnp.transpose(self.position_bias(buckets), (2, 0, 1))[None]  # (1, H, L, L)

    def __call__(self, hidden: jax.Array, mask: jax.Array, bias: jax.Array) -> jax.Array:
        b, l, _ = hidden.shape
        normed = self.attn_norm(hidden)  # (B, L, D)
        heads = lambda x: x.reshape(b, l, self.num_heads, -1)  # (B, L, H, Dk)
        context = masked_attention(heads(self.query(normed)), heads(self.key(normed)), heads(self.value(normed)),
                                   mask, bias=bias, scale=1.0)  # (B, L, H, Dk)
        hidden = hidden + self.attn_out(context.reshape(b, l, -1))  # (B, L, D)
        normed = self.mlp_norm(hidden)  # (B, L, D)
        inner = self.mlp_in(normed)  # (B, L, F)
        inner = self.act(self.mlp_gate(normed)) * inner if self.gated else self.act(inner)  # (B, L, F)
        return hidden + self.mlp_out(inner)  # (B, L, D)


class T5Encoder(nnx.Module):
    """T5-family encoder: `(ids (B, L), mask (B, L)) -> last hidden state (B, L, d_model)`."""

    def __init__(self, config: T5Config, *, rngs: nnx.Rngs):
        self.config = config
        init = nnx.with_partitioning(nnx.initializers.normal(1.0), ("vocab", "embed"))
        self.embed = nnx.Embed(config.vocab_size, config.d_model, param_dtype=jnp.dtype(config.dtype),
                               embedding_init=init, rngs=rngs)
        self.blocks = nnx.List([T5Block(config, has_bias=config.bias_in_every_layer or i == 0, rngs=rngs)
                                for i in range(config.num_layers)])
        self.final_norm = RMSNorm(config.d_model, eps=config.layer_norm_epsilon, rngs=rngs)

    def __call__(self, ids: jax.Array, mask: jax.Array) -> jax.Array:
        """Last hidden state `(B, L, d_model)` (after the final norm); padding keys are never attended."""
        length = ids.shape[1]
        offsets = np.arange(length)[None, :] - np.arange(length)[:, None]  # (L, L) key - query
        c = self.config
        buckets = jnp.asarray(relative_position_bucket(offsets, c.relative_attention_num_buckets,
                                                       c.relative_attention_max_distance))  # (L, L)
        hidden = self.embed(ids)  # (B, L, D)
        bias = self.blocks[0].bias(buckets)  # (1, H, L, L), shared unless every layer has its own
        for block in self.blocks:
            if block.position_bias is not None:
                bias = block.bias(buckets)  # (1, H, L, L)
            hidden = block(hidden, mask, bias)  # (B, L, D)
        return self.final_norm(hidden)  # (B, L, D)


def t5_hf_names(config: T5Config) -> dict[tuple, HFName]:
    """Our parameter paths -> HF `T5EncoderModel`/`UMT5EncoderModel` state-dict names."""
    names = {
        ("embed", "embedding"): HFName(("shared.weight", "encoder.embed_tokens.weight")),
        ("final_norm", "scale"): HFName(("encoder.final_layer_norm.weight",)),
    }
    mlp = {"mlp_gate": "wi_0", "mlp_in": "wi_1", "mlp_out": "wo"} if config.gated else {"mlp_in": "wi", "mlp_out": "wo"}
    for i in range(config.num_layers):
        attn, ff = f"encoder.block.{i}.layer.0.", f"encoder.block.{i}.layer.1."
        for ours, theirs in {"query": "q", "key": "k", "value": "v", "attn_out": "o"}.items():
            names[("blocks", i, ours, "kernel")] = linear_names(attn + "SelfAttention." + theirs, bias=False)["kernel"]
        for ours, theirs in mlp.items():
            names[("blocks", i, ours, "kernel")] = linear_names(ff + "DenseReluDense." + theirs, bias=False)["kernel"]
        names[("blocks", i, "attn_norm", "scale")] = HFName((attn + "layer_norm.weight",))
        names[("blocks", i, "mlp_norm", "scale")] = HFName((ff + "layer_norm.weight",))
        if config.bias_in_every_layer or i == 0:
            bias_key = attn + "SelfAttention.relative_attention_bias.weight"
            names[("blocks", i, "position_bias", "embedding")] = HFName((bias_key,))
    return names


def _decoder_side(key: str) -> bool:
    """Tensors of a full encoder-decoder file that the encoder does not use."""
    return key.startswith(("decoder.", "lm_head."))


def load_t5_encoder(model_dir: str | os.PathLike, dtype: str = "float32",
                    weights: Mapping[str, np.ndarray] | None = None) -> T5Encoder:
    """A `T5Encoder` from a HF folder: `config.json` plus safetensors weights (see module docstring).

    `weights` (name -> array) replaces reading the folder's safetensors. Raises FileNotFoundError for
    missing files and ValueError naming every missing/unexpected key and shape mismatch.
    """
    config_path = os.path.join(os.fspath(model_dir), "config.json")
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"no config.json in {os.fspath(model_dir)!r} (a HF T5/umT5 model folder is needed)")
    with open(config_path) as f:
        config = T5Config.from_hf(json.load(f), dtype=dtype)
    if weights is None:
        weights = read_safetensors(model_dir, wanted=lambda key: not _decoder_side(key))
    return import_hf_weights(lambda: T5Encoder(config, rngs=nnx.Rngs(0)), weights, t5_hf_names(config),
                             _decoder_side, "T5")


class T5TextEncoder(FrozenTextEncoder):
    """A T5/umT5 encoder folder (`config.json`, safetensors, `tokenizer.json`) behind `TextEncoder`.

    Prompts are tokenized as `text </s>`; longer ones keep their first `max_len - 1` pieces and `</s>`.
    """

    def __init__(self, model_dir: str | os.PathLike, max_len: int = 256, batch_size: int = 8,
                 dtype: str = "float32"):
        model_dir = os.fspath(model_dir)
        tokenizer_path = os.path.join(model_dir, "tokenizer.json")
        if not os.path.isfile(tokenizer_path):
            raise FileNotFoundError(
                f"no tokenizer.json in {model_dir!r}; write one once with transformers: "
                "AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR)")
        tokenizer = PretrainedTokenizer(tokenizer_path, max_len)
        model = load_t5_encoder(model_dir, dtype=dtype)
        super().__init__(f"t5:{model_dir}", model, tokenizer, dim=model.config.d_model, batch_size=batch_size)
