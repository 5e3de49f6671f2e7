"""The captioner stage for the one trainer: packed rows in, each segment's detailed caption out.

Input is the DiT's packed-row pipeline (`data_pipelines.pipeline.build`) unchanged, pixel or latent
mode. Its text tokens (the data tokenizer's, bytes by default) carry each segment's caption; the
config must make that the detailed caption every time (`data.caption_key = "caption"`,
`data.short_caption_prob = 0`). `host_batch` cuts them per segment and re-tokenizes them with the
caption tokenizer into `caption_targets (B, S, T)`: decoder sequence k of a row is segment k + 1.
"""
from __future__ import annotations

import copy

import jax
import ml_collections
import numpy as np
from flax import nnx

from data_pipelines import config as data_config
from data_pipelines import pipeline
from sora_jax.caption.data import resolve_caption_source
from sora_jax.caption.model import (
    Captioner,
    CaptionerConfig,
    caption_loss,
    check_sizes,
    concept_loss,
    teacher_forcing_inputs,
)
from sora_jax.caption.stem import check_stem
from sora_jax.caption.vocab import CAPTION_TOKENIZERS, caption_tokenizer
from sora_jax.models.attention import IMPLEMENTATIONS
from sora_jax.text.tokenizers import get_tokenizer
from sora_jax.train import files
from sora_jax.train.batch import model_inputs

MODEL_FIELDS = ("dim", "heads", "mlp_dim", "encoder_depth", "decoder_depth", "max_caption_len", "dtype", "attention")


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"config: {message}")


def captioner_config(c: ml_collections.ConfigDict, vocab_size: int) -> CaptionerConfig:
    """The model sizes a run config describes (`c.model`, patch and channels from `c.data`)."""
    channels = 3 if c.data.mode == "pixel" else c.model.in_channels
    patch_dim = int(np.prod(c.data.patch)) * channels
    # Workdirs written before the conv stem (frame positions) existed lack those fields: linear (none).
    stem = dict(stem=c.model.get("stem", "linear"), stem_widths=tuple(c.model.get("stem_widths", ())),
                stem_kernel=int(c.model.get("stem_kernel", 2)),
                stem_motion=bool(c.model.get("stem_motion", False)),
                frame_position=bool(c.model.get("frame_position", False)),
                concepts=float(c.model.get("concept_weight", 0.0)) > 0,
                identity_init=bool(c.model.get("identity_init", False)),
                memory_summary=bool(c.model.get("memory_summary", False)))
    return CaptionerConfig(patch_dim=patch_dim, vocab_size=vocab_size, patch=tuple(c.data.patch), channels=channels,
                           **stem, **{k: c.model[k] for k in MODEL_FIELDS})


class CaptionTask:
    """Trains `Captioner` on packed rows with teacher forcing on each segment's detailed caption."""

    def __init__(self, c: ml_collections.ConfigDict):
        self.c = c
        self.tokenizer = caption_tokenizer(c.model.tokenizer)
        self.data_tokenizer = get_tokenizer(c.data.tokenizer)
        self.model_config = captioner_config(c, self.tokenizer.vocab_size)

    @staticmethod
    def validate_config(c: ml_collections.ConfigDict) -> None:
        """Raises ValueError naming the first bad captioner field (called by `train.config.validate`)."""
        data_config.validate(c.data)
        d, m = c.data, c.model
        _need(d.caption_key == "caption" and d.short_caption_prob == 0.0,
              "the captioner learns detailed captions: set data.caption_key='caption' and data.short_caption_prob=0")
        _need(d.frame_stride == 1, "data.frame_stride must be 1: detailed captions name frame indices of the whole clip")
        _need(m.tokenizer in CAPTION_TOKENIZERS, f"model.tokenizer must be one of {sorted(CAPTION_TOKENIZERS)}")
        check_sizes(m.dim, m.heads, "model")
        _need(m.encoder_depth >= 1 and m.decoder_depth >= 1, "model.encoder_depth and model.decoder_depth must be >= 1")
        _need(m.mlp_dim >= 1, "model.mlp_dim must be positive")
        _need(m.max_caption_len >= 8, f"model.max_caption_len must be at least 8, got {m.max_caption_len}")
        _need(m.dtype in ("float32", "bfloat16"), f"model.dtype must be float32 or bfloat16, got {m.dtype!r}")
        _need(m.attention in IMPLEMENTATIONS, f"model.attention must be one of {IMPLEMENTATIONS}")
        _need(d.mode == "pixel" or m.in_channels >= 1, "model.in_channels must be positive in latent mode")
        _need(m.get("stem", "linear") in ("linear", "conv"), f"model.stem must be 'linear' or 'conv', got {m.get('stem')!r}")
        for flag in ("frame_position", "stem_motion", "memory_summary", "identity_init"):
            _need(isinstance(m.get(flag, False), bool), f"model.{flag} must be True or False, got {m.get(flag)!r}")
        _need(not m.get("stem_motion", False) or m.get("stem", "linear") == "conv",
              "model.stem_motion=True needs model.stem='conv' (it reads frame differences inside the conv stem)")
        weight = m.get("concept_weight", 0.0)
        _need(isinstance(weight, (int, float)) and not isinstance(weight, bool) and weight >= 0,
              f"model.concept_weight must be a number >= 0 (0 = no concept head), got {weight!r}")
        if m.get("stem", "linear") == "conv":
            check_stem(d.patch, m.stem_widths, m.get("stem_kernel", 2))
        _need(d.max_text_tokens >= m.max_caption_len,
              "data.max_text_tokens must be >= model.max_caption_len (captions are cut in the data tokenizer first)")

    def make_model(self) -> Captioner:
        return Captioner(self.model_config, rngs=nnx.Rngs(self.c.seed))

    def build_input(self, split: str, rows: int, shard: int, total_shards: int):
        """The packed-row Grain pipeline for one data shard, `rows` rows per batch."""
        data = copy.deepcopy(self.c.data)
        data.batch_size = rows
        data.sources = [resolve_caption_source(s) for s in data.sources]
        return pipeline.build(data, split, shard, total_shards)

    def caption_targets(self, text_tokens: np.ndarray, text_segment_ids: np.ndarray, segments: int) -> np.ndarray:
        """Per-segment caption-tokenizer ids `(S, T)` of one packed row's text tokens (0 where unused)."""
        targets = np.zeros((segments, self.model_config.max_caption_len), np.int32)  # (S, T)
        for k in range(segments):
            ids = text_tokens[text_segment_ids == k + 1]
            if len(ids):
                encoded = self.tokenizer.encode(self.data_tokenizer.decode(ids), self.model_config.max_caption_len)
                targets[k, : len(encoded)] = encoded
        return targets

    def host_batch(self, batch: dict) -> dict:
        """Model inputs plus `caption_targets (B, S, T)` and `caption_segments (B, S)` (k + 1, or 0 if unused)."""
        out = {k: v for k, v in model_inputs(batch).items()
               if k in ("tokens", "coords", "segment_ids")}
        segments = batch["segment_grid"].shape[1]
        out["caption_targets"] = np.stack([self.caption_targets(t, s, segments) for t, s in
                                           zip(batch["text_tokens"], batch["text_segment_ids"])])  # (B, S, T)
        used = out["caption_targets"][:, :, 0] != 0  # (B, S)
        out["caption_segments"] = np.where(used, np.arange(1, segments + 1)[None, :], 0).astype(np.int32)  # (B, S)
        return out

    def batch_stats(self, batch: dict) -> tuple[int, int, float]:
        """(real patch tokens, token slots, approximate train FLOPs: 6 x weights x tokens, attention left out)."""
        real = int((batch["segment_ids"] > 0).sum())
        caption_tokens = int((batch["caption_targets"] > 0).sum())
        m = self.model_config
        encoder, decoder = 12 * m.encoder_depth * m.dim**2, 16 * m.decoder_depth * m.dim**2 + m.dim * m.vocab_size
        return real, batch["segment_ids"].size, 6.0 * (encoder * real + decoder * caption_tokens)

    def loss_fn(self, model: Captioner, batch: dict, rng: jax.Array):
        del rng  # teacher forcing is deterministic
        targets = batch["caption_targets"]
        logits, concepts = model.forward(batch, teacher_forcing_inputs(targets, model.decoder.bos_id))  # (B, S, T, V)
        loss, metrics = caption_loss(logits, targets)
        if concepts is None:
            return loss, metrics
        extra, concept_metrics = concept_loss(concepts, targets)  # (B, S, V) logits
        weight = float(self.c.model.concept_weight)
        return loss + weight * extra, metrics | concept_metrics | {"caption_loss": loss, "concept_loss": extra}

    def validation_fn(self, model: Captioner, batch: dict, rng: jax.Array) -> dict:
        """Teacher-forced loss and accuracies on held-out rows."""
        loss, metrics = self.loss_fn(model, batch, rng)
        return {"val_loss": loss} | {f"val_{k}": v for k, v in metrics.items()}

    def write_samples(self, model: Captioner, workdir: str, step: int) -> list[str]:
        """Greedy captions of held-out clips with their attribute agreement, as `captions.json`."""
        from sora_jax.caption.metrics import evaluate_captioner  # noqa: PLC0415

        source = self.c.data.sources[0]
        report = evaluate_captioner(model, self.c, source, "validation", limit=self.c.get("sample_clips", 16))
        return [files.write_sample_json(workdir, step, "captions.json", report)]

