"""A BERT-style text encoder in Flax NNX, and its import from Hugging Face safetensors.

Layout (as `transformers.BertModel`): word + absolute position + token-type embeddings, LayerNorm;
then post-LayerNorm transformer layers (self-attention -> add -> LayerNorm, GELU MLP -> add ->
LayerNorm); an optional pooler (tanh dense on the first token). Weights import by name from a HF
`BertModel` file (keys optionally prefixed `bert.`, old `gamma`/`beta` LayerNorm names accepted);
every key is accounted for, and a mismatch raises one error naming each missing key, unexpected
key and shape difference. Runs without PyTorch.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.models.dit.layers import LayerNorm
from sora_jax.text.encoders import (
    HFName, activation, import_hf_weights, linear_names, masked_attention, read_safetensors,
)

_init = nnx.initializers.normal(0.02)


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Sizes of a BERT encoder; defaults are MiniLM-L6-H384 (all-MiniLM-L6-v2)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    with_pooler: bool = True

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        activation(self.hidden_act)  # raises on an unsupported name

    @classmethod
    def from_hf(cls, config: Mapping, with_pooler: bool = True) -> "BertConfig":
        """From a HF `config.json` dict of a BERT model (absolute positions only)."""
        if config.get("model_type", "bert") != "bert":
            raise ValueError(f"not a BERT config: model_type={config.get('model_type')!r}")
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported, "
                             f"got {config['position_embedding_type']!r}")
        return cls(
            vocab_size=config["vocab_size"], hidden_size=config["hidden_size"],
            num_layers=config["num_hidden_layers"], num_heads=config["num_attention_heads"],
            intermediate_size=config["intermediate_size"],
            max_position_embeddings=config.get("max_position_embeddings", 512),
            type_vocab_size=config.get("type_vocab_size", 2), layer_norm_eps=config.get("layer_norm_eps", 1e-12),
            hidden_act=config.get("hidden_act", "gelu"), with_pooler=with_pooler,
        )

    @classmethod
    def from_json(cls, path: str | os.PathLike, with_pooler: bool = True) -> "BertConfig":
        """From a HF `config.json` file."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no BERT config.json at {os.fspath(path)!r}")
        with open(path) as f:
            return cls.from_hf(json.load(f), with_pooler=with_pooler)


def _dense(in_dim: int, out_dim: int, axes: tuple[str, str], *, rngs: nnx.Rngs) -> nnx.Linear:
    return nnx.Linear(in_dim, out_dim, kernel_init=nnx.with_partitioning(_init, axes),
                      bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), (axes[1],)), rngs=rngs)


class BertLayer(nnx.Module):
    """One post-LayerNorm transformer layer: attention + add + norm, GELU MLP + add + norm."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        d, h = config.hidden_size, config.intermediate_size
        self.num_heads, self.act = config.num_heads, activation(config.hidden_act)
        self.query = _dense(d, d, ("embed", "heads"), rngs=rngs)
        self.key = _dense(d, d, ("embed", "heads"), rngs=rngs)
        self.value = _dense(d, d, ("embed", "heads"), rngs=rngs)
        self.attn_out = _dense(d, d, ("heads", "embed"), rngs=rngs)
        self.attn_norm = LayerNorm(d, eps=config.layer_norm_eps, affine=True, rngs=rngs)
        self.mlp_in = _dense(d, h, ("embed", "mlp"), rngs=rngs)
        self.mlp_out = _dense(h, d, ("mlp", "embed"), rngs=rngs)
        self.mlp_norm = LayerNorm(d, eps=config.layer_norm_eps, affine=True, rngs=rngs)

    def __call__(self, hidden: jax.Array, mask: jax.Array) -> jax.Array:
        b, l, d = hidden.shape
        heads = lambda x: x.reshape(b, l, self.num_heads, d // self.num_heads)  # (B, L, H, Dh)
        context = masked_attention(heads(self.query(hidden)), heads(self.key(hidden)), heads(self.value(hidden)),
                                   mask, scale=(d // self.num_heads) ** -0.5)  # (B, L, H, Dh)
        hidden = self.attn_norm(hidden + self.attn_out(context.reshape(b, l, d)))  # (B, L, D)
        return self.mlp_norm(hidden + self.mlp_out(self.act(self.mlp_in(hidden))))  # (B, L, D)


class BertModel(nnx.Module):
    """BERT encoder: `(ids (B, L), mask (B, L)) -> last hidden state (B, L, D)`."""

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs):
        d = config.hidden_size
        self.config = config
        embed = lambda rows, axes: nnx.Embed(rows, d, embedding_init=nnx.with_partitioning(_init, axes), rngs=rngs)
        self.word_embed = embed(config.vocab_size, ("vocab", "embed"))
        self.position_embed = embed(config.max_position_embeddings, (None, "embed"))
        self.type_embed = embed(config.type_vocab_size, (None, "embed"))
        self.embed_norm = LayerNorm(d, eps=config.layer_norm_eps, affine=True, rngs=rngs)
        self.layers = nnx.List([BertLayer(config, rngs=rngs) for _ in range(config.num_layers)])
        self.pooler = _dense(d, d, ("embed", "embed"), rngs=rngs) if config.with_pooler else None

    def __call__(self, ids: jax.Array, mask: jax.Array, token_type_ids: jax.Array | None = None) -> jax.Array:
        """Last hidden state `(B, L, D)`; `mask (B, L)` is True at real tokens (padding is never attended)."""
        length = ids.shape[1]
        if length > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {length} exceeds the {self.config.max_position_embeddings} positions")
        token_type_ids = jnp.zeros_like(ids) if token_type_ids is None else token_type_ids  # (B, L)
        hidden = self.word_embed(ids) + self.type_embed(token_type_ids)  # (B, L, D)
        hidden = self.embed_norm(hidden + self.position_embed(jnp.arange(length))[None])  # (B, L, D)
        for layer in self.layers:
            hidden = layer(hidden, mask)  # (B, L, D)
        return hidden

    def pooled(self, hidden: jax.Array) -> jax.Array:
        """BERT's pooler output `(B, D)`: tanh(dense(first token)); needs `with_pooler`."""
        if self.pooler is None:
            raise ValueError("this BertModel was built without a pooler (with_pooler=False)")
        return jnp.tanh(self.pooler(hidden[:, 0]))  # (B, D)


def _nested(prefix: tuple, names: Mapping[str, HFName]) -> dict[tuple, HFName]:
    return {prefix + (leaf,): name for leaf, name in names.items()}


def _norm_names(prefix: str) -> dict[str, HFName]:
    return {"scale": HFName((f"{prefix}.weight",)), "bias": HFName((f"{prefix}.bias",))}


def bert_hf_names(config: BertConfig) -> dict[tuple, HFName]:
    """Our parameter paths -> HF `BertModel` state-dict names (after `normalise_bert_keys`)."""
    names = {
        ("word_embed", "embedding"): HFName(("embeddings.word_embeddings.weight",)),
        ("position_embed", "embedding"): HFName(("embeddings.position_embeddings.weight",)),
        ("type_embed", "embedding"): HFName(("embeddings.token_type_embeddings.weight",)),
    }
    names |= _nested(("embed_norm",), _norm_names("embeddings.LayerNorm"))
    layer_linears = {"query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
                     "attn_out": "attention.output.dense", "mlp_in": "intermediate.dense", "mlp_out": "output.dense"}
    for i in range(config.num_layers):
        p = f"encoder.layer.{i}."
        for ours, theirs in layer_linears.items():
            names |= _nested(("layers", i, ours), linear_names(p + theirs))
        names |= _nested(("layers", i, "attn_norm"), _norm_names(p + "attention.output.LayerNorm"))
        names |= _nested(("layers", i, "mlp_norm"), _norm_names(p + "output.LayerNorm"))
    if config.with_pooler:
        names |= _nested(("pooler",), linear_names("pooler.dense"))
    return names


def normalise_bert_keys(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HF key spellings made uniform: a `bert.` prefix (task-head models) dropped, TF-era
    `LayerNorm.gamma`/`beta` renamed `weight`/`bias`."""
    out = {}
    for key, value in tensors.items():
        key = key[len("bert."):] if key.startswith("bert.") else key
        key = key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
        out[key] = value
    return out


def _ignored(config: BertConfig):
    def ignored(key: str) -> bool:
        # position_ids is a constant buffer, not a weight; a pooler is skipped when not built.
        return key == "embeddings.position_ids" or (not config.with_pooler and key.startswith("pooler."))

    return ignored


def load_bert(weights: str | os.PathLike | Mapping[str, np.ndarray], config: BertConfig) -> BertModel:
    """A `BertModel` with weights from a HF safetensors file/folder (or an already-read name->array dict).

    Raises FileNotFoundError for a missing file and ValueError naming every missing/unexpected key and
    shape mismatch.
    """
    tensors = read_safetensors(weights) if isinstance(weights, (str, os.PathLike)) else weights
    return import_hf_weights(lambda: BertModel(config, rngs=nnx.Rngs(0)), normalise_bert_keys(tensors),
                             bert_hf_names(config), _ignored(config), "BERT")
