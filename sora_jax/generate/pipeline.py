"""`Generator`: prompts (and optional known frames, a clip to edit, two clips to blend) to video.

    generator = Generator.from_workdir("/tmp/pretrain_tiny")
    video = generator.generate("a red circle moves right", frames=9, height=32, width=48, steps=20)

One path serves every mode: the request's known frames are encoded by the model's codec into known
latent frames, the latent is cut into spacetime tokens with a per-token known mask, packed into a
row (several prompts share rows in `generate_batch`), sampled by the one sampler, unpacked and
decoded. Clips longer than the model's trained length are generated in sliding windows of that
length whose first latent frames are the previous window's last ones (held as known frames), and
the whole latent is decoded chunk by chunk (latent mode). Row lengths are rounded up to
`row_bucket` tokens so many shapes share one compiled sampler.

The noise of a clip depends only on its seed and window index (`noise_for`), so a clip comes out
the same alone or packed with others, and the same seed always gives the same video.

Prompts are encoded by the run's `tokenizer`: byte token ids for the tiny trainable text encoder,
or, for a model trained with a frozen encoder (`data.text_encoder`), a `CaptionEmbedder` of that
encoder giving the prompt's real-token embeddings `(n, D)` float16, truncated at the run's
`data.max_text_tokens` exactly as its training captions were. The unconditional branch of
guidance zeroes them (`text_keep`), as training's caption dropout did.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from sora_jax.diffusion.flow import FlowConfig
from sora_jax.diffusion.rows import latent_segment, pack_rows, unpack_rows
from sora_jax.diffusion.sampler import SamplerConfig
from sora_jax.generate.codec import make_codec
from sora_jax.generate.conditioning import Known, blend_latents, encode_known
from sora_jax.generate.sampling import RowSampler


@dataclasses.dataclass
class Plan:
    """One clip to sample in latent space: its known latent frames, text, noise seed and SDEdit start."""

    known_latents: np.ndarray  # (t, h, w, c), zeros where unknown
    known_mask: np.ndarray  # (t,) bool
    text: np.ndarray  # (n,) int32 caption tokens, or (n, D) float16 frozen-encoder embeddings
    seed: int
    clean: np.ndarray | None = None  # (t, h, w, c) SDEdit start latent
    start_time: float = 1.0


def noise_for(seed: int, window: int, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal noise of one clip window, a function of `(seed, window, shape)` only. Drawn on
    the host (numpy's PCG64 from the seed sequence `(seed, window)`): no compilation per shape."""
    return np.random.default_rng((seed, window)).standard_normal(shape, dtype=np.float32)


def packed_embeddings(rows: dict, texts: list[np.ndarray]) -> np.ndarray:
    """Text embeddings `(R, Lt, D)` of packed `rows`: segment k's `(n_k, D)` at the text positions
    with its text segment id (as the input pipeline packs them), zeros at padding."""
    segment_ids = rows["text_segment_ids"]  # (R, Lt)
    out = np.zeros((*segment_ids.shape, texts[0].shape[1]), texts[0].dtype)  # (R, Lt, D)
    for text, (row, slot) in zip(texts, rows["placement"]):
        out[row, segment_ids[row] == slot] = text  # (n, D)
    return out


def window_starts(latent_frames: int, window: int, overlap: int) -> list[int]:
    """Starts of windows of `window` latent frames overlapping by at least `overlap` that cover
    `latent_frames`; the last is aligned to the end, so every window has one shape."""
    if latent_frames <= window:
        return [0]
    stride = window - overlap
    return list(range(0, latent_frames - window, stride)) + [latent_frames - window]


class Generator:
    """A trained text-to-video model with its codec, ready to sample (see the module docstring).

    Args:
      model: the `TextToVideo` (or anything with its call signature).
      codec: `PixelCodec` or `LatentCodec` (`sora_jax.generate.codec`).
      tokenizer: prompt encoder, `encode(prompt, max_len)`: a tokenizer (token ids) or, for a model
        trained with a frozen text encoder, its `CaptionEmbedder` (embeddings `(n, D)`);
        flow: the run's FlowConfig; patch: the DiT's `(pt, ph, pw)`.
      max_text_tokens: caption length cap; max_frames, max_tokens: the trained clip length in latent
        frames and tokens (they set the sliding window); row_bucket: row length granularity;
        sample_shape: the default `(frames, height, width)` of the command line.
    """

    def __init__(self, model, codec, tokenizer, flow: FlowConfig, patch, *, max_text_tokens: int, max_frames: int,
                 max_tokens: int, row_bucket: int = 256, sample_shape=(9, 32, 32), step: int | None = None,
                 workdir: str | None = None):
        self.model, self.codec, self.tokenizer, self.flow = model, codec, tokenizer, flow
        self.patch = tuple(int(p) for p in patch)
        self.max_text_tokens, self.max_frames, self.max_tokens = max_text_tokens, max_frames, max_tokens
        self.row_bucket, self.step, self.workdir = row_bucket, step, workdir
        self.sample_shape = tuple(int(s) for s in sample_shape)  # default (frames, height, width) of the CLI
        self.sampler = RowSampler(model, flow)
        self.last_timings: dict = {}

    @classmethod
    def from_workdir(cls, workdir: str, step: int | None = None, ema: bool = True, **kwargs) -> "Generator":
        """The DiT run in `workdir` at checkpoint `step` (default latest; EMA weights when kept)."""
        from sora_jax.train.restore import load_trained

        run = load_trained(workdir, step, ema=ema)
        c, task = run.config, run.task
        if not hasattr(task, "dit_config"):
            raise ValueError(f"{workdir} holds a {c.task!r} run, not a text-to-video DiT")
        return cls(run.model, make_codec(c), task.tokenizer, task.flow, task.dit_config.patch,
                   max_text_tokens=c.data.max_text_tokens, max_frames=c.data.max_frames,
                   max_tokens=c.data.max_tokens_per_clip, sample_shape=c.get("sample_shape", (9, 32, 32)),
                   step=run.step, workdir=workdir, **kwargs)

    # ----------------------------------------------------------------------------------- checks

    def shape_problems(self, frames: int, height: int, width: int) -> list[str]:
        """Why the model cannot make `frames x height x width` (codec sizes and patch multiples)."""
        problems = self.codec.shape_problems(frames, height, width)
        if problems:
            return problems
        pt, ph, pw = self.patch
        sf, tf = self.codec.space_factor, self.codec.time_factor
        for name, size, multiple in (("height", height, ph * sf), ("width", width, pw * sf)):
            if size % multiple:
                below = size // multiple * multiple
                nearest = f"nearest valid: {below} or {below + multiple}" if below else f"use {multiple}"
                problems.append(f"{name}={size} is not a multiple of {multiple}; {nearest}")
        if self.codec.latent_frames(frames) % pt:
            problems.append(f"frames={frames} gives {self.codec.latent_frames(frames)} latent frames, not a multiple "
                            f"of the temporal patch {pt} (frames must be 1 + {tf}*{pt}*k)")
        return problems

    def _check(self, prompt: str, frames: int, height: int, width: int, seed: int) -> None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("the prompt is empty; describe the video to generate")
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        problems = self.shape_problems(frames, height, width)
        if problems:
            raise ValueError(f"cannot generate {frames}x{height}x{width} with this {self.codec.mode}-mode model: "
                             + "; ".join(problems))

    def window_frames(self, height: int, width: int) -> int:
        """Latent frames of one sampling window: the trained clip length in frames and tokens."""
        pt, ph, pw = self.patch
        sf = self.codec.space_factor
        per_frame = (height // (sf * ph)) * (width // (sf * pw))
        frames = min(self.max_frames, max(1, self.max_tokens // max(1, per_frame)))
        return max(pt, frames // pt * pt)

    # ----------------------------------------------------------------------------------- public

    def generate(self, prompt: str, frames: int, height: int, width: int, steps: int = 30, guidance: float = 3.0,
                 sampler: str = "euler", seed: int = 0, known: Known | None = None, *, edit: np.ndarray | None = None,
                 edit_strength: float | None = None, window: int | None = None,
                 overlap: int | None = None) -> np.ndarray:
        """Generates one clip; returns uint8 `(frames, height, width, 3)`.

        Args:
          prompt: the caption; frames, height, width: output size (the codec and patch must fit it).
          steps, guidance, sampler: Euler/Heun steps and classifier-free guidance scale.
          seed: noise seed (same seed, same video).
          known: given output frames (`conditioning.image_to_video`, `extend`, `interpolate`, ...).
          edit, edit_strength: SDEdit: start from `edit` (uint8 clip of the output shape) noised to
            `edit_strength` in (0, 1] of the schedule.
          window, overlap: sliding-window length and overlap in latent frames (defaults: the trained
            length, a third of it).
        """
        self._check(prompt, frames, height, width, seed)
        config = SamplerConfig(steps=steps, method=sampler, guidance=guidance)
        start = time.perf_counter()
        plan = self._plan(prompt, (frames, height, width), seed, known)
        if edit is not None:
            plan.clean, plan.start_time = self._edit_start(edit, (frames, height, width), edit_strength)
        encoded = time.perf_counter()
        latents, windows = self._sample_long(plan, config, window, overlap)
        sampled = time.perf_counter()
        video = self.codec.decode(latents)[:frames]  # (T, H, W, 3)
        self.last_timings = {"encode_s": encoded - start, "sample_s": sampled - encoded,
                             "decode_s": time.perf_counter() - sampled, "total_s": time.perf_counter() - start,
                             "windows": windows, "latent_shape": list(latents.shape)}
        return video

    def blend(self, prompt: str, first: np.ndarray, second: np.ndarray, strength: float = 0.6, **kwargs) -> np.ndarray:
        """Blends two clips of one shape: their latents mixed with a weight ramping from `first` to
        `second` over time, then SDEdited at `strength` under `prompt`. kwargs as `generate`."""
        first, second = np.asarray(first, np.uint8), np.asarray(second, np.uint8)
        if first.shape != second.shape:
            raise ValueError(f"blending needs two clips of one shape, got {first.shape} and {second.shape}")
        frames, height, width = first.shape[:3]
        mix = blend_latents(self.codec.encode(first), self.codec.encode(second))  # (t, h, w, c)
        return self.generate(prompt, frames, height, width, edit=mix, edit_strength=strength, **kwargs)

    def generate_batch(self, prompts: list[str], frames: int, height: int, width: int, steps: int = 30,
                       guidance: float = 3.0, sampler: str = "euler", seed: int = 0) -> list[np.ndarray]:
        """One clip per prompt (seeds `seed + i`), packed several to a row; each equals `generate`
        of its prompt and seed alone. Clips longer than one window are generated one by one."""
        if not prompts:
            raise ValueError("no prompts given")
        for i, prompt in enumerate(prompts):
            self._check(prompt, frames, height, width, seed + i)
        if self.codec.latent_frames(frames) > self.window_frames(height, width):
            return [self.generate(p, frames, height, width, steps, guidance, sampler, seed + i)
                    for i, p in enumerate(prompts)]
        config = SamplerConfig(steps=steps, method=sampler, guidance=guidance)
        plans = [self._plan(p, (frames, height, width), seed + i, None) for i, p in enumerate(prompts)]
        start = time.perf_counter()
        latents = self._sample_plans(plans, [0] * len(plans), config)
        sampled = time.perf_counter()
        videos = [self.codec.decode(z)[:frames] for z in latents]
        self.last_timings = {"sample_s": sampled - start, "decode_s": time.perf_counter() - sampled,
                             "total_s": time.perf_counter() - start, "clips": len(plans)}
        return videos

    # ----------------------------------------------------------------------------------- internals

    def _plan(self, prompt: str, shape: tuple[int, int, int], seed: int, known: Known | None) -> Plan:
        frames, height, width = shape
        if known is None:
            t, sf = self.codec.latent_frames(frames), self.codec.space_factor
            latents = np.zeros((t, height // sf, width // sf, self.codec.channels), np.float32)
            mask = np.zeros(t, bool)
        else:
            if known.shape != tuple(shape):
                raise ValueError(f"known frames are {known.shape[0]}x{known.shape[1]}x{known.shape[2]}, the request "
                                 f"is {frames}x{height}x{width}")
            latents, mask = encode_known(known, self.codec)
        return Plan(latents, mask, self.tokenizer.encode(prompt, self.max_text_tokens), seed)

    def _edit_start(self, edit: np.ndarray, shape, strength) -> tuple[np.ndarray, float]:
        """The SDEdit start latent of `edit` (uint8 clip, or a latent from `blend`) and its start time."""
        if strength is None or not 0.0 < strength <= 1.0:
            raise ValueError(f"edit strength must be in (0, 1], got {strength}")
        edit = np.asarray(edit)
        if edit.dtype == np.uint8:
            if edit.shape[:3] != tuple(shape):
                raise ValueError(f"the clip to edit is {'x'.join(map(str, edit.shape[:3]))}, the request is "
                                 f"{'x'.join(map(str, shape))}")
            return self.codec.encode(edit), float(strength)
        return edit.astype(np.float32), float(strength)

    def _sample_long(self, plan: Plan, config: SamplerConfig, window: int | None, overlap: int | None):
        """Samples `plan` in sliding windows; returns the latents `(t, h, w, c)` and the window count."""
        t, h, w = plan.known_latents.shape[:3]
        sf = self.codec.space_factor
        window = window or self.window_frames(h * sf, w * sf)
        overlap = max(1, window // 3) if overlap is None else overlap
        if window % self.patch[0] or not 0 < overlap < window:
            raise ValueError(f"window ({window}) must be a multiple of {self.patch[0]} above overlap ({overlap}) >= 1")
        starts = window_starts(t, window, overlap)
        if plan.known_mask[-1] and not plan.known_mask[0]:
            starts = starts[::-1]  # known frames at the end only (backward extension): grow from there
        latents, mask = plan.known_latents.copy(), plan.known_mask.copy()
        for index, begin in enumerate(starts):
            span = slice(begin, min(begin + window, t))
            if mask[span].all():
                continue  # nothing to make here (inside a given clip)
            part = dataclasses.replace(plan, known_latents=latents[span], known_mask=mask[span],
                                       clean=None if plan.clean is None else plan.clean[span])
            latents[span] = self._sample_plans([part], [index], config)[0]
            mask[span] = True  # what this window made is context for the next
        return latents, len(starts)

    def _sample_plans(self, plans: list[Plan], windows: list[int], config: SamplerConfig) -> list[np.ndarray]:
        """Packs plans into rows, samples them together, and returns their latents in order."""
        # pack_rows lays out token ids; embeddings (n, D) go in after, at the spans it gave their ids.
        ids = [p.text if p.text.ndim == 1 else np.zeros(len(p.text), np.int32) for p in plans]  # (n,) each
        segments = [latent_segment(p.known_latents, self.patch, text, p.known_mask) for p, text in zip(plans, ids)]
        sizes = [len(s["tokens"]) for s in segments]
        seq_len = -(-max(max(sizes), min(sum(sizes), self.max_tokens)) // self.row_bucket) * self.row_bucket
        feature_dim = segments[0]["tokens"].shape[1]
        rows = pack_rows(segments, seq_len, self.max_text_tokens * len(plans), len(plans), feature_dim)
        if plans[0].text.ndim == 2:
            rows["text_embeddings"] = packed_embeddings(rows, [p.text for p in plans])  # (R, Lt, D), as training rows
        noise, clean = np.zeros_like(rows["tokens"]), np.zeros_like(rows["tokens"])
        start_time = np.ones(rows["segment_grid"].shape[:2], np.float32)  # (R, S)
        for plan, window, segment, (row, slot) in zip(plans, windows, segments, rows["placement"]):
            where = rows["segment_ids"][row] == slot
            noise[row, where] = noise_for(plan.seed, window, segment["tokens"].shape)
            if plan.clean is not None:
                clean[row, where] = latent_segment(plan.clean, self.patch, plan.text)["tokens"]
                start_time[row, slot - 1] = plan.start_time
        tokens = self.sampler(rows, noise, config, clean=clean, start_time=start_time)
        return unpack_rows(tokens, rows, self.patch)
