"""BERT in Flax NNX and the MiniLM sentence encoder: tokenizer, meaning, loader errors, torch parity."""
import functools

import numpy as np
import pytest
from safetensors.numpy import save_file

from sora_jax.text.bert import BertConfig, bert_hf_names, load_bert
from sora_jax.text.minilm import MiniLMEncoder, minilm_dir

MAX_LEN = 32  # short rows keep the CPU tests fast; truncation is exercised by a longer sentence
LONG = ("a small red circle bounces off the left wall while a large blue square slides slowly to the right "
        "behind a green triangle that falls from the top of the frame under gravity and the camera pans")
SENTENCES = ["a red ball bounces", "hi", "a blue square slides to the left on a striped background", LONG]


@functools.lru_cache(maxsize=None)
def shared_minilm() -> MiniLMEncoder:
    """One MiniLM (max_len 32, batches of 4) per test session; test_interface reuses it."""
    return MiniLMEncoder(max_len=MAX_LEN, batch_size=4)


def cosine(a, b) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_sentence_embeddings_rank_meaning():
    encoder = shared_minilm()
    pairs = [("a red ball bounces", "a red sphere bounces", "stock prices fell"),
             ("a blue square slides to the left", "a blue cube moves left", "the recipe needs two eggs"),
             ("a triangle falls from the top", "a triangle drops down", "a circle rotates in place")]
    texts = [t for triple in pairs for t in triple]
    embeddings = encoder.sentence_embeddings(texts)  # (9, 384)
    assert embeddings.shape == (9, 384) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
    for i in range(0, 9, 3):
        anchor, paraphrase, other = embeddings[i : i + 3]
        # Paraphrases of a scene sit far closer than unrelated text (measured 0.80 vs 0.05 on the first
        # triple); a 0.2 margin keeps the test about meaning, not about ties.
        assert cosine(anchor, paraphrase) > cosine(anchor, other) + 0.2, texts[i : i + 3]


def test_tokenizer_round_trip_and_truncation():
    tokenizer = shared_minilm().tokenizer
    ids, mask = tokenizer(SENTENCES)
    assert ids.shape == mask.shape == (4, MAX_LEN) and ids.dtype == np.int32 and mask.dtype == bool
    lengths = mask.sum(1)
    assert lengths[1] == 3  # [CLS] hi [SEP]
    assert lengths[3] == MAX_LEN  # the long sentence is cut to the row length
    for row, length in enumerate(lengths):
        assert ids[row, 0] == 101 and ids[row, length - 1] == 102  # [CLS] first, [SEP] last, always
        assert (ids[row, length:] == tokenizer.pad_id).all() and mask[row, :length].all()
    assert tokenizer.decode(ids[0]) == "a red ball bounces"
    truncated = tokenizer.decode(ids[3])
    assert LONG.startswith(truncated) and len(truncated) < len(LONG)  # the END of the text is what is cut
    with pytest.raises(ValueError, match="list of strings"):
        tokenizer("one string")


def test_padding_is_zero_and_batch_neighbours_do_not_matter():
    encoder = shared_minilm()
    together, mask = encoder.encode(SENTENCES)  # (4, L, 384): short rows padded next to a full one
    alone, _ = encoder.encode(["a red ball bounces"])
    assert together.shape == (4, MAX_LEN, 384)
    assert (together[~mask] == 0).all() and np.abs(together[mask]).min() >= 0 and np.abs(together[mask]).max() > 0.1
    np.testing.assert_allclose(together[0], alone[0], atol=1e-5)


def _tiny_bert_tensors(config: BertConfig) -> dict[str, np.ndarray]:
    """Random HF-named tensors for `config`, in torch layout (Linear weights `(out, in)`)."""
    from flax import nnx

    from sora_jax.text.bert import BertModel

    abstract = nnx.state(nnx.eval_shape(lambda: BertModel(config, rngs=nnx.Rngs(0))), nnx.Param)
    shapes = {path: v.shape for path, v in nnx.to_flat_state(abstract)}
    rng = np.random.default_rng(0)
    tensors = {}
    for path, name in bert_hf_names(config).items():
        shape = shapes[path][::-1] if name.transpose else shapes[path]
        tensors[name.keys[0]] = rng.normal(size=shape).astype(np.float32)
    tensors["embeddings.position_ids"] = np.arange(config.max_position_embeddings)[None]  # a buffer, ignored
    return tensors


def test_loader_reads_a_file_and_names_every_problem(tmp_path):
    config = BertConfig(vocab_size=40, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16,
                        max_position_embeddings=16)
    tensors = _tiny_bert_tensors(config)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    model = load_bert(tmp_path, config)
    np.testing.assert_array_equal(np.asarray(model.layers[1].mlp_in.kernel[...]),
                                  tensors["encoder.layer.1.intermediate.dense.weight"].T)  # (in, out) here

    broken = dict(tensors)
    del broken["encoder.layer.1.output.dense.bias"]
    save_file(broken, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match=r"missing keys: encoder\.layer\.1\.output\.dense\.bias"):
        load_bert(tmp_path / "missing.safetensors", config)

    broken["cls.predictions.bias"] = np.zeros(3, np.float32)
    broken["encoder.layer.0.attention.self.key.weight"] = np.zeros((8, 9), np.float32)
    with pytest.raises(ValueError) as error:
        load_bert(broken, config)
    message = str(error.value)
    assert "missing keys: encoder.layer.1.output.dense.bias" in message
    assert "unexpected keys: cls.predictions.bias" in message
    assert "encoder.layer.0.attention.self.key.weight: file (9, 8), model (8, 8)" in message
    with pytest.raises(FileNotFoundError, match="no safetensors weights"):
        load_bert(tmp_path / "nope.safetensors", config)


def test_minilm_matches_transformers_bert():
    torch = pytest.importorskip("torch", reason="parity tests need torch and transformers: run `make parity`")
    transformers = pytest.importorskip("transformers", reason="parity tests need transformers: run `make parity`")
    encoder = shared_minilm()
    ours, mask = encoder.encode(SENTENCES)  # (4, L, 384)

    reference_tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    theirs_ids = reference_tokenizer(SENTENCES, truncation=True, max_length=MAX_LEN, padding="max_length")["input_ids"]
    np.testing.assert_array_equal(encoder.tokenize(SENTENCES)[0], np.array(theirs_ids))  # same truncation rule

    reference = transformers.BertModel.from_pretrained(minilm_dir()).eval()
    ids, _ = encoder.tokenize(SENTENCES)
    with torch.no_grad():
        theirs = reference(input_ids=torch.from_numpy(ids.astype(np.int64)),
                           attention_mask=torch.from_numpy(mask.astype(np.int64))).last_hidden_state.numpy()
    error = np.abs(ours - theirs)[mask].max()
    assert error < 1e-4, error  # measured 3.5e-6 (float32, shared 2-core EPYC CPU)
    pooled = (theirs * mask[..., None]).sum(1) / mask.sum(1, keepdims=True)  # sentence-transformers' mean pooling
    pooled /= np.linalg.norm(pooled, axis=1, keepdims=True)
    np.testing.assert_allclose(encoder.sentence_embeddings(SENTENCES), pooled, atol=1e-5)
