import numpy as np
import pytest

from sora_jax.text.tokenizers import EOS_ID, get_tokenizer


def test_byte_tokenizer_round_trips_unicode():
    tok = get_tokenizer("bytes")
    text = "a red circle falls — and bounces ✓"
    ids = tok.encode(text)
    assert ids.dtype == np.int32 and ids[-1] == EOS_ID
    assert len(ids) == len(text.encode("utf-8")) + 1 and ids.min() >= 1 and ids.max() < tok.vocab_size
    assert tok.decode(ids) == text
    assert tok.decode(np.concatenate([ids, np.zeros(5, np.int32)])) == text  # padding ignored


def test_truncation_keeps_end_token():
    tok = get_tokenizer("bytes")
    ids = tok.encode("abcdefghij", max_len=4)
    np.testing.assert_array_equal(ids, [ord("a") + 2, ord("b") + 2, ord("c") + 2, EOS_ID])
    assert tok.decode(ids) == "abc"


def test_unknown_tokenizer_is_named():
    with pytest.raises(ValueError, match="unknown tokenizer 'sp'"):
        get_tokenizer("sp")
