"""What each stage trains: the model, its loss, its host-side batch preparation, and its extras.

The trainer is one loop for every stage; a task supplies the parts that differ. Tasks register by
the config's `task` field.
"""
from __future__ import annotations

import copy
import importlib
import os

import jax.numpy as jnp
import ml_collections
from flax import nnx

from data_pipelines import pipeline
from sora_jax.diffusion.flow import FlowConfig, flow_loss, validation_loss
from sora_jax.models.dit.config import get_dit_config
from sora_jax.models.dit.flops import forward_flops
from sora_jax.models.text_to_video import TextToVideo
from sora_jax.text.interface import CaptionEmbedder, canonical_spec, frozen_encoder_dim, is_frozen_spec
from sora_jax.text.tokenizers import get_tokenizer
from sora_jax.train import files
from sora_jax.train.batch import model_inputs

VALIDATION_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)


class DiTTask:
    """Text-to-video flow matching over packed rows (pretrain and finetune stages).

    `c.data.text_encoder` picks the text path: "tiny" trains a token encoder inside the model; a
    frozen spec ("minilm", "t5:DIR") makes the DiT read that encoder's embeddings (`text_dim` = its
    width), from latent records or computed by the input pipeline, and `tokenizer` is then a
    `CaptionEmbedder` that gives generation the same embeddings for a prompt.
    """

    def __init__(self, c: ml_collections.ConfigDict):
        self.c = c
        in_channels = 3 if c.data.mode == "pixel" else c.model.in_channels
        self.text_encoder = canonical_spec(c.data.get("text_encoder", "tiny"))  # runs saved before it: tiny
        self.frozen_text = is_frozen_spec(self.text_encoder)
        overrides = dict(c.model.overrides)
        if self.frozen_text:
            dim = frozen_encoder_dim(self.text_encoder)
            if overrides.get("text_dim", dim) != dim:
                raise ValueError(f"model.overrides text_dim={overrides['text_dim']} but the frozen text encoder "
                                 f"{self.text_encoder!r} gives {dim}-wide embeddings; drop the override")
            overrides["text_dim"] = dim
        self.dit_config = get_dit_config(c.model.preset, patch=tuple(c.data.patch), in_channels=in_channels,
                                         **overrides)
        self.flow = FlowConfig(**dict(c.flow))
        self.tokenizer = (CaptionEmbedder(self.text_encoder, c.data.max_text_tokens) if self.frozen_text
                          else get_tokenizer(c.data.tokenizer))

    def make_model(self) -> TextToVideo:
        vocab_size = 0 if self.frozen_text else self.tokenizer.vocab_size
        return TextToVideo(self.dit_config, vocab_size=vocab_size, max_text_len=self.c.text_max_len,
                           frozen_text=self.frozen_text, rngs=nnx.Rngs(self.c.seed))

    def loss_fn(self, model, batch, rng):
        return flow_loss(model, batch, rng, self.flow)

    def build_input(self, split: str, rows: int, shard: int, total_shards: int):
        """The packed-row Grain pipeline for one data shard, `rows` rows per batch."""
        data = copy.deepcopy(self.c.data)
        data.batch_size = rows
        return pipeline.build(data, split, shard, total_shards)

    def host_batch(self, batch: dict) -> dict:
        return model_inputs(batch)

    def batch_stats(self, batch: dict) -> tuple[int, int, float]:
        """(real tokens, token slots, train-step model FLOPs) of a host batch."""
        return int(batch["loss_mask"].sum()), batch["loss_mask"].size, self.batch_flops(batch)

    def batch_flops(self, batch: dict) -> float:
        """Train-step model FLOPs of a host batch (3x forward), attention per segment."""
        total = 0.0
        for grids, text_ids in zip(batch["segment_grid"], batch["text_segment_ids"]):
            used = grids.prod(axis=-1) > 0
            tokens = grids[used].prod(axis=-1).tolist()
            text = [int((text_ids == k + 1).sum()) for k in range(len(tokens))]
            total += forward_flops(self.dit_config, tokens, text)
        return 3.0 * total

    def validation_fn(self, model, batch, rng) -> dict:
        """Flow loss on held-out rows at fixed times (no caption dropout)."""
        times = jnp.asarray(VALIDATION_TIMES)
        losses = validation_loss(model, batch, rng, times, self.flow)
        return {f"val_loss_t{t:.1f}": losses[i] for i, t in enumerate(VALIDATION_TIMES)} | {"val_loss": jnp.mean(losses)}

    def write_samples(self, model, workdir: str, step: int) -> list[str]:
        """Generates the config's sample prompts at `sample_shape` (pixels) with the generation
        pipeline, in pixel or latent mode, and writes GIFs under `samples/step_N/`."""
        from data_pipelines.preview import captioned_gif  # noqa: PLC0415
        from sora_jax.generate.codec import make_codec  # noqa: PLC0415
        from sora_jax.generate.pipeline import Generator  # noqa: PLC0415

        c = self.c
        if getattr(self, "_codec", None) is None:
            self._codec = make_codec(c)  # latent mode loads the VAE once
        generator = Generator(model, self._codec, self.tokenizer, self.flow, self.dit_config.patch,
                              max_text_tokens=c.data.max_text_tokens, max_frames=c.data.max_frames,
                              max_tokens=c.data.max_tokens_per_clip, sample_shape=tuple(c.sample_shape), step=step,
                              workdir=workdir)
        frames, height, width = c.sample_shape
        out_dir = files.join(workdir, "samples", f"step_{step:07d}")
        with files.local_dir(out_dir) as local:
            for i, prompt in enumerate(c.sample_prompts):
                video = generator.generate(prompt, frames, height, width, steps=c.sample_steps, seed=c.seed + i)
                captioned_gif({"video": video, "caption": prompt}, os.path.join(local, f"sample_{i}.gif"))
        return [files.join(out_dir, f"sample_{i}.gif") for i in range(len(c.sample_prompts))]


# Task name -> "module:Class". Modules import lazily so a stage does not load the others.
TASK_CLASSES = {
    "dit": "sora_jax.train.tasks:DiTTask",
    "vae": "sora_jax.train.vae_task:VAETask",
    "captioner": "sora_jax.caption.task:CaptionTask",
    "probe": "sora_jax.eval.probe_task:ProbeTask",
    "upsampler": "sora_jax.caption.upsampler_task:UpsamplerTask",
}


def task_class(name: str):
    """The task class registered as `name`; ValueError naming the known tasks otherwise."""
    if name not in TASK_CLASSES:
        raise ValueError(f"unknown task {name!r}; known: {sorted(TASK_CLASSES)}")
    module_name, _, class_name = TASK_CLASSES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ValueError(f"task {name!r} is not available in this build ({error})") from None
    return getattr(module, class_name)


def make_task(c: ml_collections.ConfigDict):
    """The task object for `c.task` (see TASK_CLASSES)."""
    return task_class(c.task)(c)
