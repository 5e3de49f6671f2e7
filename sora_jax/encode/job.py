"""The latent-encoding job: a trained VAE turns a clip dataset into a `latents` dataset.

    sora-jax encode --vae-workdir VAE_DIR --data DATASET_DIR --out OUT_DIR

Three phases, each resumable from the files it leaves under `OUT_DIR/work/`:

1. **Plan** (`plan-<split>.json`): every record's encodable shape. Frames are trimmed to the
   largest `1 + k * time_factor` not above the clip's length (trailing frames dropped, never
   padded: padding would teach the DiT frames that never happened) and height/width centre-cropped
   to multiples of `space_factor` (less than one multiple lost). Records too small for one latent
   pixel, or unreadable, are skipped and counted with their reason. Records are grouped by shape and
   cut into batches, so each shape compiles once.
2. **Encode** (`<split>-<batch>.npz`, written atomically): the posterior mode of each batch. Clips
   longer than `chunk_frames` go through `ChunkedVAE` (bounded memory, the same result); frames
   larger than the VAE's tile go through tiled encoding. A rerun skips batches already written.
3. **Write**: per-channel `shift` (mean) and `scale` (std) of the train split's latents, then the
   TFDS `latents` dataset with latents stored as `(mode - shift) / scale`, and
   `latent_info.json` next to it: `{vae_workdir, vae_step, shift, scale, ...}` — what the DiT's
   latent mode trains on and what generation inverts before decoding.

With `--text-encoder SPEC` (a frozen encoder, e.g. `minilm`; `text_encoder` here) phase 2 also runs
both captions of each batch through the encoder (jitted, rows cut to length buckets: see
`sora_jax.text.encoders.FrozenTextEncoder`) and phase 3 stores each record's real-token embeddings
as `caption_embedding` / `caption_short_embedding`, float16 `(n, D)`; `latent_info.json` gains
`text_encoder: {spec, name, dim, max_len, dtype, fields}`. Captions longer than `max_len` tokens
(`--text-max-len`, default the encoder's) are cut at their end, keeping the special tokens. The
DiT then trains without running the encoder (`data.text_encoder` in the run's config).
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from collections import Counter, defaultdict

import jax
import numpy as np
from flax import nnx
from tqdm import tqdm

import tensorflow_datasets as tfds

from data_pipelines.latents import EMBEDDING_FIELDS, LATENT_INFO, write_latents
from data_pipelines.shapes_world.live import is_live
from data_pipelines.sources import CLIP_DATASETS, DecodeOptions, clip_decoder, open_source, resolve_source
from sora_jax.models.vae.chunked import ChunkedVAE
from sora_jax.models.vae.config import VAEConfig
from sora_jax.models.vae.model import VAE
from sora_jax.text.interface import (EMBEDDING_DTYPE, TextEncoder, canonical_spec, encode_captions, get_text_encoder,
                                     is_frozen_spec)

CAPTION_KEYS = ("caption", "caption_short")  # EMBEDDING_FIELDS[i] == CAPTION_KEYS[i] + "_embedding"


@dataclasses.dataclass(frozen=True)
class EncodeConfig:
    """What to encode and how. `splits=None` means every split of the dataset."""

    vae_workdir: str
    data: str
    out: str
    splits: tuple[str, ...] | None = None
    batch_size: int = 8
    chunk_frames: int = 33  # clips longer than this are encoded chunk by chunk
    stats_records: int = 2048  # train records sampled for shift/scale
    text_encoder: str | None = None  # frozen encoder spec ("minilm", "t5:DIR"): store caption embeddings
    text_max_len: int | None = None  # its truncation length (default: the encoder's own)

    def __post_init__(self):
        if self.batch_size < 1 or self.chunk_frames < 1 or self.stats_records < 1:
            raise ValueError(f"batch_size, chunk_frames and stats_records must be >= 1, got {self}")
        if self.text_encoder is not None and not is_frozen_spec(self.text_encoder):
            raise ValueError(f"--text-encoder {self.text_encoder!r} is the trainable tiny encoder: its embeddings "
                             "are trained with the DiT, so there is nothing to store; give a frozen one "
                             "('minilm', 't5:DIR')")
        if self.text_max_len is not None and self.text_encoder is None:
            raise ValueError("--text-max-len is the truncation length of --text-encoder; give that too")


def encodable_shape(shape: tuple[int, int, int], config: VAEConfig) -> tuple[int, int, int] | None:
    """`(T, H, W)` after trimming frames and centre-cropping sides to fit the factors; None if too small."""
    frames, height, width = shape
    tf, sf = config.time_factor, config.space_factor
    if frames < 1 or height < sf or width < sf:
        return None
    return 1 + (frames - 1) // tf * tf, height // sf * sf, width // sf * sf


def fit_clip(video: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """`video (T, H, W, 3)` trimmed to `shape[0]` frames and centre-cropped to `shape[1:]`."""
    frames, height, width = shape
    top, left = (video.shape[1] - height) // 2, (video.shape[2] - width) // 2
    return video[:frames, top : top + height, left : left + width]  # (T', H', W', 3)


class _Encoder:
    """The VAE's mode encoder: one jitted pass per shape, chunked for long clips, tiled for large frames."""

    def __init__(self, vae: VAE, chunk_frames: int):
        self.config, self.chunk_frames = vae.config, chunk_frames
        self.chunked = ChunkedVAE(vae)
        graphdef, state = nnx.split(vae)
        self._one_pass = jax.jit(lambda state, video: nnx.merge(graphdef, state).encode(video).mode())
        self._state = state

    def __call__(self, video: np.ndarray) -> np.ndarray:
        """Latents `(B, t, h, w, c)` of `video (B, T, H, W, 3)` in [-1, 1] (a valid shape)."""
        if max(video.shape[2:4]) > self.config.tile_size:
            return np.asarray(self.chunked.tiled_encode(video).mode())
        if video.shape[1] > self.chunk_frames:
            return np.asarray(self.chunked.encode(video).mode())
        return np.asarray(self._one_pass(self._state, video))


def load_vae(vae_workdir: str) -> tuple[VAE, int]:
    """The trained VAE of a `sora-jax train --config experiments/vae.py:...` workdir and its step."""
    from sora_jax.train.restore import load_trained  # noqa: PLC0415

    trained = load_trained(vae_workdir)
    if trained.config.task != "vae":
        raise ValueError(f"{vae_workdir} is a {trained.config.task!r} run, not a VAE run")
    return trained.model.vae, trained.step


def _read_clip(source, decoder, index: int) -> tuple[dict | None, str | None]:
    """Record `index` as a decoded clip, or `(None, reason)` when it cannot be read."""
    try:
        return decoder(source[index]), None
    except Exception as error:  # noqa: BLE001  a bad record is counted, never fatal
        return None, f"unreadable: {type(error).__name__}"


def plan_split(source, decoder, config: VAEConfig, batch_size: int) -> dict:
    """Groups the records of one split by encodable shape and cuts the groups into batches.

    Returns `{"batches": [{"shape": [T, H, W], "records": [...]}, ...], "skipped": {reason: count},
    "records": n}`; batches follow shape order, records their index order, so a plan is reproducible.
    """
    groups, skipped = defaultdict(list), Counter()
    for index in tqdm(range(len(source)), desc="plan", unit="clip", leave=False):
        clip, reason = _read_clip(source, decoder, index)
        shape = None if clip is None else encodable_shape(clip["video"].shape[:3], config)
        if shape is None:
            skipped[reason or f"smaller than {config.space_factor}x{config.space_factor}"] += 1
            continue
        groups[shape].append(index)
    batches = [{"shape": list(shape), "records": records[i : i + batch_size]}
               for shape, records in sorted(groups.items()) for i in range(0, len(records), batch_size)]
    return {"batches": batches, "skipped": dict(skipped), "records": len(source)}


def _atomic_save(path: str, **arrays) -> None:
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _caption_embeddings(texts: dict[str, list[str]], text_encoder: TextEncoder) -> dict:
    """`{key}_embedding (B, n_max, D)` float16 (zero past each caption's end) and `{key}_tokens (B,)`
    real-token counts of both captions of a batch; `n_max` is the batch's longest caption."""
    arrays = {}
    for key in CAPTION_KEYS:
        embeddings, mask = encode_captions(text_encoder, texts[key], batch_size=len(texts[key]))  # (B, Lt, D), (B, Lt)
        counts = mask.sum(axis=1)  # (B,)
        arrays[f"{key}_embedding"] = embeddings[:, : max(1, counts.max())].astype(EMBEDDING_DTYPE)  # (B, n_max, D)
        arrays[f"{key}_tokens"] = counts.astype(np.int32)
    return arrays


def _encode_batch(batch: dict, source, decoder, encoder: _Encoder, text_encoder: TextEncoder | None = None) -> dict:
    """Latents and text of one planned batch (records that fail to read now are dropped, counted),
    with the captions' embeddings when a frozen `text_encoder` is given."""
    shape = tuple(batch["shape"])
    videos, kept, texts = [], [], {"caption_short": [], "caption": [], "meta": []}
    for index in batch["records"]:
        clip, _ = _read_clip(source, decoder, index)
        if clip is None or encodable_shape(clip["video"].shape[:3], encoder.config) != shape:
            continue
        videos.append(fit_clip(clip["video"], shape))
        kept.append(index)
        for key in texts:
            texts[key].append(clip[key])
    if not videos:
        return {"records": np.zeros((0,), np.int64)}
    video = np.stack(videos).astype(np.float32) / 127.5 - 1.0  # (B, T, H, W, 3)
    latents = encoder(video)  # (B, t, h, w, c)
    embeddings = {} if text_encoder is None else _caption_embeddings(texts, text_encoder)
    return {"records": np.asarray(kept, np.int64), "latents": latents.astype(np.float32),
            **{k: np.asarray(v, dtype=str) for k, v in texts.items()}, **embeddings}


def _parts(work: str, split: str, plan: dict):
    """The encoded batch files of `split`, in plan order."""
    for b in range(len(plan["batches"])):
        with np.load(os.path.join(work, f"{split}-{b:06d}.npz")) as part:
            yield {k: part[k] for k in part.files}


def latent_stats(work: str, split: str, plan: dict, max_records: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std `(c,)` of the latents of up to `max_records` records of `split`."""
    total, total_sq, count, records = 0.0, 0.0, 0, 0
    for part in _parts(work, split, plan):
        if records >= max_records or not len(part["records"]):
            continue
        latents = part["latents"].astype(np.float64)  # (B, t, h, w, c)
        flat = latents.reshape(-1, latents.shape[-1])  # (B*t*h*w, c)
        total, total_sq, count = total + flat.sum(0), total_sq + np.square(flat).sum(0), count + len(flat)
        records += len(part["records"])
    if not count:
        raise ValueError(f"no latents in split {split!r} to compute the normalisation from")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 1e-12))
    return mean.astype(np.float32), std.astype(np.float32)


def _latent_records(work: str, split: str, plan: dict, shift, scale, provenance: dict):
    """`(key, record)` pairs of the `latents` dataset for one split, latents normalised."""
    for part in _parts(work, split, plan):
        for i, index in enumerate(part["records"].tolist()):
            meta = json.loads(str(part["meta"][i]) or "{}")
            latent = (part["latents"][i] - shift) / scale  # (t, h, w, c)
            encoded = provenance | {"split": split, "index": index, "latent_shape": list(latent.shape)}
            meta = (meta if isinstance(meta, dict) else {"source_meta": meta}) | {"encoding": encoded}
            record = {"latent": latent.astype(np.float32), "caption_short": str(part["caption_short"][i]),
                      "caption": str(part["caption"][i]), "meta": json.dumps(meta)}
            for key in CAPTION_KEYS if "caption_embedding" in part else ():
                record[f"{key}_embedding"] = part[f"{key}_embedding"][i, : part[f"{key}_tokens"][i]]  # (n, D)
            yield f"{split}-{index:09d}", record


def _job_identity(work: str, identity: dict) -> None:
    """Records what `work` encodes; refuses to resume a different job into the same directory."""
    path = os.path.join(work, "job.json")
    if os.path.exists(path):
        with open(path) as f:
            earlier = json.load(f)
        if earlier != identity:
            changed = sorted(k for k in identity if earlier.get(k) != identity[k])
            raise ValueError(f"{os.path.dirname(work)} holds an encode job with different {changed}; "
                             "use a new --out directory (or delete it)")
        return
    with open(path, "w") as f:
        json.dump(identity, f, indent=2)


def _split_plan(work: str, split: str, source, decoder, vae_config: VAEConfig, batch_size: int, log) -> dict:
    path = os.path.join(work, f"plan-{split}.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    plan = plan_split(source, decoder, vae_config, batch_size)
    with open(path + ".tmp", "w") as f:
        json.dump(plan, f)
    os.replace(path + ".tmp", path)
    log(f"{split}: {plan['records']} records in {len(plan['batches'])} batches of "
        f"{len({tuple(b['shape']) for b in plan['batches']})} shapes; skipped {plan['skipped'] or 'none'}")
    return plan


def _text_encoder(ec: EncodeConfig) -> tuple[TextEncoder | None, dict | None]:
    """The frozen caption encoder `ec` asks for and the `text_encoder` entry of `latent_info.json`."""
    if ec.text_encoder is None:
        return None, None
    spec = canonical_spec(ec.text_encoder)
    encoder = get_text_encoder(spec, max_len=ec.text_max_len, batch_size=ec.batch_size)
    return encoder, {"spec": spec, "name": encoder.name, "dim": encoder.dim, "max_len": encoder.max_len,
                     "dtype": np.dtype(EMBEDDING_DTYPE).name, "fields": list(EMBEDDING_FIELDS)}


def run_encode(ec: EncodeConfig, log=print) -> dict:
    """Runs the three phases (module docstring); returns the report also written to `out/encode_report.json`."""
    started = time.perf_counter()
    if is_live(ec.data):
        raise ValueError(f"{ec.data} renders clips on demand and has no end; encode a built dataset "
                         "(shapes_world:CONFIG, or `sora-jax data build shapes_world --out DIR`)")
    vae, vae_step = load_vae(ec.vae_workdir)
    text_encoder, text_info = _text_encoder(ec)
    dataset_dir = resolve_source(ec.data)
    work = os.path.join(ec.out, "work")
    os.makedirs(work, exist_ok=True)
    identity = {"vae_workdir": os.path.abspath(ec.vae_workdir), "vae_step": vae_step,
                "data": os.path.abspath(dataset_dir), "batch_size": ec.batch_size}
    if text_info is not None:  # only then: work dirs of earlier jobs without embeddings still resume
        identity["text_encoder"] = {"spec": text_info["spec"], "max_len": text_info["max_len"]}
    _job_identity(work, identity)
    splits = ec.splits or tuple(sorted(tfds.builder_from_directory(dataset_dir).info.splits))
    encoder, plans, counts = _Encoder(vae, ec.chunk_frames), {}, Counter()
    for split in splits:
        source, name = open_source(dataset_dir, split)
        if name not in CLIP_DATASETS:
            raise ValueError(f"{dataset_dir} is a {name!r} dataset; encode reads clip datasets {CLIP_DATASETS}")
        decoder = clip_decoder(name, DecodeOptions())
        plans[split] = plan = _split_plan(work, split, source, decoder, vae.config, ec.batch_size, log)
        bar = tqdm(total=sum(len(b["records"]) for b in plan["batches"]), desc=f"encode {split}", unit="clip")
        for b, batch in enumerate(plan["batches"]):
            path = os.path.join(work, f"{split}-{b:06d}.npz")
            if os.path.exists(path):
                counts["resumed_batches"] += 1
            else:
                arrays = _encode_batch(batch, source, decoder, encoder, text_encoder)
                counts["lost_on_reread"] += len(batch["records"]) - len(arrays["records"])
                counts["frames_encoded"] += len(arrays["records"]) * batch["shape"][0]
                _atomic_save(path, **arrays)
                counts["encoded_batches"] += 1
            bar.update(len(batch["records"]))
        bar.close()
    stats_split = "train" if "train" in plans else splits[0]
    shift, scale = latent_stats(work, stats_split, plans[stats_split], ec.stats_records)
    provenance = {"vae_workdir": os.path.abspath(ec.vae_workdir), "vae_step": vae_step, "source": dataset_dir}
    records = {s: _latent_records(work, s, plans[s], shift, scale, provenance) for s in splits}
    dataset_path = write_latents(ec.out, records, text_dim=None if text_info is None else text_info["dim"])
    info = provenance | {"shift": shift.tolist(), "scale": scale.tolist(), "stats_split": stats_split,
                         "time_factor": vae.config.time_factor, "space_factor": vae.config.space_factor,
                         "latent_channels": vae.config.latent_channels}
    if text_info is not None:
        info["text_encoder"] = text_info
    with open(os.path.join(dataset_path, LATENT_INFO), "w") as f:
        json.dump(info, f, indent=2)
    seconds = time.perf_counter() - started
    report = {"dataset": dataset_path, "seconds": round(seconds, 2), **counts,
              "frames_per_s": round(counts["frames_encoded"] / seconds, 2),
              "splits": {s: {"records": p["records"], "written": sum(len(b["records"]) for b in p["batches"]),
                             "skipped": p["skipped"], "shapes": len({tuple(b["shape"]) for b in p["batches"]})}
                         for s, p in plans.items()}}
    with open(os.path.join(ec.out, "encode_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def read_latent_info(dataset_dir: str) -> dict:
    """`latent_info.json` of a latents dataset (the VAE and normalisation its latents came from)."""
    path = os.path.join(resolve_source(dataset_dir), LATENT_INFO)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: {dataset_dir} was not written by `sora-jax encode`")
    with open(path) as f:
        return json.load(f)
