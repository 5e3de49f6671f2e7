"""Every conditioning mode as one known-frame specification in pixels, and its encoding.

Image-to-video, extension forward and backward, interpolation between images or clips, and loop
bridges all build a `Known`: the output's frame count, which output frames are given and their
pixels. `encode_known` turns it, through the model's codec, into known latent frames and a
per-latent-frame mask, which `sora_jax.diffusion.rows.latent_segment` spreads to tokens for the
one sampler. SDEdit and blending do not hold frames; they start the sampler from a noised latent
(`blend_latents` makes the mixed starting latent of two clips).

In latent mode a latent frame is known only when every pixel frame it owns is known (see
`codec.owned_frames`), so a given clip keeps its longest whole-latent-frame part; a single image
placed anywhere but frame 0 is held over the pixel frames of its latent frame, because one latent
frame there stands for `time_factor` frames.
"""
from __future__ import annotations

import dataclasses

import numpy as np

EXTEND_DIRECTIONS = ("forward", "backward")


@dataclasses.dataclass
class Known:
    """Given frames of an output clip.

    Attributes:
      frames: uint8 `(T, H, W, 3)`: pixels of the output's known frames (unknown ones are ignored).
      mask: `(T,)` bool, True where the output frame is given.
    """

    frames: np.ndarray
    mask: np.ndarray

    def __post_init__(self):
        self.frames = np.asarray(self.frames, np.uint8)
        self.mask = np.asarray(self.mask, bool)
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.mask.shape != self.frames.shape[:1]:
            raise ValueError(f"Known needs frames (T, H, W, 3) and mask (T,), got {self.frames.shape} and "
                             f"{self.mask.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """`(T, H, W)` of the output this specification is for."""
        return tuple(int(s) for s in self.frames.shape[:3])


def _as_clip(video: np.ndarray, name: str) -> np.ndarray:
    """An image `(H, W, 3)` or clip `(T, H, W, 3)` as a uint8 clip; ValueError for anything else."""
    video = np.asarray(video)
    if video.ndim == 3:
        video = video[None]  # (1, H, W, 3)
    if video.ndim != 4 or video.shape[-1] != 3 or video.shape[0] < 1:
        raise ValueError(f"{name} must be an RGB image (H, W, 3) or clip (T, H, W, 3), got shape {video.shape}")
    return video.astype(np.uint8)


def _empty(frames: int, clip: np.ndarray) -> Known:
    return Known(np.zeros((frames, *clip.shape[1:]), np.uint8), np.zeros(frames, bool))


def _place(known: Known, clip: np.ndarray, start: int, codec) -> None:
    """Writes `clip` into `known` at output frame `start`; a lone image away from frame 0 is held
    over the pixel frames its latent frame owns (one frame in pixel mode)."""
    if len(clip) == 1 and start > 0:
        owner = -(-start // codec.time_factor)  # the latent frame that owns pixel frame `start`
        span = codec.owned_frames(owner)
        known.frames[span.start : span.stop] = clip[0]
        known.mask[span.start : span.stop] = True
        return
    known.frames[start : start + len(clip)] = clip
    known.mask[start : start + len(clip)] = True


def image_to_video(image: np.ndarray, frames: int) -> Known:
    """The first output frame is `image (H, W, 3)`."""
    clip = _as_clip(image, "image")[:1]
    known = _empty(frames, clip)
    known.frames[0], known.mask[0] = clip[0], True
    return known


def extend(clip: np.ndarray, frames: int, direction: str) -> Known:
    """`clip` continued to `frames` frames: it opens the output (forward) or ends it (backward)."""
    if direction not in EXTEND_DIRECTIONS:
        raise ValueError(f"extend direction must be one of {EXTEND_DIRECTIONS}, got {direction!r}")
    clip = _as_clip(clip, "clip to extend")
    if len(clip) >= frames:
        raise ValueError(f"extension to {frames} frames needs a clip shorter than that; the clip has {len(clip)}")
    known = _empty(frames, clip)
    span = slice(0, len(clip)) if direction == "forward" else slice(frames - len(clip), frames)
    known.frames[span], known.mask[span] = clip, True
    return known


def interpolate(start: np.ndarray, end: np.ndarray, frames: int, codec) -> Known:
    """`start` opens and `end` closes the output (images or clips); the frames between are generated."""
    first, last = _as_clip(start, "--from input"), _as_clip(end, "--to input")
    if first.shape[1:] != last.shape[1:]:
        raise ValueError(f"--from and --to must have the same frame size, got {first.shape[1:3]} and {last.shape[1:3]}")
    known = _empty(frames, first)
    _place(known, first, 0, codec)
    _place(known, last, frames - len(last), codec)
    if known.mask.all() or frames < len(first) + len(last) + 1:
        raise ValueError(f"interpolation over {frames} frames leaves none to generate between "
                         f"{len(first)} and {len(last)} given frames; ask for more frames")
    return known


def loop_bridge(clip: np.ndarray, frames: int, codec, overlap_latent: int = 1) -> tuple[Known, int, int]:
    """A bridge of `frames` frames from the end of `clip` back to its start.

    The bridge opens with the clip's last frames and closes with its first ones (`overlap_latent`
    whole latent frames on each side), so `clip + bridge[head:frames - tail]` plays as a loop.
    Returns `(known, head, tail)`: the known frame counts at the bridge's two ends.
    """
    clip = _as_clip(clip, "clip to loop")
    head = codec.pixel_frames(overlap_latent)  # a prefix of whole latent frames: 1 + tf*(n-1)
    tail = overlap_latent * codec.time_factor  # a suffix of whole latent frames: tf*n
    if len(clip) < max(head, tail) or frames <= head + tail:
        raise ValueError(f"a loop bridge of {frames} frames over a {len(clip)}-frame clip needs more than "
                         f"{head + tail} frames and a clip of at least {max(head, tail)}")
    known = _empty(frames, clip)
    known.frames[:head], known.mask[:head] = clip[len(clip) - head :], True
    known.frames[frames - tail :], known.mask[frames - tail :] = clip[:tail], True
    return known, head, tail


def _nearest_known_fill(known: Known) -> np.ndarray:
    """Frames with every unknown one replaced by the nearest known frame (earlier one on ties), so a
    causal encoder sees plausible context before a known frame that follows unknown ones."""
    index = np.flatnonzero(known.mask)  # (K,)
    distance = np.abs(np.arange(len(known.mask))[:, None] - index[None, :])  # (T, K)
    return known.frames[index[np.argmin(distance, axis=1)]]  # (T, H, W, 3)


def encode_known(known: Known, codec) -> tuple[np.ndarray, np.ndarray]:
    """Known latent frames `(t, h, w, c)` and their mask `(t,)` bool (a latent frame is known when
    all the pixel frames it owns are known). Unknown latent frames hold zeros."""
    frames, height, width = known.shape
    t = codec.latent_frames(frames)
    latent_mask = np.array([known.mask[list(codec.owned_frames(j))].all() for j in range(t)], bool)  # (t,)
    if not latent_mask.any():
        shape = (t, height // codec.space_factor, width // codec.space_factor, codec.channels)
        return np.zeros(shape, np.float32), latent_mask
    latents = codec.encode(_nearest_known_fill(known))  # (t, h, w, c)
    return np.where(latent_mask[:, None, None, None], latents, 0.0).astype(np.float32), latent_mask


def blend_latents(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per-latent-frame mix of two latents `(t, h, w, c)`: weight of `second` ramps 0 -> 1 over time."""
    if first.shape != second.shape:
        raise ValueError(f"blending needs clips of one shape; their latents are {first.shape} and {second.shape}")
    t = first.shape[0]
    weight = np.linspace(0.0, 1.0, t, dtype=np.float32) if t > 1 else np.full(1, 0.5, np.float32)  # (t,)
    return (1.0 - weight)[:, None, None, None] * first + weight[:, None, None, None] * second  # (t, h, w, c)
