"""The Grain input pipeline: built datasets in, packed batches of spacetime tokens out.

    source -> this process's shard -> seeded shuffle -> repeat -> decode -> native-aspect sizing and
    temporal sampling -> patchify to (t, h, w)-coordinate tokens -> first-fit pack into fixed rows
    -> batch -> multiprocess prefetch

Everything random is seeded per element, so a pipeline is a pure function of its config, split and
process index; its iterator state (`get_state`/`set_state`) restores the exact following batches.

Caption text follows `data.text_encoder`. The tiny trainable encoder (default) gets byte token ids,
`text_tokens (n,)`. A frozen encoder (`minilm`, `t5:DIR`) gets its embeddings of the caption's real
tokens, `text_embeddings (n, D)` float16, packed exactly like token ids (same text segment ids):
in latent mode they are read from the records (`sora-jax encode --text-encoder`, checked against the
config when the pipeline is built); in pixel mode the pipeline runs the encoder itself, once per
distinct caption per process (`CaptionEmbedder` caches by text). For MiniLM that is about 35 ms
per new detailed caption on a shared 2-core CPU (docs/text.md), in every process and Grain worker
(each loads its own encoder); latent mode costs nothing.
"""
from __future__ import annotations

import functools

import grain
import ml_collections
from absl import flags
import numpy as np

from data_pipelines import config as data_config
from data_pipelines import packing
from data_pipelines.latents import EMBEDDING_FIELDS, read_text_info
from data_pipelines.sizing import size_clip
from data_pipelines.sources import clip_decoder, open_source, resolve_source
from sora_jax.models.dit.patchify import patchify
from sora_jax.text.interface import EMBEDDING_DTYPE, CaptionEmbedder, canonical_spec, is_frozen_spec
from sora_jax.text.tokenizers import get_tokenizer


def _tag(index: int, record: dict, source_index: int, size: int) -> dict:
    # Grain numbers a repeated dataset's elements on past the end (epoch * size + record): the record is the rest.
    return {"record": np.array([source_index, index % size], np.int64), "stored": record}


def _decode(element: dict, decoder) -> dict:
    clip = decoder(element["stored"])
    clip["record"] = element["record"]
    for name in EMBEDDING_FIELDS:  # latent records written with --text-encoder
        if name in element["stored"]:
            clip[name] = np.asarray(element["stored"][name], EMBEDDING_DTYPE)  # (n, D)
    return clip


class RecordEmbeddings:
    """Latent mode with a frozen encoder: a caption's embeddings are the record's stored ones."""

    def __init__(self, spec: str):
        self.spec = canonical_spec(spec)

    def embed_clip(self, clip: dict, key: str) -> np.ndarray:
        """`{key}_embedding (n, D)` of the record; ValueError naming `--text-encoder` when absent."""
        if f"{key}_embedding" not in clip:
            raise ValueError(f"latent record {clip['record'].tolist()} has no {key}_embedding: data.text_encoder "
                             f"is {self.spec!r}, so encode the dataset with `sora-jax encode ... --text-encoder "
                             f"{self.spec}`")
        return clip[f"{key}_embedding"]


def caption_text(c: ml_collections.ConfigDict):
    """What turns a clip's caption into packed text for `c.text_encoder`: the tokenizer (tiny), the
    records' stored embeddings (frozen, latent mode) or a caching `CaptionEmbedder` (frozen, pixel)."""
    spec = c.get("text_encoder", "tiny")
    if not is_frozen_spec(spec):
        return get_tokenizer(c.tokenizer)
    if c.mode == "latent":
        return RecordEmbeddings(spec)
    return CaptionEmbedder(spec, c.max_text_tokens)


def _caption_features(clip: dict, c: ml_collections.ConfigDict, text, rng: np.random.Generator) -> dict:
    """`{"text_tokens": (n,) int32}` or, with a frozen encoder, `{"text_embeddings": (n, D) float16}`."""
    key = c.caption_key
    if c.short_caption_prob > 0 and rng.random() < c.short_caption_prob:
        key = "caption_short"
    if isinstance(text, RecordEmbeddings):
        return {"text_embeddings": text.embed_clip(clip, key)}  # (n, D)
    if isinstance(text, CaptionEmbedder):
        return {"text_embeddings": text.embed(clip[key])}  # (n, D)
    return {"text_tokens": text.encode(clip[key], max_len=c.max_text_tokens)}  # (n,)


def _known_mask(coords: np.ndarray, c: ml_collections.ConfigDict, rng: np.random.Generator) -> np.ndarray:
    """Per-token known flags: with probability `known_first_frame_prob`, a video's first token frame
    is given clean (image-to-video conditioning); images are never conditioned on themselves."""
    is_video = coords[:, 0].max() > 0
    if c.known_first_frame_prob > 0 and is_video and rng.random() < c.known_first_frame_prob:
        return coords[:, 0] == 0  # (N,)
    return np.zeros(len(coords), bool)  # (N,)


def _segment(array: np.ndarray, clip: dict, rng: np.random.Generator, c: ml_collections.ConfigDict, tokenizer) -> dict:
    """One clip's packable element: spacetime patches of `array (t, h, w, ch)` with their coordinates,
    known flags and caption tokens or embeddings (`tokenizer`: a tokenizer or a `caption_text` source)."""
    tokens, coords, grid = patchify(array, c.patch)  # (N, D), (N, 3)
    return {
        "tokens": tokens,
        "coords": coords,
        "known_mask": _known_mask(coords, c, rng),
        **_caption_features(clip, c, tokenizer, rng),
        "grid": np.asarray(grid, np.int32),
        "record": clip["record"],
    }


def _prepare_pixels(clip: dict, rng: np.random.Generator, c: ml_collections.ConfigDict, tokenizer) -> dict:
    """Sizes one decoded clip under the token budget and cuts it into spacetime patches."""
    video = size_clip(clip["video"], data_config.sizing_config(c), rng)  # (T', H', W', 3)
    return _segment(video, clip, rng, c, tokenizer)


def _prepare_latents(clip: dict, rng: np.random.Generator, c: ml_collections.ConfigDict, tokenizer) -> dict:
    """Takes the longest prefix of latent frames under the token budget and patchifies it.

    Always a prefix: the causal VAE encodes frame 0 alone, so a window starting later would teach the
    DiT a first latent frame the decoder reads as a still image."""
    latent = clip["latent"]  # (t, h, w, c)
    pt, ph, pw = c.patch
    per_frame = (latent.shape[1] // ph) * (latent.shape[2] // pw)
    if per_frame > c.max_tokens_per_clip:
        raise ValueError(
            f"latent record {clip['record'].tolist()} has {per_frame} tokens per latent frame, over "
            f"max_tokens_per_clip={c.max_tokens_per_clip}; re-encode it smaller or raise the budget"
        )
    frames = min(latent.shape[0], (c.max_tokens_per_clip // per_frame) * pt)
    frames -= frames % pt
    return _segment(latent[:frames], clip, rng, c, tokenizer)  # (frames, h, w, c) prefix


def _source_dataset(index: int, path: str, c, split: str, process_index: int, process_count: int):
    source, name = open_source(path, split)
    ds = grain.MapDataset.source(source).map_with_index(functools.partial(_tag, source_index=index, size=len(source)))
    ds = ds[process_index::process_count]
    if c.shuffle:
        ds = ds.seed(c.seed + index).shuffle()
    ds = ds.repeat(c.num_epochs)
    return ds.map(functools.partial(_decode, decoder=clip_decoder(name, data_config.decode_options(c))))


def build(
    c: ml_collections.ConfigDict, split: str = "train", process_index: int = 0, process_count: int = 1
) -> grain.IterDataset:
    """Builds the packed-batch pipeline for one process.

    Args:
      c: the data config (`data_pipelines.config.get_data_config()` with experiment overrides).
      split: dataset split to read, e.g. "train" or "validation".
      process_index, process_count: this host's place among the hosts; each reads a disjoint shard.
    Returns:
      A Grain IterDataset of batches `{name: (batch_size, ...)}` in the packed-row contract of
      `data_pipelines.packing`.
    """
    data_config.validate(c)
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    sources = [_source_dataset(i, p, c, split, process_index, process_count) for i, p in enumerate(c.sources)]
    check_text_sources(c)
    tokenizer = caption_text(c)
    ds = sources[0] if len(sources) == 1 else grain.MapDataset.mix(sources, list(c.weights) or None)
    prepare = _prepare_pixels if c.mode == "pixel" else _prepare_latents
    ds = ds.seed(c.seed).random_map(functools.partial(prepare, c=c, tokenizer=tokenizer))
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=c.read_threads, prefetch_buffer_size=8))
    it = packing.pack(
        it, seq_len=c.seq_len, text_len=c.text_len, max_segments=c.max_segments_per_row,
        bins=c.packing_bins, seed=c.seed, algorithm=c.packing,
        text_feature="text_embeddings" if is_frozen_spec(c.get("text_encoder", "tiny")) else "text_tokens",
    )
    it = it.map(functools.partial(packing.finalize_row, max_segments=c.max_segments_per_row))
    it = it.batch(c.batch_size, drop_remainder=c.num_epochs is None)
    if c.worker_count > 0:
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()  # Grain's workers read absl flags; our CLIs use argparse.
        it = it.mp_prefetch(
            grain.MultiprocessingOptions(num_workers=c.worker_count, per_worker_buffer_size=c.worker_buffer_size)
        )
    return it


def check_text_sources(c: ml_collections.ConfigDict) -> None:
    """With a frozen `c.text_encoder` in latent mode, every source must hold caption embeddings of that
    encoder, truncated at `c.max_text_tokens`; raises ValueError saying how to fix it otherwise."""
    spec = c.get("text_encoder", "tiny")
    if c.mode != "latent" or not is_frozen_spec(spec):
        return
    spec = canonical_spec(spec)
    for path in c.sources:
        info = read_text_info(resolve_source(path))
        if info is None:
            raise ValueError(f"latent dataset {path} has no caption embeddings (it was encoded without --text-encoder) "
                             f"but data.text_encoder is {spec!r}: re-encode it with `sora-jax encode ... "
                             f"--text-encoder {spec}`, or train with data.text_encoder='tiny'")
        if info["spec"] != spec:
            raise ValueError(f"latent dataset {path} holds {info['spec']!r} caption embeddings but "
                             f"data.text_encoder is {spec!r}: set --config.data.text_encoder={info['spec']} or "
                             f"re-encode with `sora-jax encode ... --text-encoder {spec}`")
        if info["max_len"] != c.max_text_tokens:
            raise ValueError(f"latent dataset {path} has captions embedded at max_len {info['max_len']} but "
                             f"data.max_text_tokens is {c.max_text_tokens}: set --config.data.max_text_tokens="
                             f"{info['max_len']} (generation truncates prompts as the records were), or re-encode "
                             f"with --text-max-len {c.max_text_tokens}")
