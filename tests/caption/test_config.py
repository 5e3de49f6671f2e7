"""Caption-stage configs: every variant validates, and bad fields fail before anything is built,
with the field named."""
import pytest

from sora_jax.train.config import load_config

CONFIG = "experiments/caption.py"


@pytest.mark.parametrize("variant", ["tiny", "base_v5p", "base_v5e", "upsampler_tiny", "upsampler_base"])
def test_variants_validate(variant):
    # Pod variants read latent datasets written by `sora-jax encode`, given on the command line.
    sources = ["data.sources=['/data/latents/1.0.0']"] if variant.startswith("base") else []
    c = load_config(f"{CONFIG}:{variant}", sources)
    assert c.task == ("upsampler" if variant.startswith("upsampler") else "captioner")
    if variant.startswith("base"):
        assert c.data.mode == "latent" and tuple(c.data.patch) == (1, 2, 2) and c.global_batch_size % 64 == 0


@pytest.mark.parametrize("override, message", [
    ("data.short_caption_prob=0.5", "learns detailed captions"),
    ("data.caption_key='caption_short'", "learns detailed captions"),
    ("data.frame_stride=2", "frame_stride must be 1"),
    ("model.tokenizer='bpe'", "model.tokenizer must be one of"),
    ("model.heads=3", r"dim \(128\) must split into 3 heads"),
    ("model.decoder_depth=0", "decoder_depth"),
    ("model.max_caption_len=4", "max_caption_len must be at least 8"),
    ("model.max_caption_len=2048", "max_text_tokens must be >= model.max_caption_len"),
    ("model.dtype='float16'", "model.dtype"),
    ("model.attention='magic'", "model.attention"),
    ("data.sources=[]", "sources is empty"),
    ("model.stem='resnet'", "model.stem must be 'linear' or 'conv'"),
    ("model.stem='conv' model.stem_widths=(32,64)", r"stem_widths must hold 4 positive widths for 8x8"),
    ("model.stem='conv' data.patch=(2,8,4)", "square power-of-two patches"),
    ("model.stem_motion=True", r"stem_motion=True needs model.stem='conv'"),
])
def test_captioner_config_errors_name_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(f"{CONFIG}:tiny", override.split())


@pytest.mark.parametrize("override, message", [
    ("data.world='huge'", "data.world must be one of"),
    ("data.max_objects=7", r"data.max_objects must be in 1..6"),
    ("model.heads=5", "must split into 5 heads"),
    ("model.max_prompt_len=2", "max_prompt_len"),
])
def test_upsampler_config_errors_name_the_field(override, message):
    with pytest.raises(ValueError, match=message):
        load_config(f"{CONFIG}:upsampler_tiny", [override])


def test_unknown_variant_and_bad_data_spec():
    with pytest.raises(ValueError, match="unknown caption variant 'huge'"):
        load_config(f"{CONFIG}:huge")
    from sora_jax.caption.data import resolve_caption_source

    with pytest.raises(ValueError, match="expected shapes_world_n:CONFIG:N"):
        resolve_caption_source("shapes_world_n:tiny:many")
