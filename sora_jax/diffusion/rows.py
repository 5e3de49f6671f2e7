"""Packing known shapes into rows in memory (generation, tests) and cutting rows back into clips.

Training rows come from the Grain pipeline; generation knows its requests up front and packs them
here into the same packed-row contract (`data_pipelines.packing`), first-fit, in request order.
"""
from __future__ import annotations

import numpy as np

from sora_jax.models.dit.patchify import grid_coords, patchify, unpatchify


def pack_rows(segments: list[dict], seq_len: int, text_len: int, max_segments: int, feature_dim: int) -> dict:
    """Packs segments into as few rows as first-fit allows.

    Args:
      segments: each `{"grid": (gt, gh, gw), "text_tokens": (n,) int}` and optionally
        `"tokens": (N, feature_dim)` (zeros when absent) and `"known_mask": (N,) bool`.
    Returns:
      A packed batch of numpy arrays `(R, ...)` plus `placement`: `(row, segment_id)` per segment.
    """
    rows: list[list[int]] = []
    used_tokens, used_text = [], []
    placement = []
    for index, segment in enumerate(segments):
        n_tokens, n_text = int(np.prod(segment["grid"])), len(segment["text_tokens"])
        if n_tokens > seq_len or n_text > text_len:
            raise ValueError(f"segment {index} needs {n_tokens} tokens and {n_text} text tokens; rows hold {seq_len} and {text_len}")
        for row, members in enumerate(rows):
            if used_tokens[row] + n_tokens <= seq_len and used_text[row] + n_text <= text_len and len(members) < max_segments:
                break
        else:
            rows.append([]), used_tokens.append(0), used_text.append(0)
            row = len(rows) - 1
        rows[row].append(index)
        used_tokens[row] += n_tokens
        used_text[row] += n_text
        placement.append((row, len(rows[row])))
    batch = _empty_rows(len(rows), seq_len, text_len, max_segments, feature_dim)
    for row, members in enumerate(rows):
        _fill_row(batch, row, [segments[i] for i in members])
    batch["placement"] = np.asarray(placement, np.int32)
    return batch


def _empty_rows(count: int, seq_len: int, text_len: int, max_segments: int, feature_dim: int) -> dict:
    return {
        "tokens": np.zeros((count, seq_len, feature_dim), np.float32),
        "coords": np.zeros((count, seq_len, 3), np.int32),
        "segment_ids": np.zeros((count, seq_len), np.int32),
        "loss_mask": np.zeros((count, seq_len), np.float32),
        "known_mask": np.zeros((count, seq_len), bool),
        "text_tokens": np.zeros((count, text_len), np.int32),
        "text_segment_ids": np.zeros((count, text_len), np.int32),
        "segment_grid": np.zeros((count, max_segments, 3), np.int32),
    }


def _fill_row(batch: dict, row: int, members: list[dict]) -> None:
    start, text_start = 0, 0
    for k, segment in enumerate(members, start=1):
        grid = tuple(int(g) for g in segment["grid"])
        n, text = int(np.prod(grid)), np.asarray(segment["text_tokens"], np.int32)
        span, text_span = slice(start, start + n), slice(text_start, text_start + len(text))
        if "tokens" in segment:
            batch["tokens"][row, span] = segment["tokens"]
        if "known_mask" in segment:
            batch["known_mask"][row, span] = segment["known_mask"]
        batch["coords"][row, span] = grid_coords(grid)
        batch["segment_ids"][row, span] = k
        batch["loss_mask"][row, span] = 1.0
        batch["text_tokens"][row, text_span] = text
        batch["text_segment_ids"][row, text_span] = k
        batch["segment_grid"][row, k - 1] = grid
        start, text_start = start + n, text_start + len(text)


def unpack_rows(tokens: np.ndarray, batch: dict, patch) -> list[np.ndarray]:
    """Cuts packed `tokens (R, L, D)` back into one `(t, h, w, c)` array per placed segment, in order."""
    clips = []
    for row, segment_id in batch["placement"]:
        grid = batch["segment_grid"][row, segment_id - 1]
        clips.append(unpatchify(np.asarray(tokens[row][batch["segment_ids"][row] == segment_id]), grid, patch))
    return clips


def latent_segment(latent: np.ndarray, patch, text_tokens: np.ndarray, known_frames: np.ndarray | None = None) -> dict:
    """A segment dict for `pack_rows` from a latent `(t, h, w, c)`; `known_frames (t,)` marks known latent frames."""
    tokens, coords, grid = patchify(np.asarray(latent, np.float32), patch)
    segment = {"grid": grid, "tokens": tokens, "text_tokens": text_tokens}
    if known_frames is not None:
        frame_known = np.asarray(known_frames, bool)[:: patch[0]]  # (gt,) a token is known if its first frame is
        segment["known_mask"] = frame_known[coords[:, 0]]
    return segment
