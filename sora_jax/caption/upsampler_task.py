"""The prompt-upsampler stage for the one trainer: (short, detailed) Shapes World caption pairs.

Pairs are generated on the fly from Shapes World seeds with the clip shapes of a builder config's
mixture (`data.world`), so the training set is unbounded and every pair is reproducible: training
seeds count up from 0 (data shard `s` of `n` takes seeds `s, s + n, ...`), held-out seeds start at
the builder's validation offset and never meet training ones. The input is a Grain pipeline, so its
position is checkpointed with the model like every other stage's.
"""
from __future__ import annotations

import functools

import grain
import jax
import ml_collections
import numpy as np
from flax import nnx

from data_pipelines.shapes_world import MAX_OBJECTS, generate_clip
from data_pipelines.shapes_world.builder import (
    CONFIGS,
    VALIDATION_SEED_OFFSET,
    clip_shape,
)
from sora_jax.caption.model import caption_loss, check_sizes, teacher_forcing_inputs
from sora_jax.caption.upsampler import (
    PromptUpsampler,
    Upsampler,
    UpsamplerConfig,
    evaluate_upsampler,
    prompt_batch,
)
from sora_jax.caption.vocab import CAPTION_TOKENIZERS, caption_tokenizer
from sora_jax.models.attention import IMPLEMENTATIONS
from sora_jax.train import files

WORLDS = {c.name: c for c in CONFIGS}
MODEL_FIELDS = ("dim", "heads", "mlp_dim", "encoder_depth", "decoder_depth", "max_prompt_len", "max_caption_len",
                "dtype", "attention")
_TRAIN_SEEDS = 10**9  # training seeds lie below the validation offset


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"config: {message}")


def pair_seed(split: str, index: int) -> int:
    """Shapes World seed of pair `index` of `split` ("train" or "validation")."""
    if split not in ("train", "validation"):
        raise ValueError(f"unknown split {split!r}; the upsampler has 'train' and 'validation'")
    return index if split == "train" else VALIDATION_SEED_OFFSET + index


def caption_pair(seed: int, world: str, max_objects: int) -> dict:
    """The (short, detailed) captions of the Shapes World clip with `seed`, shaped as `world`'s mixture."""
    frames, height, width = clip_shape(seed, WORLDS[world])
    clip = generate_clip(seed, frames, height, width, fps=WORLDS[world].fps, max_objects=max_objects)
    return {"caption_short": clip["caption_short"], "caption": clip["caption"]}


def caption_pairs(world: str, split: str, indices, max_objects: int) -> list[dict]:
    """Pairs `indices` of `split` (held-out evaluation uses `split="validation"`)."""
    return [caption_pair(pair_seed(split, i), world, max_objects) for i in indices]


class UpsamplerTask:
    """Trains `Upsampler` with teacher forcing on detailed captions given short ones."""

    def __init__(self, c: ml_collections.ConfigDict):
        self.c = c
        self.tokenizer = caption_tokenizer(c.model.tokenizer)
        self.model_config = UpsamplerConfig(vocab_size=self.tokenizer.vocab_size,
                                            **{k: c.model[k] for k in MODEL_FIELDS})

    @staticmethod
    def validate_config(c: ml_collections.ConfigDict) -> None:
        """Raises ValueError naming the first bad upsampler field (called by `train.config.validate`)."""
        m, d = c.model, c.data
        _need(d.world in WORLDS, f"data.world must be one of {sorted(WORLDS)}, got {d.world!r}")
        _need(1 <= d.max_objects <= MAX_OBJECTS, f"data.max_objects must be in 1..{MAX_OBJECTS}, got {d.max_objects}")
        _need(m.tokenizer in CAPTION_TOKENIZERS, f"model.tokenizer must be one of {sorted(CAPTION_TOKENIZERS)}")
        check_sizes(m.dim, m.heads, "model")
        _need(m.encoder_depth >= 1 and m.decoder_depth >= 1, "model.encoder_depth and model.decoder_depth must be >= 1")
        _need(m.max_prompt_len >= 8 and m.max_caption_len >= 8, "model.max_prompt_len and max_caption_len must be >= 8")
        _need(m.dtype in ("float32", "bfloat16"), f"model.dtype must be float32 or bfloat16, got {m.dtype!r}")
        _need(m.attention in IMPLEMENTATIONS, f"model.attention must be one of {IMPLEMENTATIONS}")

    def make_model(self) -> Upsampler:
        return Upsampler(self.model_config, rngs=nnx.Rngs(self.c.seed))

    def _example(self, index: int, split: str) -> dict:
        pair = caption_pair(pair_seed(split, index), self.c.data.world, self.c.data.max_objects)
        inputs = {k: v[0] for k, v in prompt_batch([pair["caption_short"]], self.model_config.max_prompt_len).items()}
        targets = np.zeros((1, self.model_config.max_caption_len), np.int32)  # (1, T)
        ids = self.tokenizer.encode(pair["caption"], self.model_config.max_caption_len)
        targets[0, : len(ids)] = ids
        return inputs | {"caption_targets": targets}

    def build_input(self, split: str, rows: int, shard: int, total_shards: int):
        """Grain pipeline of `rows`-pair batches for one data shard (train: endless; validation: 4096 pairs, repeated)."""
        count = _TRAIN_SEEDS if split == "train" else 4096
        ds = grain.MapDataset.range(count)[shard::total_shards]
        ds = ds.map(functools.partial(self._example, split=split)).repeat(None)
        return ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)).batch(rows, drop_remainder=True)

    def host_batch(self, batch: dict) -> dict:
        return dict(batch)

    def batch_stats(self, batch: dict) -> tuple[int, int, float]:
        """(real prompt + caption tokens, their slots, approximate train FLOPs: 6 x weights x tokens)."""
        prompt, caption = int(batch["prompt_segment_ids"].sum()), int((batch["caption_targets"] > 0).sum())
        m = self.model_config
        encoder, decoder = 12 * m.encoder_depth * m.dim**2, 16 * m.decoder_depth * m.dim**2 + m.dim * m.vocab_size
        slots = batch["prompt_segment_ids"].size + batch["caption_targets"].size
        return prompt + caption, slots, 6.0 * (encoder * prompt + decoder * caption)

    def loss_fn(self, model: Upsampler, batch: dict, rng: jax.Array):
        del rng  # teacher forcing is deterministic
        targets = batch["caption_targets"]
        return caption_loss(model(batch, teacher_forcing_inputs(targets, model.decoder.bos_id)), targets)

    def validation_fn(self, model: Upsampler, batch: dict, rng: jax.Array) -> dict:
        """Teacher-forced loss and accuracies on held-out pairs."""
        loss, metrics = self.loss_fn(model, batch, rng)
        return {"val_loss": loss} | {f"val_{k}": v for k, v in metrics.items()}

    def write_samples(self, model: Upsampler, workdir: str, step: int) -> list[str]:
        """Upsampled sample prompts and preservation on 64 held-out pairs, as `upsampled.json`."""
        upsampler = PromptUpsampler(model, self.c.model.tokenizer)
        report = evaluate_upsampler(upsampler, caption_pairs(self.c.data.world, "validation", range(64),
                                                              self.c.data.max_objects))
        report["samples"] = [{"prompt": p, "upsampled": u}
                             for p, u in zip(self.c.sample_prompts, upsampler.upsample(list(self.c.sample_prompts)))]
        return [files.write_sample_json(workdir, step, "upsampled.json", report)]
