"""T5 / umT5 encoders in Flax NNX: position buckets, masking, the loader, the tokenizer, torch parity."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import save_file

from sora_jax.text.encoders import PretrainedTokenizer, import_hf_weights
from sora_jax.text.t5 import T5Config, T5Encoder, load_t5_encoder, relative_position_bucket, t5_hf_names

# A small config whose 24-token rows reach the log-spaced buckets (max_distance 20 < 24).
SMALL = dict(vocab_size=64, d_model=32, d_kv=8, d_ff=48, num_layers=3, num_heads=4,
             relative_attention_num_buckets=8, relative_attention_max_distance=20)
WORDS = ["a", "red", "ball", "bounces", "blue", "square", "slides", "left", "right", "falls", "the", "on"]


def hf_config(model_type: str, feed_forward_proj: str = "gated-gelu") -> dict:
    return dict(SMALL, model_type=model_type, feed_forward_proj=feed_forward_proj, layer_norm_epsilon=1e-6)


def hf_tensors(model: T5Encoder) -> dict[str, np.ndarray]:
    """Our parameters under their HF names, in torch layout: the loader's inverse."""
    params = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    return {name.keys[0]: np.asarray(params[path][...]).T.copy() if name.transpose else np.asarray(params[path][...])
            for path, name in t5_hf_names(model.config).items()}


def random_t5(config: T5Config, seed: int = 0) -> T5Encoder:
    """A T5Encoder with random weights drawn in numpy (eager JAX init is slow on a busy CPU)."""
    rng = np.random.default_rng(seed)
    abstract = nnx.state(nnx.eval_shape(lambda: T5Encoder(config, rngs=nnx.Rngs(0))), nnx.Param)
    shapes = {path: v.shape for path, v in nnx.to_flat_state(abstract)}
    tensors = {}
    for path, name in t5_hf_names(config).items():
        shape = shapes[path][::-1] if name.transpose else shapes[path]
        scale = 1.0 if path[-1] == "embedding" else 0.2 if path[-1] == "scale" else shape[-1] ** -0.5
        tensors[name.keys[0]] = (rng.normal(size=shape) * scale + (path[-1] == "scale")).astype(np.float32)
    return import_hf_weights(lambda: T5Encoder(config, rngs=nnx.Rngs(0)), tensors, t5_hf_names(config),
                             lambda key: False, "T5")


def write_tokenizer(path) -> None:
    """A tiny SentencePiece-style Unigram `tokenizer.json` (`text </s>`, pad 0), built offline."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    pieces += [("▁" + word, -1.0) for word in WORDS] + [(c, -4.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer.add_special_tokens(["<pad>", "</s>", "<unk>"])
    tokenizer.save(str(path))


def write_t5_folder(folder, model_type: str = "t5", seed: int = 0, extra: dict | None = None) -> T5Encoder:
    """A HF-style T5 folder (config.json, model.safetensors, tokenizer.json) with random weights."""
    folder.mkdir(parents=True, exist_ok=True)
    config = hf_config(model_type)
    (folder / "config.json").write_text(json.dumps(config))
    model = random_t5(T5Config.from_hf(config), seed)
    save_file(hf_tensors(model) | (extra or {}), str(folder / "model.safetensors"))
    write_tokenizer(folder / "tokenizer.json")
    return model


def test_relative_position_bucket_hand_values():
    # T5 defaults (32 buckets, max distance 128): per direction 16 buckets, 8 exact (offsets 0..7),
    # then 8 + floor(8 * log(d / 8) / log(16)) up to 15; positive (key after query) offsets add 16.
    # e.g. d=12: 8 * ln(1.5) / ln(16) = 1.17 -> 9;  d=50: 5.29 -> 13;  d=127: 7.98 -> 15;  d>=128: 15.
    offsets = np.array([0, -1, -7, -8, -12, -20, -50, -127, -128, -1000, 1, 7, 8, 12, 20, 50, 127, 128, 1000])
    expected = [0, 1, 7, 8, 9, 10, 13, 15, 15, 15, 17, 23, 24, 25, 26, 29, 31, 31, 31]
    np.testing.assert_array_equal(relative_position_bucket(offsets, 32, 128), expected)
    # Small config: 4 buckets per direction, 2 exact, then 2 + floor(2 * ln(d / 2) / ln(10)) up to 3:
    # d=3: 0.35 -> 2;  d=9: 1.31 -> 3;  d=40: 2.60 -> 4, capped at 3.
    np.testing.assert_array_equal(relative_position_bucket(np.array([0, -1, -2, -3, -9, -10, -40, 1, 40]), 8, 20),
                                  [0, 1, 2, 2, 3, 3, 3, 5, 7])


@pytest.mark.parametrize("model_type", ["t5", "umt5"])
def test_padding_never_changes_real_tokens(model_type):
    config = T5Config.from_hf(hf_config(model_type))
    model = random_t5(config, seed=1)
    owns_bias = [block.position_bias is not None for block in model.blocks]
    assert owns_bias == ([True, False, False] if model_type == "t5" else [True, True, True])  # shared vs per layer
    rng = np.random.default_rng(0)
    ids = rng.integers(2, 64, size=(2, 24)).astype(np.int32)
    mask = np.arange(24)[None] < np.array([[24], [10]])  # row 1: 10 real tokens
    changed = ids.copy()
    changed[1, 10:] = rng.integers(2, 64, size=14)  # different padding content
    forward = nnx.jit(lambda m, i, k: m(i, k))
    base, other = np.asarray(forward(model, ids, mask)), np.asarray(forward(model, changed, mask))
    np.testing.assert_allclose(other[1, :10], base[1, :10], atol=1e-6)
    changed[1, 3] = (changed[1, 3] + 1) % 64  # a real token changes -> every real output moves
    moved = np.asarray(forward(model, changed, mask))
    assert np.abs(moved[1, :10] - base[1, :10]).max(axis=-1).min() > 1e-4


def test_loader_round_trip_full_model_and_errors(tmp_path):
    decoder = {"decoder.block.0.layer.0.SelfAttention.q.weight": np.zeros((32, 32), np.float32),
               "lm_head.weight": np.zeros((64, 32), np.float32)}
    model = write_t5_folder(tmp_path / "full", "umt5", extra=decoder)  # a full encoder-decoder file
    loaded = load_t5_encoder(tmp_path / "full")
    ids, mask = np.full((1, 6), 5, np.int32), np.ones((1, 6), bool)
    forward = nnx.jit(lambda m, i, k: m(i, k))
    reference = np.asarray(forward(model, ids, mask))
    np.testing.assert_array_equal(np.asarray(forward(loaded, ids, mask)), reference)
    half = load_t5_encoder(tmp_path / "full", dtype="bfloat16")  # parameters and activations in bfloat16
    assert half.blocks[0].query.kernel[...].dtype == jnp.bfloat16
    error = np.abs(np.asarray(forward(half, ids, mask), np.float32) - reference).max()
    assert error < 0.05 * np.abs(reference).max(), error  # bf16 keeps ~3 digits; measured ~2% after 3 layers

    tensors = hf_tensors(model)
    tensors["encoder.embed_tokens.weight"] = tensors.pop("shared.weight")  # the other tied spelling works
    load_t5_encoder(tmp_path / "full", weights=tensors)
    del tensors["encoder.block.2.layer.0.SelfAttention.relative_attention_bias.weight"]
    tensors["encoder.block.0.layer.1.DenseReluDense.wo.weight"] = np.zeros((32, 40), np.float32)
    with pytest.raises(ValueError) as error:
        load_t5_encoder(tmp_path / "full", weights=tensors)
    assert "missing keys: encoder.block.2.layer.0.SelfAttention.relative_attention_bias.weight" in str(error.value)
    assert "wo.weight: file (40, 32), model (48, 32)" in str(error.value)
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_t5_encoder(tmp_path / "absent")
    with pytest.raises(ValueError, match="not a T5-family config"):
        T5Config.from_hf(dict(hf_config("t5"), model_type="bert"))


def test_unigram_tokenizer_truncates_the_end_and_keeps_eos(tmp_path):
    write_tokenizer(tmp_path / "tokenizer.json")
    tokenizer = PretrainedTokenizer(tmp_path / "tokenizer.json", max_len=6)
    ids, mask = tokenizer(["a red ball", "a red ball bounces on the left", ""])
    assert tokenizer.pad_id == 0 and tokenizer.num_special == 1
    np.testing.assert_array_equal(mask.sum(1), [4, 6, 1])
    assert ids[0, 3] == 1 and ids[1, 5] == 1 and ids[2, 0] == 1  # </s> closes every row, truncated or not
    assert tokenizer.decode(ids[0]) == "a red ball" and tokenizer.decode(ids[1]) == "a red ball bounces on"
    with pytest.raises(ValueError, match="must exceed the 1 special tokens"):
        PretrainedTokenizer(tmp_path / "tokenizer.json", max_len=1)


@pytest.mark.parametrize("variant", ["t5_v1_1", "t5_relu", "t5_full_bf16", "umt5"])
def test_matches_transformers(variant, tmp_path):
    torch = pytest.importorskip("torch", reason="parity tests need torch and transformers: run `make parity`")
    transformers = pytest.importorskip("transformers", reason="parity tests need transformers: run `make parity`")
    torch.manual_seed(0)
    if variant == "umt5":
        reference = transformers.UMT5EncoderModel(transformers.UMT5Config(**SMALL, feed_forward_proj="gated-gelu"))
    elif variant == "t5_full_bf16":  # a full encoder-decoder checkpoint stored in bfloat16
        config = transformers.T5Config(**SMALL, feed_forward_proj="gated-gelu")
        reference = transformers.T5ForConditionalGeneration(config)
    else:
        proj = "gated-gelu" if variant == "t5_v1_1" else "relu"
        reference = transformers.T5EncoderModel(transformers.T5Config(**SMALL, feed_forward_proj=proj))
    reference = reference.eval()
    if variant == "t5_full_bf16":
        reference.to(torch.bfloat16).save_pretrained(tmp_path)
        reference = reference.float().encoder  # the reference sees the same bf16-rounded weights
    else:
        reference.save_pretrained(tmp_path)
    ours = load_t5_encoder(tmp_path)

    rng = np.random.default_rng(0)
    ids = rng.integers(2, 64, size=(3, 24))
    mask = np.arange(24)[None] < np.array([[24], [11], [3]])
    with torch.no_grad():
        theirs = reference(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask.astype(np.int64)))
    theirs = theirs.last_hidden_state.numpy()
    got = np.asarray(ours(jnp.asarray(ids, jnp.int32), jnp.asarray(mask)))
    assert np.abs(theirs[mask]).max() > 0.5  # a real comparison, not between near-zeros
    error = np.abs(got - theirs)[mask].max()
    assert error < 1e-4, error  # measured 1.0e-6 to 1.9e-6 (float32, shared 2-core EPYC CPU)
