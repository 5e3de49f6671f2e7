"""The Grain input pipeline: built datasets in, packed batches of spacetime tokens out.

    source -> this process's shard -> seeded shuffle -> repeat -> decode -> native-aspect sizing and
    temporal sampling -> patchify to (t, h, w)-coordinate tokens -> first-fit pack into fixed rows
    -> batch -> multiprocess prefetch

Everything random is seeded per element, so a pipeline is a pure function of its config, split and
process index; its iterator state (`get_state`/`set_state`) restores the exact following batches.
"""
from __future__ import annotations

import functools

import grain
import ml_collections
from absl import flags
import numpy as np

from data_pipelines import config as data_config
from data_pipelines import packing
from data_pipelines.sizing import size_clip
from data_pipelines.sources import clip_decoder, open_source
from sora_jax.models.dit.patchify import patchify
from sora_jax.text.tokenizers import get_tokenizer


def _tag(index: int, record: dict, source_index: int) -> dict:
    return {"record": np.array([source_index, index], np.int64), "stored": record}


def _decode(element: dict, decoder) -> dict:
    clip = decoder(element["stored"])
    clip["record"] = element["record"]
    return clip


def _caption_tokens(clip: dict, c: ml_collections.ConfigDict, tokenizer, rng: np.random.Generator) -> np.ndarray:
    key = c.caption_key
    if c.short_caption_prob > 0 and rng.random() < c.short_caption_prob:
        key = "caption_short"
    return tokenizer.encode(clip[key], max_len=c.max_text_tokens)  # (n_text,)


def _known_mask(coords: np.ndarray, c: ml_collections.ConfigDict, rng: np.random.Generator) -> np.ndarray:
    """Per-token known flags: with probability `known_first_frame_prob`, a video's first token frame
    is given clean (image-to-video conditioning); images are never conditioned on themselves."""
    is_video = coords[:, 0].max() > 0
    if c.known_first_frame_prob > 0 and is_video and rng.random() < c.known_first_frame_prob:
        return coords[:, 0] == 0  # (N,)
    return np.zeros(len(coords), bool)  # (N,)


def _segment(array: np.ndarray, clip: dict, rng: np.random.Generator, c: ml_collections.ConfigDict, tokenizer) -> dict:
    """One clip's packable element: spacetime patches of `array (t, h, w, ch)` with their coordinates,
    known flags and caption tokens."""
    tokens, coords, grid = patchify(array, c.patch)  # (N, D), (N, 3)
    return {
        "tokens": tokens,
        "coords": coords,
        "known_mask": _known_mask(coords, c, rng),
        "text_tokens": _caption_tokens(clip, c, tokenizer, rng),
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
    ds = grain.MapDataset.source(source).map_with_index(functools.partial(_tag, source_index=index))
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
    tokenizer = get_tokenizer(c.tokenizer)
    sources = [_source_dataset(i, p, c, split, process_index, process_count) for i, p in enumerate(c.sources)]
    ds = sources[0] if len(sources) == 1 else grain.MapDataset.mix(sources, list(c.weights) or None)
    prepare = _prepare_pixels if c.mode == "pixel" else _prepare_latents
    ds = ds.seed(c.seed).random_map(functools.partial(prepare, c=c, tokenizer=tokenizer))
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=c.read_threads, prefetch_buffer_size=8))
    it = packing.pack(
        it, seq_len=c.seq_len, text_len=c.text_len, max_segments=c.max_segments_per_row,
        bins=c.packing_bins, seed=c.seed, algorithm=c.packing,
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

