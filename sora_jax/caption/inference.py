"""Captioning clip records with a trained captioner: size and patchify each clip as the training
pipeline does, pack them first-fit into fixed-shape rows, decode, and cut the captions back out.

Rows are always `rows x data.seq_len` with `data.max_segments_per_row` segments, so decoding
compiles once whatever the clips' shapes. Used by the re-captioning job, the accuracy evaluation and
the trainer's sample writer.
"""
from __future__ import annotations

import jax
import ml_collections
import numpy as np
from flax import nnx

from data_pipelines import config as data_config
from data_pipelines.sizing import size_clip
from sora_jax.caption.decode import make_decoder
from sora_jax.caption.vocab import caption_tokenizer
from sora_jax.diffusion.rows import pack_rows
from sora_jax.models.dit.patchify import patchify
from sora_jax.train.batch import PIXEL_SCALE


def clip_patches(clip: dict, c: ml_collections.ConfigDict, index: int) -> dict:
    """One clip's patches `{"tokens": (N, D) float32, "grid": (gt, gh, gw)}` under the run's data config.

    Pixel clips (`video (T, H, W, 3)` uint8) go through the pipeline's sizing policy; latent clips
    (`latent (t, h, w, c)`) keep their first frames that fit the token budget. Any random choice (a
    temporal window when a clip is longer than `data.max_frames`) is seeded by `index`.
    """
    d = c.data
    if d.mode == "pixel":
        if "video" not in clip:
            raise ValueError(f"record {index} has no video; this captioner was trained in pixel mode")
        video = size_clip(np.asarray(clip["video"]), data_config.sizing_config(d), np.random.default_rng(index))
        tokens, _, grid = patchify(video, tuple(d.patch))  # (N, D) uint8
        return {"tokens": tokens.astype(np.float32) / PIXEL_SCALE - 1.0, "grid": grid}
    if "latent" not in clip:
        raise ValueError(f"record {index} has no latent; this captioner was trained in latent mode")
    latent = np.asarray(clip["latent"], np.float32)  # (t, h, w, c)
    pt, ph, pw = d.patch
    per_frame = (latent.shape[1] // ph) * (latent.shape[2] // pw)
    if per_frame > d.max_tokens_per_clip:
        raise ValueError(f"record {index}: {per_frame} tokens per latent frame, over max_tokens_per_clip")
    frames = min(latent.shape[0], (d.max_tokens_per_clip // per_frame) * pt)
    tokens, _, grid = patchify(latent[: frames - frames % pt], tuple(d.patch))  # (N, D)
    return {"tokens": tokens, "grid": grid}


class ClipCaptioner:
    """Writes detailed captions for clip records with a trained `Captioner` and its run config."""

    def __init__(self, model, c: ml_collections.ConfigDict, rows: int = 4):
        self.model, self.c, self.rows = model, c, rows
        self.tokenizer = caption_tokenizer(c.model.tokenizer)
        self.patch_dim = model.config.patch_dim
        self._decode = make_decoder(model)
        self._concepts = None  # the jitted word-detection head, made on first use

    @classmethod
    def from_workdir(cls, workdir: str, rows: int = 4, step: int | None = None) -> "ClipCaptioner":
        """The captioner trained in `workdir` (latest checkpoint, EMA weights when kept)."""
        from sora_jax.train.restore import load_trained  # noqa: PLC0415

        trained = load_trained(workdir, step)
        if trained.config.task != "captioner":
            raise ValueError(f"{workdir} trained task {trained.config.task!r}, not a captioner")
        return cls(trained.model, trained.config, rows)

    def _packed(self, segments: list[dict]) -> tuple[dict, np.ndarray]:
        d = self.c.data
        for segment in segments:
            segment["text_tokens"] = np.zeros((0,), np.int32)
        packed = pack_rows(segments, d.seq_len, 1, d.max_segments_per_row, self.patch_dim)
        missing = -len(packed["tokens"]) % self.rows  # pad to whole decode batches: one compilation
        batch = {k: np.concatenate([packed[k], np.zeros((missing, *packed[k].shape[1:]), packed[k].dtype)])
                 for k in ("tokens", "coords", "segment_ids", "segment_grid")}
        used = batch.pop("segment_grid").prod(axis=-1) > 0  # (R, S)
        batch["caption_segments"] = np.where(used, np.arange(1, used.shape[1] + 1)[None], 0).astype(np.int32)
        return batch, packed["placement"]

    def caption_tokens(self, segments: list[dict], temperature: float = 0.0, seed: int = 0) -> list[np.ndarray]:
        """Caption token ids (end token, then padding) per prepared segment (`clip_patches` output), in order."""
        if not segments:
            return []
        return self._per_segment(segments, lambda part, start: self._decode(part, temperature, seed + start))

    def _per_segment(self, segments: list[dict], run) -> list[np.ndarray]:
        """`run(part, first_row) -> (rows, S, ...)` over the packed rows of `segments`, `rows` at a time;
        each segment's own slice, in order."""
        batch, placement = self._packed([dict(s) for s in segments])
        out = np.concatenate([np.asarray(run({k: v[start : start + self.rows] for k, v in batch.items()}, start))
                              for start in range(0, len(batch["tokens"]), self.rows)])  # (R, S, ...)
        return [out[row, segment - 1] for row, segment in placement]

    def caption(self, clips: list[dict], first_index: int = 0, temperature: float = 0.0, seed: int = 0) -> list[str]:
        """Detailed captions of `clips` (dicts with `video` or `latent`), greedy by default.

        `first_index` numbers the clips for the seeds of any random temporal window.
        """
        segments = [clip_patches(clip, self.c, first_index + i) for i, clip in enumerate(clips)]
        return self.caption_segments(segments, temperature, seed)

    def caption_segments(self, segments: list[dict], temperature: float = 0.0, seed: int = 0) -> list[str]:
        """Detailed captions of prepared segments (`clip_patches` output)."""
        return [self.tokenizer.decode(ids) for ids in self.caption_tokens(segments, temperature, seed)]

    def concept_probabilities(self, clips: list[dict], first_index: int = 0) -> np.ndarray:
        """The word-detection head's probabilities `(N, V)` for `clips`: which caption-vocabulary words
        it reads in each clip's max-pooled memory (a captioner trained with `model.concept_weight > 0`)."""
        return self.segment_concepts([clip_patches(clip, self.c, first_index + i) for i, clip in enumerate(clips)])

    def segment_concepts(self, segments: list[dict]) -> np.ndarray:
        """`concept_probabilities` of prepared segments (`clip_patches` output), `(N, V)`."""
        if not self.model.config.concepts:
            raise ValueError("this captioner has no word-detection head (trained with model.concept_weight=0)")
        if not segments:
            return np.zeros((0, self.model.config.vocab_size), np.float32)
        if self._concepts is None:
            graphdef, params = nnx.split(self.model)

            @jax.jit
            def run(params, part):
                model = nnx.merge(graphdef, params)
                return jax.nn.sigmoid(model.concept_logits(*model.memory(part), part["caption_segments"]))  # (B, S, V)

            self._concepts = lambda part, _: run(params, part)
        return np.stack(self._per_segment(segments, self._concepts))  # (N, V)
