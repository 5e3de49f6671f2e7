"""Tokenizers behind one small interface: `encode(text) -> ids`, `decode(ids) -> text`.

The byte tokenizer is the default until the text-encoder issue brings T5/MiniLM vocabularies: it is
exact and reversible for any UTF-8 text and needs no vocabulary file. Id 0 is padding (so packed
text rows can be padded with zeros), id 1 ends a caption, ids 2..257 are the 256 byte values.

Truncation rule (all tokenizers): a caption longer than `max_len` tokens keeps its first
`max_len - 1` tokens followed by the end token, so the model always sees where the text stops.
"""
from __future__ import annotations

import numpy as np

PAD_ID = 0
EOS_ID = 1


class ByteTokenizer:
    """UTF-8 bytes as tokens; vocabulary of 258 (pad, end, 256 bytes)."""

    name = "bytes"
    vocab_size = 258
    pad_id = PAD_ID
    eos_id = EOS_ID
    _offset = 2

    def encode(self, text: str, max_len: int | None = None) -> np.ndarray:
        """Token ids of `text` plus the end token, `(n,)` int32, truncated to `max_len` by the module rule."""
        ids = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int32) + self._offset  # (n,)
        ids = np.append(ids, EOS_ID).astype(np.int32)  # (n + 1,)
        if max_len is not None and len(ids) > max_len:
            if max_len < 1:
                raise ValueError(f"max_len must be at least 1, got {max_len}")
            ids = np.append(ids[: max_len - 1], EOS_ID).astype(np.int32)  # (max_len,)
        return ids

    def decode(self, ids) -> str:
        """Text of `ids`, stopping at the first end token and skipping padding."""
        ids = np.asarray(ids).reshape(-1)
        stop = np.flatnonzero(ids == EOS_ID)
        ids = ids[: stop[0]] if len(stop) else ids
        ids = ids[ids >= self._offset] - self._offset
        return bytes(ids.astype(np.uint8).tolist()).decode("utf-8", errors="replace")


def get_tokenizer(name: str):
    """Tokenizer by config name; unknown names raise with the list of known ones."""
    tokenizers = {"bytes": ByteTokenizer}
    if name not in tokenizers:
        raise ValueError(f"unknown tokenizer {name!r}; known: {sorted(tokenizers)}")
    return tokenizers[name]()
