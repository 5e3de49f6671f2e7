"""Shapes World rendered on demand: a random-access source whose record `i` is drawn when read.

`shapes_world_live:CONFIG` is the mixture of Shapes World `CONFIG` with (practically) no end: train
record `i` is the clip of seed `i` for every seed below the validation offset, so an accelerator
run never sees a clip twice. The validation split is the config's own, the same clips as the
built `shapes_world:CONFIG` validation split, so held-out numbers compare across the two. The
`test` split (live only) holds `TEST_CLIPS` more held-out clips, of seeds above both, for figures
tighter than a few dozen validation clips give (read a prefix of it: `caption.metrics --split test
--limit N`). Every
record equals the built dataset's record of the same seed (tested), in the same schema, so the
pipelines decode it like a built one.

Rendering costs about 2 ms per `tiny` clip on one core: use Grain workers (`data.worker_count`) on
accelerators. Jobs that read a dataset to its end (`sora-jax encode`) reject a live source.
"""
from __future__ import annotations

from data_pipelines.shapes_world import generate_clip
from data_pipelines.shapes_world.builder import CONFIGS, VALIDATION_SEED_OFFSET, clip_shape, split_seeds

PREFIX = "shapes_world_live:"
SPLITS = ("train", "validation", "test")
TEST_SEED_OFFSET = 1_500_000_000  # above every train and validation seed, below 2**31
TEST_CLIPS = 100_000


def is_live(spec) -> bool:
    """Whether a source spec names a live (rendered on demand) Shapes World."""
    return isinstance(spec, str) and spec.startswith(PREFIX)


class LiveShapesWorld:
    """Random-access source of Shapes World `config_name` clips, rendered when read."""

    def __init__(self, config_name: str, split: str):
        known = {c.name: c for c in CONFIGS}
        if config_name not in known:
            raise ValueError(f"bad data source {PREFIX}{config_name!r}: known configs {sorted(known)}")
        if split not in SPLITS:
            raise ValueError(f"split {split!r} not in {PREFIX}{config_name}; available: {list(SPLITS)}")
        self.config, self.split = known[config_name], split
        if split == "test":
            self.seeds = range(TEST_SEED_OFFSET, TEST_SEED_OFFSET + TEST_CLIPS)
        else:
            self.seeds = range(VALIDATION_SEED_OFFSET) if split == "train" else split_seeds(self.config, split)

    def __len__(self) -> int:
        return len(self.seeds)

    def __getitem__(self, index: int) -> dict:
        seed = self.seeds[int(index)]
        frames, height, width = clip_shape(seed, self.config)
        return generate_clip(seed, frames, height, width, fps=self.config.fps, max_objects=self.config.max_objects)

    def __repr__(self) -> str:
        return f"LiveShapesWorld({self.config.name!r}, {self.split!r}, {len(self)} clips)"
