"""Text encoders behind one interface: `encoder(text_tokens, text_segment_ids) -> (B, Lt, text_dim)`.

`TokenEmbeddingEncoder` is the tiny trainable one (tests, CPU demos, and the default until the
text issue brings the pretrained MiniLM and T5 encoders). It reads packed text rows: positions are
counted within each segment, so a caption embeds the same wherever it sits in a row.

Below it are the pieces the pretrained encoders share (`bert.py`, `t5.py`, `minilm.py`; chosen
through `interface.py`): activations by HF name, padding-masked attention, reading safetensors
without torch and importing HF-named tensors into an NNX module with one clear error for every
missing/unexpected/mis-shaped key, the `tokenizers` wrapper with the truncation rule, and
`FrozenTextEncoder`, which jits a frozen model once and batches prompts.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import os
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def segment_positions(segment_ids: jax.Array) -> jax.Array:
    """Position of every token within its own segment, `(B, L)` int32, for contiguous segments."""
    index = jnp.arange(segment_ids.shape[-1], dtype=jnp.int32)  # (L,)
    previous = jnp.pad(segment_ids[:, :-1], ((0, 0), (1, 0)), constant_values=-1)  # (B, L)
    starts = jnp.where(segment_ids != previous, index, 0)  # (B, L)
    return index - jax.lax.cummax(starts, axis=1)  # (B, L)


class TokenEmbeddingEncoder(nnx.Module):
    """Token embedding plus in-segment position embedding, layer-normalised; tiny and trainable."""

    def __init__(self, vocab_size: int, dim: int, max_len: int = 512, *, rngs: nnx.Rngs):
        init = nnx.initializers.normal(0.02)
        self.max_len = max_len
        self.tokens = nnx.Embed(vocab_size, dim, embedding_init=nnx.with_partitioning(init, ("vocab", "embed")), rngs=rngs)
        self.positions = nnx.Embed(max_len, dim, embedding_init=nnx.with_partitioning(init, (None, "embed")), rngs=rngs)
        self.norm = nnx.LayerNorm(dim, scale_init=nnx.with_partitioning(nnx.initializers.ones_init(), ("norm",)),
                                  bias_init=nnx.with_partitioning(nnx.initializers.zeros_init(), ("norm",)), rngs=rngs)

    def __call__(self, text_tokens: jax.Array, text_segment_ids: jax.Array) -> jax.Array:
        positions = jnp.minimum(segment_positions(text_segment_ids), self.max_len - 1)  # (B, Lt)
        return self.norm(self.tokens(text_tokens) + self.positions(positions))  # (B, Lt, dim)


# ---------------------------------------------------------------------------------------------------
# Shared by the pretrained encoders (sora_jax.text.bert, .t5, .minilm): activations, padding-masked
# attention, Hugging Face safetensors import, a `tokenizers` wrapper, and the frozen-encoder base that
# jits the forward pass and batches prompts.
# ---------------------------------------------------------------------------------------------------

ACTIVATIONS = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),  # HF "gelu" is the exact erf form
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),  # tanh approximation (T5 v1.1, umT5)
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


def activation(name: str):
    """The activation function of a Hugging Face `hidden_act`/`dense_act_fn` name."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported activation {name!r}; supported: {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def masked_attention(query: jax.Array, key: jax.Array, value: jax.Array, key_mask: jax.Array,
                     bias: jax.Array | None = None, scale: float = 1.0) -> jax.Array:
    """Bidirectional attention over one caption per row, keys restricted to real tokens, in float32.

    Text encoders need an additive position bias (T5) and a plain key-padding mask, neither of which
    the packed-row dispatch in `sora_jax.models.attention` takes, and their rows are short (<= 512),
    so dense einsum attention is both exact (parity with the references) and cheap.

    Args:
      query, key, value: `(B, L, H, Dh)`.
      key_mask: `(B, L)` bool, True at real tokens.
      bias: optional additive logits bias broadcastable to `(B, H, L, L)`.
      scale: logits scale (BERT 1/sqrt(Dh); T5 folds it into its weights, so 1).
    Returns:
      `(B, L, H, Dh)` in the dtype of `query`.
    """
    logits = jnp.einsum("bqhd,bkhd->bhqk", query.astype(jnp.float32), key.astype(jnp.float32)) * scale  # (B, H, L, L)
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)  # (B, H, L, L)
    logits = jnp.where(key_mask[:, None, None, :], logits, jnp.finfo(jnp.float32).min)  # (B, H, L, L)
    weights = jax.nn.softmax(logits, axis=-1)  # (B, H, L, L)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, value.astype(jnp.float32)).astype(query.dtype)  # (B, L, H, Dh)


@dataclasses.dataclass(frozen=True)
class HFName:
    """Where one of our parameters comes from: the first of `keys` present in the file, transposed
    when it is a torch Linear weight (`(out, in)` there, `(in, out)` here). Every other key in
    `keys` is an accepted alias (e.g. T5's tied `shared.weight` / `encoder.embed_tokens.weight`)."""

    keys: tuple[str, ...]
    transpose: bool = False


def linear_names(prefix: str, bias: bool = True) -> dict[str, HFName]:
    """HF names of an `nnx.Linear` imported from the torch `nn.Linear` called `prefix`."""
    names = {"kernel": HFName((f"{prefix}.weight",), transpose=True)}
    if bias:
        names["bias"] = HFName((f"{prefix}.bias",))
    return names


def resolve_safetensors(path: str | os.PathLike) -> list[str]:
    """The safetensors file(s) of `path`: a `.safetensors` file, or a folder holding `model.safetensors`,
    a sharded `model.safetensors.index.json`, or exactly one `*.safetensors` file."""
    path = os.fspath(path)
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise FileNotFoundError(f"no safetensors weights at {path!r} (not a file or folder)")
    single = os.path.join(path, "model.safetensors")
    index = os.path.join(path, "model.safetensors.index.json")
    if os.path.isfile(single):
        return [single]
    if os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(path, shard) for shard in shards]
    found = sorted(name for name in os.listdir(path) if name.endswith(".safetensors"))
    if len(found) != 1:
        raise FileNotFoundError(f"{path!r} has no model.safetensors or model.safetensors.index.json "
                                f"(and {len(found)} other *.safetensors files)")
    return [os.path.join(path, found[0])]


def _read_bfloat16(path: str, key: str) -> np.ndarray:
    """One BF16 tensor read from the raw file (numpy has no bfloat16; ml_dtypes, a JAX dependency, has)."""
    import ml_dtypes

    with open(path, "rb") as f:
        header_len = int.from_bytes(f.read(8), "little")
        info = json.loads(f.read(header_len))[key]
        start, end = info["data_offsets"]
        f.seek(8 + header_len + start)
        raw = f.read(end - start)
    return np.frombuffer(raw, dtype=ml_dtypes.bfloat16).reshape(info["shape"])


def read_safetensors(path: str | os.PathLike, wanted=None) -> dict[str, np.ndarray]:
    """Tensors of a safetensors file/folder (see `resolve_safetensors`) as numpy arrays, without torch.

    `wanted(key) -> bool` skips tensors that are not needed (e.g. a T5 decoder) without reading them.
    BF16 tensors come back as `ml_dtypes.bfloat16` arrays.
    """
    from safetensors import safe_open

    tensors = {}
    for file in resolve_safetensors(path):
        with safe_open(file, framework="numpy") as handle:
            for key in handle.keys():
                if wanted is not None and not wanted(key):
                    continue
                if handle.get_slice(key).get_dtype() == "BF16":
                    tensors[key] = _read_bfloat16(file, key)
                else:
                    tensors[key] = handle.get_tensor(key)
    return tensors


def _describe(keys, limit: int = 12) -> str:
    keys = sorted(keys)
    more = f" ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def import_hf_weights(make_model: Callable[[], nnx.Module], tensors: Mapping[str, np.ndarray],
                      names: Mapping[tuple, HFName], ignored: Callable[[str], bool], what: str) -> nnx.Module:
    """Builds `make_model()` with its parameters taken from Hugging Face-named `tensors`.

    The model is traced abstractly (no random init), then every parameter is filled from the tensor
    `names[path]` names, cast to the parameter's dtype. Raises one ValueError naming every missing
    key, unexpected key (present in the file, not used, and not `ignored`) and shape mismatch.
    """
    abstract = nnx.eval_shape(make_model)
    graphdef, params, rest = nnx.split(abstract, nnx.Param, ...)
    flat = list(nnx.to_flat_state(params))
    unmapped = [path for path, _ in flat if path not in names]
    if unmapped or len(names) != len(flat):
        raise RuntimeError(f"{what}: parameter/name table out of sync (unmapped: {unmapped[:5]})")
    used, missing, mismatched, filled = set(), [], [], []
    for path, variable in flat:
        name = names[path]
        present = [key for key in name.keys if key in tensors]
        used.update(present)
        if not present:
            missing.append(name.keys[0])
            continue
        array = np.asarray(tensors[present[0]])
        array = array.T if name.transpose else array
        if tuple(array.shape) != tuple(variable.shape):
            mismatched.append(f"{present[0]}: file {tuple(array.shape)}, model {tuple(variable.shape)}")
            continue
        filled.append((path, variable.replace(jnp.asarray(array.astype(np.float32), variable.dtype))))
    unexpected = [key for key in tensors if key not in used and not ignored(key)]
    problems = [f"missing keys: {_describe(missing)}"] if missing else []
    problems += [f"unexpected keys: {_describe(unexpected)}"] if unexpected else []
    problems += [f"shape mismatches: {'; '.join(mismatched[:12])}"] if mismatched else []
    if problems:
        raise ValueError(f"{what} weights do not match the model: " + " | ".join(problems))
    return nnx.merge(graphdef, nnx.from_flat_state(filled), rest)


class PretrainedTokenizer:
    """A Hugging Face `tokenizer.json` (WordPiece, SentencePiece/Unigram, BPE) read with `tokenizers`.

    `__call__(texts)` gives fixed-shape `ids (N, max_len)` int32 and `mask (N, max_len)` bool. The
    file's own truncation and padding settings are replaced by the project rule: the text is cut at
    its END, and the special tokens its post-processor adds are always kept (BERT: `[CLS] text [SEP]`,
    T5: `text </s>`). This is what the reference pipelines do (sentence-transformers and HF T5
    tokenizers truncate `longest_first` on the right), so truncated prompts embed as the references
    embed them, and it matches `sora_jax.text.tokenizers` (the end token always closes the text).
    """

    def __init__(self, path: str | os.PathLike, max_len: int):
        from tokenizers import Tokenizer

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no tokenizer file at {path!r} (a Hugging Face tokenizer.json is needed)")
        self._tokenizer = Tokenizer.from_file(path)
        padding = self._tokenizer.padding or {}
        self.pad_id = int(padding.get("pad_id", self._first_id(("[PAD]", "<pad>"), default=0)))
        self._tokenizer.no_padding()
        self.num_special = len(self._tokenizer.encode("").ids)
        if max_len <= self.num_special:
            raise ValueError(f"max_len must exceed the {self.num_special} special tokens, got {max_len}")
        self.max_len = max_len
        self._tokenizer.enable_truncation(max_length=max_len, strategy="longest_first", direction="right")

    def _first_id(self, tokens, default: int) -> int:
        ids = [self._tokenizer.token_to_id(token) for token in tokens]
        return next((i for i in ids if i is not None), default)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`ids (N, max_len)` int32 padded with `pad_id`, and `mask (N, max_len)` bool (True: real token)."""
        if isinstance(texts, str):
            raise ValueError("texts must be a list of strings, not one string")
        encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.full((len(texts), self.max_len), self.pad_id, np.int32)  # (N, max_len)
        mask = np.zeros((len(texts), self.max_len), bool)  # (N, max_len)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = True
        return ids, mask

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        """Text of one row of ids (padding and, by default, special tokens dropped)."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)


def length_buckets(max_len: int, shortest: int = 16) -> tuple[int, ...]:
    """Row lengths a frozen encoder compiles for: 16, 32, 64, ... below `max_len`, then `max_len`."""
    lengths = []
    while shortest < max_len:
        lengths.append(shortest)
        shortest *= 2
    return tuple(lengths) + (max_len,)


class FrozenTextEncoder:
    """Base of the pretrained encoders: a frozen NNX model behind a tokenizer, jitted per row length.

    `model(ids, mask) -> (B, L, D)` is split once (`nnx.split`); the forward pass is `jax.jit`ted
    with the graph closed over and merged inside (`nnx.merge`). Every call runs `batch_size` rows
    (the last batch is filled with copies of its first row) cut to the shortest of
    `length_buckets(max_len)` that holds the batch's longest prompt: padding is never attended and
    positions are absolute (BERT) or relative (T5), so real-token outputs are the same at any row
    length, at most ~5 programs are compiled, and 60-token captions cost a quarter of 256-token rows.
    Outputs are returned at `max_len` with zeros at padding, independent of the filler.
    """

    trainable = False

    def __init__(self, name: str, model: nnx.Module, tokenizer: PretrainedTokenizer, dim: int,
                 batch_size: int = 16):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.name, self.dim, self.batch_size, self.tokenizer = name, dim, batch_size, tokenizer
        self.max_len = tokenizer.max_len
        self.lengths = length_buckets(self.max_len)
        graphdef, self._state = nnx.split(model)

        @jax.jit
        def forward(state, ids, mask):
            hidden = nnx.merge(graphdef, state)(ids, mask).astype(jnp.float32)  # (B, L, D)
            return hidden * mask[..., None]  # (B, L, D)

        self._forward = forward

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """`ids (N, max_len)` int32 and `mask (N, max_len)` bool, truncated by the tokenizer's rule."""
        return self.tokenizer(texts)

    def encode_ids(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Token embeddings `(N, L, dim)` float32, zero at padding, of tokenized rows `(N, L <= max_len)`."""
        if ids.shape != mask.shape or ids.ndim != 2 or ids.shape[1] > self.max_len:
            raise ValueError(f"ids and mask must both be (N, L <= {self.max_len}), "
                             f"got {ids.shape} and {mask.shape}")
        embeddings = np.zeros((*ids.shape, self.dim), np.float32)  # (N, L, D)
        for start in range(0, len(ids), self.batch_size):
            batch_ids, batch_mask = ids[start : start + self.batch_size], mask[start : start + self.batch_size]
            real = len(batch_ids)
            if real < self.batch_size:  # fill with copies of the first row: any valid row works, it is dropped
                fill = self.batch_size - real
                batch_ids = np.concatenate([batch_ids, np.repeat(batch_ids[:1], fill, 0)])  # (batch, L)
                batch_mask = np.concatenate([batch_mask, np.repeat(batch_mask[:1], fill, 0)])  # (batch, L)
            last_real = int(np.flatnonzero(batch_mask.any(0)).max(initial=0)) + 1  # keep every real position
            length = min(next(n for n in self.lengths if n >= last_real), ids.shape[1])
            hidden = self._forward(self._state, jnp.asarray(batch_ids[:, :length]),
                                   jnp.asarray(batch_mask[:, :length]))  # (batch, length, D)
            embeddings[start : start + real, :length] = np.asarray(hidden)[:real]
        return embeddings

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token embeddings `(N, max_len, dim)` float32 (zero at padding) and `mask (N, max_len)` bool."""
        ids, mask = self.tokenize(texts)
        return self.encode_ids(ids, mask), mask
