"""Clips the probe trains and is measured on: Shapes World clips from seeds no dataset uses.

The probe's domain is the evaluation's: still cameras (the prompt suite asks for them; a pan over a
plain background would make a still object look like it moves, which no probe could undo), 1 to 3
objects, 1 to 17 frames, short sides 32 to 64 px and aspects 1:2 to 2:1 (longer side at most 96).
A seed whose scene pans is skipped deterministically (the next of 16 candidates), so clip `i` of a
split is a pure function of `i`. Train, validation and the prompt suite draw from disjoint seed
ranges, none overlapping the Shapes World datasets (seeds below 2e9).
"""
from __future__ import annotations

import json

import grain
import numpy as np

from data_pipelines.shapes_world import generate_clip
from data_pipelines.shapes_world.builder import ASPECTS
from sora_jax.eval.probe import ProbeConfig
from sora_jax.eval.targets import clip_objects, slot_targets
from sora_jax.eval.world import probe_inputs

SEED_BASES = {"train": 2_000_000_000, "validation": 2_500_000_000, "suite": 3_000_000_000}
CANDIDATES = 16  # seeds tried per clip index until one has a still camera
FRAME_CHOICES = (1, 5, 9, 17)
FRAME_WEIGHTS = (0.1, 0.2, 0.35, 0.35)
SHORT_SIDES = (32, 48, 64)
MAX_SIDE = 96
SPLIT_SIZES = {"train": 1_000_000, "validation": 4096}


def clip_shape(seed: int) -> tuple[int, int, int]:
    """`(frames, height, width)` of probe clip `seed`: sides multiples of 8, longer side <= 96."""
    rng = np.random.default_rng([seed, 11])
    frames = int(rng.choice(FRAME_CHOICES, p=FRAME_WEIGHTS))
    short, aspect = int(rng.choice(SHORT_SIDES)), float(rng.choice(ASPECTS))
    height, width = (short, short * aspect) if aspect >= 1 else (short / aspect, short)
    scale = min(1.0, MAX_SIDE / max(height, width))
    return frames, *(max(16, int(round(side * scale / 8)) * 8) for side in (height, width))


def still_clip(seed: int, frames: int, height: int, width: int) -> dict:
    """The first of `CANDIDATES` Shapes World clips from `seed * CANDIDATES + j` whose camera is still."""
    for j in range(CANDIDATES):
        clip = generate_clip(seed * CANDIDATES + j, frames, height, width)
        meta = json.loads(clip["meta"])
        if not meta["camera"]["pan"]:
            return clip | {"meta_dict": meta}
    raise ValueError(f"no still-camera clip among the {CANDIDATES} candidates of seed {seed}")


def probe_clip(index: int, split: str) -> dict:
    """Clip `index` of a probe split ("train", "validation" or "suite"), with `meta_dict` parsed."""
    if split not in SEED_BASES:
        raise ValueError(f"unknown probe split {split!r}; known: {sorted(SEED_BASES)}")
    seed = SEED_BASES[split] + int(index)
    return still_clip(seed, *clip_shape(seed))


def probe_example(clip: dict, config: ProbeConfig) -> dict:
    """One training example: the probe inputs (views, tracks, glimpses) and the per-slot targets of `clip`."""
    inputs = probe_inputs(clip["video"], config.frames, config.size, config.glimpse, config.track_frames)
    return inputs | slot_targets(clip_objects(clip["meta_dict"]))


def build_probe_batches(split: str, batch_size: int, config: ProbeConfig, seed: int = 0,
                        shard: int = 0, total_shards: int = 1):
    """Grain IterDataset of probe batches (views uint8 (B, F, S, S, K + 1), tracks float32 (B, K, Ft, 5),
    glimpses uint8 (B, K, F, G, G); present, shape, motion,
    direction (B, K)); shuffled and repeated for "train", in order for "validation".

    Its iterator has Grain's get_state/set_state, so the trainer resumes it exactly.
    """
    ds = grain.MapDataset.range(SPLIT_SIZES[split])[shard::total_shards]
    if split == "train":
        ds = ds.seed(seed).shuffle().repeat(None)
    ds = ds.map(lambda index: probe_example(probe_clip(int(index), split), config))
    return ds.to_iter_dataset().batch(batch_size, drop_remainder=True)
