"""Caption tokenizers: a closed word vocabulary of the Shapes World caption grammar, or bytes.

The captioner and the prompt upsampler write detailed captions token by token. Shapes World
captions come from a fixed grammar (`data_pipelines/shapes_world/captions.py`), so a word-level
vocabulary of that grammar is complete for them: a detailed caption is 30-200 words but 280-700
bytes, so word tokens make decoding 5x shorter (5x fewer autoregressive steps, a 5x shorter
training sequence) and leave no capacity to spelling. Datasets with free-form captions use
`bytes` (the project's `ByteTokenizer`), which covers any text.

Both tokenizers share the project's conventions: id 0 pads, id 1 ends a caption, and a caption
longer than `max_len` keeps its first `max_len - 1` tokens followed by the end token. The decoder
adds its own start token (id `vocab_size`), so the tokenizers need none.
"""
from __future__ import annotations

import re

import numpy as np

from data_pipelines.shapes_world import BACKGROUND_COLOURS, COLOURS, MOTION_VERBS, SHAPES, SIZES
from data_pipelines.shapes_world.scene import GRADIENT_DIRECTIONS, STRIPE_ORIENTATIONS
from sora_jax.text.tokenizers import EOS_ID, PAD_ID, ByteTokenizer

UNK_ID = 2
# Every other word the caption grammar writes (captions.py): placements, directions, speeds,
# bounce/fall/occlusion/edge/camera phrases, and the two capitalised sentence starts.
GRAMMAR_WORDS = (
    "A The a an and at background before behind bottom bounces but camera centre checkerboard clip "
    "clockwise coming completely counterclockwise diagonally disappearing does down downward drifting "
    "ends enters falls floor frame frames from gradient hidden in is it leaves left more move moves "
    "not off on once partly passes pans place plain quickly rest right slowly spins stays still "
    "stripes the three throughout times to top toward twice up upward wall walls while"
).split()
PUNCTUATION = ("(", ")", ",", ".", ";")
MAX_NUMBER = 511  # frame numbers are written as single tokens "0" .. "511"
_WORD_PATTERN = re.compile(r"\d+|[A-Za-z]+|[^\sA-Za-z\d]")
_NO_SPACE_BEFORE = {")", ",", ".", ";"}


def shapes_world_words() -> list[str]:
    """The vocabulary (without special tokens), in a fixed order that never depends on data."""
    words = set(GRAMMAR_WORDS) | set(SHAPES) | set(SIZES) | set(COLOURS)
    words |= {part for name in BACKGROUND_COLOURS for part in name.split()}
    words |= {part for verb in MOTION_VERBS.values() for part in verb.split()}
    words |= set(GRADIENT_DIRECTIONS) | set(STRIPE_ORIENTATIONS)
    return sorted(words) + list(PUNCTUATION) + [str(n) for n in range(MAX_NUMBER + 1)]


def split_words(text: str) -> list[str]:
    """Words, numbers and punctuation marks of `text`, in order (whitespace dropped)."""
    return _WORD_PATTERN.findall(text)


def join_words(words: list[str]) -> str:
    """Inverse of `split_words` for text written in the caption grammar's spacing."""
    out = []
    for word in words:
        if out and word not in _NO_SPACE_BEFORE and out[-1] != "(":
            out.append(" ")
        out.append(word)
    return "".join(out)


class WordTokenizer:
    """Shapes World caption words as tokens: pad 0, end 1, unknown 2, then `shapes_world_words()`."""

    name = "words"
    pad_id = PAD_ID
    eos_id = EOS_ID
    unk_id = UNK_ID

    def __init__(self):
        self.words = ["<pad>", "<eos>", "<unk>", *shapes_world_words()]
        self.ids = {word: i for i, word in enumerate(self.words)}
        self.vocab_size = len(self.words)

    def encode(self, text: str, max_len: int | None = None) -> np.ndarray:
        """Token ids of `text` plus the end token, `(n,)` int32; words outside the grammar become unk."""
        ids = [self.ids.get(word, UNK_ID) for word in split_words(text)] + [EOS_ID]
        if max_len is not None and len(ids) > max_len:
            if max_len < 1:
                raise ValueError(f"max_len must be at least 1, got {max_len}")
            ids = ids[: max_len - 1] + [EOS_ID]
        return np.asarray(ids, np.int32)  # (n,)

    def decode(self, ids) -> str:
        """Text of `ids`, stopping at the first end token and skipping padding."""
        words = []
        for i in np.asarray(ids).reshape(-1).tolist():
            if i == EOS_ID:
                break
            if i != PAD_ID:
                words.append(self.words[i] if 0 <= i < self.vocab_size else "<unk>")
        return join_words(words)

    def unknown_words(self, text: str) -> list[str]:
        """Words of `text` this vocabulary lacks (they would encode as unk)."""
        return [word for word in split_words(text) if word not in self.ids]


CAPTION_TOKENIZERS = {"words": WordTokenizer, "bytes": ByteTokenizer}


def caption_tokenizer(name: str):
    """The caption tokenizer called `name` (`words` or `bytes`); ValueError naming the known ones."""
    if name not in CAPTION_TOKENIZERS:
        raise ValueError(f"unknown caption tokenizer {name!r}; known: {sorted(CAPTION_TOKENIZERS)}")
    return CAPTION_TOKENIZERS[name]()
