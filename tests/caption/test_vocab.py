"""Caption tokenizers: the word vocabulary covers the Shapes World grammar and round-trips exactly."""
import numpy as np
import pytest

from data_pipelines.shapes_world import generate_clip
from data_pipelines.shapes_world.builder import CONFIGS, clip_shape
from sora_jax.caption.vocab import UNK_ID, WordTokenizer, caption_tokenizer


def test_words_round_trip_every_caption_of_the_grammar():
    tokenizer = WordTokenizer()
    words, chars = 0, 0
    for seed in range(150):  # the small mixture: images and clips up to 65 frames, up to 6 objects
        frames, height, width = clip_shape(seed, CONFIGS[1])
        clip = generate_clip(seed, frames, min(height, 48), min(width, 48), max_objects=6)
        for text in (clip["caption"], clip["caption_short"]):
            ids = tokenizer.encode(text)
            assert UNK_ID not in ids and ids[-1] == tokenizer.eos_id
            assert tokenizer.decode(ids) == text
            words, chars = words + len(ids), chars + len(text) + 1
    # Words are ~5x fewer than bytes: that is why the decoder writes words.
    assert chars / words > 4.5 and tokenizer.vocab_size == 619


def test_unknown_words_truncation_and_padding():
    tokenizer = caption_tokenizer("words")
    ids = tokenizer.encode("A red ball.")
    assert ids.tolist()[2] == UNK_ID and tokenizer.unknown_words("A red ball.") == ["ball"]
    assert tokenizer.decode(ids) == "A red <unk>."
    long = tokenizer.encode("The red circle moves left to right.", max_len=4)
    assert len(long) == 4 and long[-1] == tokenizer.eos_id
    padded = np.concatenate([tokenizer.encode("The camera pans left."), np.zeros(5, np.int32)])
    assert tokenizer.decode(padded) == "The camera pans left."


def test_bytes_and_unknown_tokenizers():
    assert caption_tokenizer("bytes").decode(caption_tokenizer("bytes").encode("any text: ok")) == "any text: ok"
    with pytest.raises(ValueError, match="unknown caption tokenizer 'bpe'"):
        caption_tokenizer("bpe")
