"""Patch n' pack: many clips and images of different shapes in fixed-length rows.

Grain's first-fit packer fills `seq_len`-token rows with whole clips (never splitting one) and gives
every clip a segment id (1, 2, ... within its row; 0 is padding). Video tokens, their coordinates and
the clip's text tokens are packed together, so the text of segment k is exactly the text tokens with
text segment id k. `finalize_row` then shapes Grain's output into the project's packed-row contract:

    tokens (L, D)            spacetime patches (uint8 pixels or float latents)
    coords (L, 3) int32      (t, h, w) token coordinates within the clip
    segment_ids (L,) int32   0 = padding
    loss_mask (L,) float32   1 where a token is real
    known_mask (L,) bool     tokens given as clean conditioning (image-to-video training)
    text_tokens (Lt,) int32, text_segment_ids (Lt,) int32
                             (with a frozen text encoder `text_embeddings (Lt, D)` float16 in place
                             of `text_tokens`: each caption's real-token embeddings, packed the
                             same way, with the same text segment ids; 0 at padding)
    segment_grid (S, 3) int32     token grid (gt, gh, gw) of segment k+1, for unpatchify; 0 unused
    segment_record (S, 2) int64   (source, record index) of segment k+1; -1 unused
"""
from __future__ import annotations

import dataclasses

import grain
import numpy as np

PACKED_FEATURES = ("tokens", "coords", "known_mask", "text_tokens")
TEXT_FEATURES = ("text_tokens", "text_embeddings")  # token ids (trainable encoder) or frozen embeddings
META_FEATURES = ("grid", "record")


PACKERS = {
    "first_fit": grain.experimental.FirstFitPackIterDataset,
    "best_fit": grain.experimental.BestFitPackIterDataset,
}


def pack(
    dataset: grain.IterDataset, *, seq_len: int, text_len: int, max_segments: int, bins: int, seed: int,
    algorithm: str = "best_fit", text_feature: str = "text_tokens",
):
    """Packs per-clip token dicts into rows with Grain's first-fit or best-fit packer.

    Best-fit puts each clip in the bin it fills most tightly; with clips up to a whole row long it
    wastes less than first-fit (see benchmarks/packing.py). `text_feature` names the elements' text
    (`text_tokens (n,)` or `text_embeddings (n, D)`); either is packed along its first axis.
    """
    if algorithm not in PACKERS:
        raise ValueError(f"unknown packing algorithm {algorithm!r}; known: {sorted(PACKERS)}")
    if text_feature not in TEXT_FEATURES:
        raise ValueError(f"unknown text feature {text_feature!r}; known: {TEXT_FEATURES}")
    return PACKERS[algorithm](
        dataset,
        length_struct={"tokens": seq_len, "coords": seq_len, "known_mask": seq_len, text_feature: text_len},
        num_packing_bins=bins,
        seed=seed,
        shuffle_bins=True,
        meta_features=META_FEATURES,
        max_sequences_per_bin=max_segments,
    )


def finalize_row(row: dict, max_segments: int) -> dict:
    """Turns one row of Grain's packer output into the packed-row contract (module docstring)."""
    segment_ids = row["tokens_segment_ids"].astype(np.int32)  # (L,)
    grid = np.zeros((max_segments, 3), np.int32)  # (S, 3)
    record = np.full((max_segments, 2), -1, np.int64)  # (S, 2)
    for k, (g, r) in enumerate(zip(row["grid"], row["record"])):
        grid[k], record[k] = g, r
    if "text_embeddings" in row:
        text = {"text_embeddings": row["text_embeddings"].astype(np.float16),  # (Lt, D)
                "text_segment_ids": row["text_embeddings_segment_ids"].astype(np.int32)}
    else:
        text = {"text_tokens": row["text_tokens"].astype(np.int32),  # (Lt,)
                "text_segment_ids": row["text_tokens_segment_ids"].astype(np.int32)}
    return {
        "tokens": row["tokens"],
        "coords": row["coords"].astype(np.int32),
        "segment_ids": segment_ids,
        "loss_mask": (segment_ids > 0).astype(np.float32),
        "known_mask": row["known_mask"].astype(bool),
        **text,
        "segment_grid": grid,
        "segment_record": record,
    }


@dataclasses.dataclass
class PackingStats:
    """Running statistics of packed batches: fill, segments per row, clip kinds."""

    rows: int = 0
    tokens: int = 0
    real_tokens: int = 0
    text_slots: int = 0
    real_text_tokens: int = 0
    segments: int = 0
    images: int = 0
    videos: int = 0

    def add(self, batch: dict) -> None:
        """Accumulates a batch `(B, ...)` or a single row of packed-row arrays."""
        segment_ids = np.asarray(batch["segment_ids"]).reshape(-1, np.shape(batch["segment_ids"])[-1])  # (B, L)
        grids = np.asarray(batch["segment_grid"]).reshape(-1, np.shape(batch["segment_grid"])[-2], 3)  # (B, S, 3)
        used = grids.prod(axis=-1) > 0  # (B, S)
        self.rows += segment_ids.shape[0]
        self.tokens += segment_ids.size
        self.real_tokens += int((segment_ids > 0).sum())
        text_ids = np.asarray(batch["text_segment_ids"])
        self.text_slots += text_ids.size
        self.real_text_tokens += int((text_ids > 0).sum())
        self.segments += int(used.sum())
        self.images += int((used & (grids[..., 0] == 1)).sum())
        self.videos += int((used & (grids[..., 0] > 1)).sum())

    def summary(self) -> dict:
        """Fill fractions and per-row counts as plain numbers."""
        return {
            "rows": self.rows,
            "token_fill": self.real_tokens / max(1, self.tokens),
            "text_fill": self.real_text_tokens / max(1, self.text_slots),
            "segments_per_row": self.segments / max(1, self.rows),
            "images": self.images,
            "videos": self.videos,
        }
