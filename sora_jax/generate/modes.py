"""The command line's conditioning modes as `Generator` calls: reading inputs, choosing sizes.

Each mode handler takes the generator, the parsed flags and the prompt, and returns the video and
extra sidecar fields. Inputs are fitted to the requested size (cover and centre-crop); sizes not
given default to the input's, rounded to the nearest the model takes, else to the run's
`sample_shape`; clip lengths the codec cannot take are trimmed to the longest valid prefix.
"""
from __future__ import annotations

import numpy as np

from sora_jax.generate import conditioning, io


def settings(args) -> dict:
    """Sampler keyword arguments of `Generator.generate` from the flags."""
    return dict(steps=args.steps, guidance=args.cfg, sampler=args.sampler, seed=args.seed, window=args.window,
                overlap=args.overlap)


def valid_frames(generator, frames: int) -> int:
    """The longest frame count <= `frames` the codec and temporal patch take (at least one latent frame)."""
    pt = generator.patch[0]
    latent = generator.codec.latent_frames(frames) // pt * pt
    return generator.codec.pixel_frames(max(pt, latent))


def valid_side(generator, size: int) -> int:
    """`size` rounded to the nearest side the model takes (a multiple of patch x space factor)."""
    multiple = generator.patch[1] * generator.codec.space_factor
    return max(multiple, round(size / multiple) * multiple)


def output_size(generator, args, reference: np.ndarray | None = None) -> tuple[int, int]:
    """(height, width): the flags', else the reference clip's rounded to valid sides, else sample_shape."""
    if reference is not None:
        default = (valid_side(generator, reference.shape[1]), valid_side(generator, reference.shape[2]))
    else:
        default = tuple(generator.sample_shape[1:])
    return (default[0] if args.height is None else args.height), (default[1] if args.width is None else args.width)


def frames_or_default(generator, args) -> int:
    """`--frames`, else the run's sample_shape frames."""
    return generator.sample_shape[0] if args.frames is None else args.frames


def read_fitted(path: str, what: str, size: tuple[int, int] | None, generator, args) -> tuple[np.ndarray, tuple]:
    """An input clip fitted to `size` (default: `output_size` from the clip itself)."""
    clip, _ = io.read_frames(path, what)
    size = size or output_size(generator, args, clip)
    return io.fit_frames(clip, *size), size


def text(generator, args, prompt):
    height, width = output_size(generator, args)
    frames = frames_or_default(generator, args)
    return generator.generate(prompt, frames, height, width, **settings(args)), {}


def image(generator, args, prompt):
    first, (height, width) = read_fitted(args.image, "--image", None, generator, args)
    frames = frames_or_default(generator, args)
    known = conditioning.image_to_video(first[0], frames)
    return generator.generate(prompt, frames, height, width, known=known, **settings(args)), {}


def extend(generator, args, prompt):
    clip, (height, width) = read_fitted(args.video, "--video", None, generator, args)
    if args.frames is None:
        raise ValueError("--extend needs --frames: the length of the extended video")
    known = conditioning.extend(clip, args.frames, args.extend)
    video = generator.generate(prompt, args.frames, height, width, known=known, **settings(args))
    return video, {"extend": args.extend, "given_frames": len(clip)}


def interpolate(generator, args, prompt):
    first, size = read_fitted(args.from_, "--from input", None, generator, args)
    last, _ = read_fitted(args.to, "--to input", size, generator, args)
    frames = frames_or_default(generator, args)
    known = conditioning.interpolate(first, last, frames, generator.codec)
    video = generator.generate(prompt, frames, *size, known=known, **settings(args))
    return video, {"given_frames": [len(first), len(last)]}


def loop(generator, args, prompt):
    """A clip (`--video`, or generated from the prompt) plus a bridge from its end back to its start."""
    if args.video:
        clip, (height, width) = read_fitted(args.video, "--video", None, generator, args)
        clip = clip[: valid_frames(generator, len(clip))]
    else:
        clip, _ = text(generator, args, prompt)
        height, width = clip.shape[1:3]
    bridge_frames = args.loop_frames or len(clip)
    known, head, tail = conditioning.loop_bridge(clip, bridge_frames, generator.codec)
    bridge = generator.generate(prompt, bridge_frames, height, width, known=known, **settings(args))
    video = np.concatenate([clip, bridge[head : bridge_frames - tail]])  # (T + B - head - tail, H, W, 3)
    return video, {"clip_frames": len(clip), "bridge_frames": bridge_frames}


def edit(generator, args, prompt):
    clip, (height, width) = read_fitted(args.video, "--video", None, generator, args)
    clip = clip[: valid_frames(generator, len(clip))]
    video = generator.generate(prompt, len(clip), height, width, edit=clip, edit_strength=args.edit_strength,
                               **settings(args))
    return video, {}


def blend(generator, args, prompt):
    first, size = read_fitted(args.video, "--video", None, generator, args)
    second, _ = read_fitted(args.blend, "--blend input", size, generator, args)
    frames = valid_frames(generator, min(len(first), len(second)))
    return generator.blend(prompt, first[:frames], second[:frames], args.edit_strength, **settings(args)), {}


HANDLERS = {"text": text, "image": image, "extend": extend, "interpolate": interpolate, "loop": loop, "edit": edit,
            "blend": blend}


def run_mode(generator, mode: str, args, prompts: list[str]) -> list[tuple[str, int, np.ndarray, dict]]:
    """Runs `mode`; returns `(prompt, seed, video, extra sidecar fields)` per output."""
    if len(prompts) > 1:
        height, width = output_size(generator, args)
        frames = frames_or_default(generator, args)
        videos = generator.generate_batch(prompts, frames, height, width, args.steps, args.cfg, args.sampler, args.seed)
        return [(p, args.seed + i, v, {"batch_index": i}) for i, (p, v) in enumerate(zip(prompts, videos))]
    video, extra = HANDLERS[mode](generator, args, prompts[0])
    return [(prompts[0], args.seed, video, extra)]
