"""The data section of every experiment config, with its checks.

Bad values fail here, with the field named, before any data is read or anything compiles.
"""
from __future__ import annotations

import ml_collections

from data_pipelines.sizing import SizingConfig
from data_pipelines.sources import DecodeOptions

MODES = ("pixel", "latent")
CAPTION_KEYS = ("caption", "caption_short")

# Equals sora_jax.models.attention.MAX_PACKED_SEGMENTS (a test keeps them in step; importing it
# here would pull JAX into config validation).
MAX_SEGMENTS_PER_ROW = 256


def get_data_config() -> ml_collections.ConfigDict:
    """Defaults for the Grain pipeline (pixel mode, tiny sizes); experiments override fields."""
    c = ml_collections.ConfigDict()
    c.sources = []  # versioned dataset dirs (e.g. DIR/shapes_world/tiny/1.0.0)
    c.weights = []  # mixture weights, one per source; empty means equal
    c.mode = "pixel"  # "pixel": raw frames; "latent": VAE latent records
    c.patch = (1, 8, 8)  # (pt, ph, pw) spacetime patch
    c.spatial_multiple = 8  # frame sides are made multiples of this (pixel mode)
    c.temporal_factor = 1  # frame counts are 1 + k * this (4 for the causal VAE)
    c.seq_len = 1024  # tokens per packed row
    c.max_tokens_per_clip = 1024  # token budget one clip is sized to fit
    c.max_frames = 65
    c.frame_stride = 1
    c.min_side = 16
    c.max_side = ml_collections.config_dict.placeholder(int)
    c.tokenizer = "bytes"  # the tiny trainable text encoder's token ids
    # Text encoder of the DiT: "tiny" (trainable, byte token ids, the default) or a frozen one,
    # "minilm" / "minilm:DIR" / "t5:DIR", whose caption embeddings (n, D) the rows then carry:
    # read from latent records written by `sora-jax encode --text-encoder SPEC`, or computed here in
    # pixel mode. max_text_tokens is then the frozen encoder's max_len (its truncation point).
    c.text_encoder = "tiny"
    c.text_len = 1024  # text tokens per packed row
    c.max_text_tokens = 256  # per caption; longer ones are truncated (see sora_jax.text.tokenizers)
    c.caption_key = "caption"  # which caption trains the model
    c.short_caption_prob = 0.0  # chance of using caption_short instead
    c.known_first_frame_prob = 0.0  # image-to-video training: chance a video's first frame is given
    c.max_segments_per_row = 16
    c.packing = "best_fit"  # "best_fit" or "first_fit" (Grain's packers)
    c.packing_bins = 64  # rows packed at once; more bins, better fill, more memory
    c.batch_size = 4  # rows per batch on this process
    c.shuffle = True
    c.seed = 0
    c.num_epochs = ml_collections.config_dict.placeholder(int)  # None repeats forever
    c.worker_count = 0  # Grain multiprocess workers (0 = in-process)
    c.worker_buffer_size = 2
    c.read_threads = 4
    c.decode_fps = ml_collections.config_dict.placeholder(float)  # video_folder decode options
    c.decode_max_frames = ml_collections.config_dict.placeholder(int)
    c.decode_max_side = ml_collections.config_dict.placeholder(int)
    return c


def validate(c: ml_collections.ConfigDict) -> None:
    """Raises ValueError naming the first bad field of the data config `c`."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ValueError(f"data config: {message}")

    need(len(c.sources) > 0, "sources is empty; give at least one built dataset directory")
    need(not c.weights or len(c.weights) == len(c.sources), "weights must be empty or one per source")
    need(all(w > 0 for w in c.weights), "weights must be positive")
    need(c.mode in MODES, f"mode must be one of {MODES}, got {c.mode!r}")
    need(len(c.patch) == 3 and min(c.patch) >= 1, f"patch must be three positive ints, got {c.patch}")
    need(c.seq_len > 0 and c.text_len > 0, "seq_len and text_len must be positive")
    need(
        0 < c.max_tokens_per_clip <= c.seq_len,
        f"max_tokens_per_clip ({c.max_tokens_per_clip}) must be in 1..seq_len ({c.seq_len})",
    )
    need(0 < c.max_text_tokens <= c.text_len, f"max_text_tokens ({c.max_text_tokens}) must be in 1..text_len")
    need(c.caption_key in CAPTION_KEYS, f"caption_key must be one of {CAPTION_KEYS}")
    _validate_text_encoder(c.get("text_encoder", "tiny"), c.max_text_tokens)
    need(0.0 <= c.short_caption_prob <= 1.0, "short_caption_prob must be in [0, 1]")
    need(0.0 <= c.known_first_frame_prob <= 1.0, "known_first_frame_prob must be in [0, 1]")
    need(1 <= c.max_segments_per_row <= MAX_SEGMENTS_PER_ROW,
         f"max_segments_per_row must be in 1..{MAX_SEGMENTS_PER_ROW} (cuDNN's packed attention layout holds "
         f"that many segments a row), got {c.max_segments_per_row}")
    need(c.packing in ("best_fit", "first_fit"), f"packing must be best_fit or first_fit, got {c.packing!r}")
    need(c.packing_bins >= 1 and c.batch_size >= 1, "packing_bins and batch_size must be at least 1")
    need(c.num_epochs is None or c.num_epochs >= 1, "num_epochs must be None (forever) or at least 1")
    need(c.worker_count >= 0 and c.read_threads >= 1, "worker_count >= 0 and read_threads >= 1")
    if c.mode == "pixel":
        sizing_config(c)  # raises with its own message


def _validate_text_encoder(spec, max_text_tokens: int) -> None:
    """A known spec; a frozen encoder needs room for its special tokens (nothing is loaded here)."""
    from sora_jax.text.interface import canonical_spec  # noqa: PLC0415 (the text package imports JAX)

    try:
        spec = canonical_spec(spec)
    except ValueError as error:
        raise ValueError(f"data config: text_encoder: {error}") from None
    if spec != "tiny" and max_text_tokens < 3:
        raise ValueError(f"data config: max_text_tokens ({max_text_tokens}) is the frozen text encoder's max_len "
                         "and must be at least 3 (its special tokens and some text)")


def sizing_config(c: ml_collections.ConfigDict) -> SizingConfig:
    """The pixel-mode sizing policy described by the data config."""
    return SizingConfig(
        patch=tuple(c.patch),
        spatial_multiple=c.spatial_multiple,
        temporal_factor=c.temporal_factor,
        max_tokens=c.max_tokens_per_clip,
        max_frames=c.max_frames,
        frame_stride=c.frame_stride,
        min_side=c.min_side,
        max_side=c.max_side,
    )


def decode_options(c: ml_collections.ConfigDict) -> DecodeOptions:
    """Decode options for encoded video sources."""
    return DecodeOptions(target_fps=c.decode_fps, max_frames=c.decode_max_frames, max_side=c.decode_max_side)
