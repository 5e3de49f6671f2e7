"""The probe as a task of the one trainer: `sora-jax train --config experiments/probe.py:tiny --workdir DIR`.

Loss: binary cross-entropy of every slot's presence plus, over the slots that hold an object, the
cross-entropies of shape, motion and direction. Validation logs per-attribute accuracies of a
held-out batch; `write_samples` measures the probe on `eval_clips` held-out clips and writes
`probe_accuracy.json` into the workdir (the figure the evaluation trusts or refuses).
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

from sora_jax.eval.probe import Probe, ProbeConfig, ProbeReader, scale_inputs
from sora_jax.eval.probe_data import SPLIT_SIZES, build_probe_batches, probe_clip
from sora_jax.eval.targets import (
    ATTRIBUTES,
    CLASS_COUNTS,
    attribute_hits,
    clip_objects,
    decode_slots,
)
from sora_jax.train import files

ACCURACY_FILE = "probe_accuracy.json"
REQUIRED_ACCURACY = 0.98


def probe_config_of(c: ml_collections.ConfigDict) -> ProbeConfig:
    """The ProbeConfig a run config describes (`c.model`)."""
    m = c.model
    return ProbeConfig(frames=m.frames, size=m.size, widths=tuple(m.widths), embed_dim=m.embed_dim,
                       max_objects=m.max_objects, glimpse=m.glimpse, glimpse_widths=tuple(m.glimpse_widths),
                       track_frames=m.track_frames)


def probe_loss(outputs: dict, batch: dict) -> tuple[jax.Array, dict]:
    """Presence BCE over all slots + class cross-entropies over occupied slots; accuracies as metrics."""
    present = batch["present"]  # (B, K)
    occupied = jnp.maximum(present.sum(), 1.0)
    loss = jnp.mean(optax.sigmoid_binary_cross_entropy(outputs["present"], present))
    metrics = {"present_acc": jnp.mean(((outputs["present"] > 0) == (present > 0.5)).astype(jnp.float32))}
    for name in CLASS_COUNTS:
        labels = batch[name]  # (B, K)
        ce = optax.softmax_cross_entropy_with_integer_labels(outputs[name], labels)  # (B, K)
        loss = loss + jnp.sum(ce * present) / occupied
        hit = (jnp.argmax(outputs[name], axis=-1) == labels).astype(jnp.float32)  # (B, K)
        metrics[f"{name}_acc"] = jnp.sum(hit * present) / occupied
    return loss, metrics


class ProbeTask:
    """Trains `Probe` on still-camera Shapes World clips (see `sora_jax.eval.probe_data`)."""

    def __init__(self, c: ml_collections.ConfigDict):
        self.c = c
        self.probe_config = probe_config_of(c)

    @staticmethod
    def validate_config(c: ml_collections.ConfigDict) -> None:
        """Raises ValueError naming the first bad probe field (called by `train.config.validate`)."""
        for name in ("frames", "size", "widths", "embed_dim", "max_objects", "glimpse", "glimpse_widths",
                     "track_frames"):
            if name not in c.get("model", {}):
                raise ValueError(f"config: model.{name} is missing (see experiments/probe.py)")
        try:
            probe_config_of(c)
        except ValueError as error:
            raise ValueError(f"config: model: {error}") from None
        if c.get("eval_clips", 0) < 1 or c.eval_clips > SPLIT_SIZES["validation"]:
            raise ValueError(f"config: eval_clips must be in 1..{SPLIT_SIZES['validation']}, got {c.get('eval_clips')}")

    def make_model(self) -> Probe:
        return Probe(self.probe_config, rngs=nnx.Rngs(self.c.seed))

    def loss_fn(self, model: Probe, batch: dict, rng: jax.Array):
        del rng  # the probe is deterministic
        return probe_loss(model(batch["views"], batch["tracks"], batch["glimpses"]), batch)

    def build_input(self, split: str, rows: int, shard: int, total_shards: int):
        return build_probe_batches(split, rows, self.probe_config, self.c.data.seed, shard, total_shards)

    def host_batch(self, batch: dict) -> dict:
        return batch | scale_inputs(batch)

    def batch_stats(self, batch: dict) -> tuple[int, int, float]:
        clips = len(batch["views"])
        return clips, clips, 0.0  # "tokens" are clips; conv FLOPs are not counted

    def validation_fn(self, model: Probe, batch: dict, rng: jax.Array) -> dict:
        loss, metrics = probe_loss(model(batch["views"], batch["tracks"], batch["glimpses"]), batch)
        return {"val_loss": loss} | {f"val_{k}": v for k, v in metrics.items()}

    def write_samples(self, model: Probe, workdir: str, step: int) -> list[str]:
        """Measures held-out accuracy on `eval_clips` validation clips; writes probe_accuracy.json."""
        clips = [probe_clip(i, "validation") for i in range(self.c.eval_clips)]
        report = measure_probe(ProbeReader(model), clips) | {"step": step, "split": "validation"}
        latest = files.join(workdir, ACCURACY_FILE)  # the one the evaluation reads
        files.write_text(latest, json.dumps(report, indent=2))
        return [files.write_sample_json(workdir, step, ACCURACY_FILE, report), latest]


def measure_probe(reader: ProbeReader, clips: list[dict]) -> dict:
    """Accuracy of the probe on clips with ground truth: every visible object's colour (found or not),
    shape, motion and direction, and false presences (colours reported that no object has).

    Returns {"accuracy": all attribute decisions, "per_attribute": {...}, "per_motion": motion
    accuracy by true motion, "false_present_rate", "clips", "objects", "trusted": accuracy >= 0.98}.
    """
    outputs = reader.read([clip["video"] for clip in clips])
    hits = {name: [] for name in ATTRIBUTES}
    by_motion, false_present, absent = {}, 0, 0
    for i, clip in enumerate(clips):
        truth = clip_objects(clip.get("meta_dict") or clip["meta"])
        predicted = decode_slots(outputs["present"][i], outputs["shape"][i], outputs["motion"][i], outputs["direction"][i])
        clip_hits = attribute_hits(truth, predicted)
        for name in ATTRIBUTES:
            hits[name] += clip_hits[name]
        for obj, hit in zip(truth, clip_hits["motion"]):
            by_motion.setdefault(obj["motion"], []).append(hit)
        true_colours = {obj["colour"] for obj in truth}
        false_present += sum(obj["colour"] not in true_colours for obj in predicted)
        absent += len(outputs["present"][i]) - len(true_colours)
    decisions = [h for name in ATTRIBUTES for h in hits[name]]
    accuracy = float(np.mean(decisions))
    return {
        "accuracy": accuracy,
        "per_attribute": {name: float(np.mean(hits[name])) for name in ATTRIBUTES},
        "per_motion": {name: float(np.mean(v)) for name, v in sorted(by_motion.items())},
        "false_present_rate": false_present / max(absent, 1),
        "clips": len(clips), "objects": len(hits["present"]),
        "required": REQUIRED_ACCURACY, "trusted": accuracy >= REQUIRED_ACCURACY,
    }
