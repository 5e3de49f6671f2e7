"""The one text-encoder interface: specs, the tiny trainable path, batched caption encoding."""
import numpy as np
import pytest
from flax import nnx

from data_pipelines.shapes_world import generate_clip
from sora_jax.text.encoders import TokenEmbeddingEncoder
from sora_jax.text.interface import TextEncoder, TinyTextEncoder, encode_captions, get_text_encoder
from sora_jax.text.t5 import T5TextEncoder
from sora_jax.text.tokenizers import EOS_ID
from tests.text.test_bert_minilm import MAX_LEN, shared_minilm
from tests.text.test_t5 import write_t5_folder


@pytest.fixture(scope="module")
def captions() -> list[str]:
    """Seven Shapes World captions, short and detailed (some longer than 32 word pieces)."""
    clips = [generate_clip(seed, 2, 16, 16) for seed in range(4)]
    return [clip["caption"] for clip in clips] + [clip["caption_short"] for clip in clips[:3]]


def test_specs_and_errors(tmp_path):
    assert isinstance(shared_minilm(), TextEncoder) and isinstance(TinyTextEncoder(), TextEncoder)
    minilm = get_text_encoder("minilm", max_len=16, batch_size=2)
    assert (minilm.name, minilm.dim, minilm.max_len, minilm.trainable) == ("minilm", 384, 16, False)
    tiny = get_text_encoder("byte", max_len=40, dim=32)
    assert (tiny.name, tiny.dim, tiny.max_len, tiny.trainable) == ("tiny", 32, 40, True)
    with pytest.raises(ValueError, match="unknown text encoder spec 'clip'"):
        get_text_encoder("clip")
    with pytest.raises(ValueError, match="unknown text encoder spec 't5'"):
        get_text_encoder("t5")  # a T5 needs its folder
    with pytest.raises(FileNotFoundError, match="lacks config.json, model.safetensors, tokenizer.json"):
        get_text_encoder(f"minilm:{tmp_path}")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        get_text_encoder(f"t5:{tmp_path}")
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['dtype'\]"):
        get_text_encoder("minilm", dtype="bfloat16")
    with pytest.raises(ValueError, match="max_len 600 exceeds the model's 512 positions"):
        get_text_encoder("minilm", max_len=600)


def test_encode_captions_in_batches_matches_one_call_and_compiles_per_length(captions):
    encoder = shared_minilm()
    embeddings, mask = encode_captions(encoder, captions, batch_size=3)  # chunks 3, 3, 1
    direct, direct_mask = encoder.encode(captions)  # batches of the encoder's own size, 4
    assert embeddings.shape == (7, MAX_LEN, 384) and embeddings.dtype == np.float32 and mask.dtype == bool
    np.testing.assert_array_equal(mask, direct_mask)
    np.testing.assert_allclose(embeddings, direct, atol=1e-5)  # neighbours in a batch never matter
    assert (embeddings[~mask] == 0).all()
    assert mask.sum(1).max() == MAX_LEN and mask.sum(1).min() < MAX_LEN  # long captions cut, short padded
    # Batches of short captions ran at 16 tokens, the others at 32, and nothing else was compiled.
    assert encoder.lengths == (16, 32) and encoder._forward._cache_size() == 2
    empty, empty_mask = encode_captions(encoder, [], batch_size=3)
    assert empty.shape == (0, MAX_LEN, 384) and empty_mask.shape == (0, MAX_LEN)


def test_tiny_path_gives_token_ids_and_a_trainable_module(captions):
    tiny = get_text_encoder("tiny", max_len=24, dim=16)
    ids, mask = tiny.tokenize(["a red ball", captions[0]])
    assert ids.shape == (2, 24) and ids.dtype == np.int32
    np.testing.assert_array_equal(mask.sum(1), [len("a red ball") + 1, 24])
    assert ids[0, 10] == EOS_ID and ids[1, 23] == EOS_ID and tiny.tokenizer.decode(ids[0]) == "a red ball"
    module = nnx.eval_shape(lambda: tiny.make_module(rngs=nnx.Rngs(0)))  # abstract: shapes without compiling
    assert isinstance(module, TokenEmbeddingEncoder) and module.tokens.embedding.shape == (258, 16)
    assert nnx.eval_shape(lambda m: m(ids, mask.astype(np.int32)), module).shape == (2, 24, 16)
    with pytest.raises(ValueError, match="trainable.*tokenize"):
        tiny.encode(["a red ball"])
    with pytest.raises(ValueError, match="trainable"):
        encode_captions(tiny, ["a red ball"])


def test_t5_folder_spec_end_to_end(tmp_path):
    model = write_t5_folder(tmp_path / "umt5", "umt5", seed=3)
    encoder = get_text_encoder(f"t5:{tmp_path / 'umt5'}", max_len=8, batch_size=2)
    assert isinstance(encoder, T5TextEncoder) and (encoder.dim, encoder.max_len) == (32, 8)
    texts = ["a red ball", "a blue square slides left on the right", "falls"]
    embeddings, mask = encoder.encode(texts)
    np.testing.assert_array_equal(mask.sum(1), [4, 8, 2])  # pieces + </s>, the long one cut to 8
    ids, _ = encoder.tokenize(texts)
    expected = np.asarray(nnx.jit(lambda m, i, k: m(i, k))(model, ids, mask)) * mask[..., None]
    np.testing.assert_allclose(embeddings, expected, atol=1e-5)
