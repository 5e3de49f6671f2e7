"""`sora-jax generate`: text (and images or clips) to MP4 / GIF / PNG with a JSON sidecar.

    sora-jax generate --workdir DIR --prompt "a red circle moves right" --frames 9 --height 32 --width 48 --out a.mp4
    sora-jax generate --workdir DIR --prompts prompts.txt --out batch.gif            # batch_000.gif, ...
    sora-jax generate --workdir DIR --prompt "..." --image first.png --out i2v.mp4  # image-to-video
    sora-jax generate --workdir DIR --prompt "..." --video clip.mp4 --extend forward --frames 33 --out ext.mp4
    sora-jax generate --workdir DIR --prompt "..." --from a.png --to b.png --frames 17 --out between.mp4
    sora-jax generate --workdir DIR --prompt "..." --loop [--video clip.mp4] --out loop.gif
    sora-jax generate --workdir DIR --prompt "..." --video clip.mp4 --edit-strength 0.6 --out edit.mp4
    sora-jax generate --workdir DIR --prompt "..." --video a.mp4 --blend b.mp4 --edit-strength 0.5 --out mix.mp4

Sizes default to the input's (rounded to what the model takes) or to the run's `sample_shape`.
Bad input (missing or unreadable files, sizes the model cannot take, non-positive steps, an empty
prompt, conflicting modes) ends with a one-line error and exit status 2.
Also runnable alone: `python -m sora_jax.generate.cli --workdir DIR ...`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The generate flags (shared by the `sora-jax` subcommand and the stand-alone entry point)."""
    parser.add_argument("--workdir", required=True, help="a DiT training workdir (config.json + checkpoints)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    text = parser.add_mutually_exclusive_group(required=True)
    text.add_argument("--prompt", help="what the video shows")
    text.add_argument("--prompts", help="file of prompts, one per line: one output per prompt")
    parser.add_argument("--out", required=True, help="output .mp4, .gif or .png (one frame); sidecar <out>.json")
    parser.add_argument("--upsample-prompt", default=None, metavar="UPSAMPLER_WORKDIR",
                        help="rewrite short prompts in the detailed caption style first (experiments/caption.py:upsampler_tiny)")
    parser.add_argument("--frames", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--steps", type=int, default=30, help="sampling steps")
    parser.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance scale (1 = off)")
    parser.add_argument("--sampler", default="euler", help="euler or heun")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=8.0, help="frame rate of the written video")
    parser.add_argument("--image", help="image-to-video: the first frame")
    parser.add_argument("--video", help="a clip to extend, loop, edit or blend")
    parser.add_argument("--extend", choices=("forward", "backward"), help="continue --video after or before it")
    parser.add_argument("--from", dest="from_", metavar="FROM", help="interpolation: image or clip opening the video")
    parser.add_argument("--to", help="interpolation: image or clip that closes the video")
    parser.add_argument("--loop", action="store_true", help="a clip whose end flows into its start")
    parser.add_argument("--loop-frames", type=int, default=None, help="frames of the bridge back to the start")
    parser.add_argument("--edit-strength", type=float, default=None, help="SDEdit --video: 0 keeps it, 1 redraws it")
    parser.add_argument("--blend", help="blend --video into this clip over time (with --edit-strength)")
    parser.add_argument("--window", type=int, default=None, help="sliding window in latent frames (long videos)")
    parser.add_argument("--overlap", type=int, default=None, help="known latent frames shared by windows")


def register(subparsers) -> None:
    parser = subparsers.add_parser("generate", help="generate video from a prompt (and images or clips)")
    add_arguments(parser)
    parser.set_defaults(func=run)


def conditioning_mode(args: argparse.Namespace) -> str:
    """Which mode the flags ask for: text, image, extend, interpolate, loop, edit or blend."""
    modes = {"image": args.image is not None, "extend": args.extend is not None,
             "interpolate": args.from_ is not None or args.to is not None, "loop": args.loop,
             "edit": args.edit_strength is not None and args.blend is None, "blend": args.blend is not None}
    chosen = [name for name, on in modes.items() if on]
    if len(chosen) > 1:
        raise ValueError(f"choose one conditioning mode; got {' and '.join(chosen)}")
    mode = chosen[0] if chosen else "text"
    if mode == "interpolate" and (args.from_ is None or args.to is None):
        raise ValueError("interpolation needs both --from and --to")
    if mode in ("extend", "edit", "blend") and args.video is None:
        raise ValueError(f"--{'extend' if mode == 'extend' else 'edit-strength'} needs --video")
    if args.video is not None and mode not in ("extend", "edit", "blend", "loop"):
        raise ValueError("--video needs --extend, --edit-strength, --blend or --loop")
    if mode == "blend" and args.edit_strength is None:
        raise ValueError("--blend needs --edit-strength")
    if args.prompts and mode != "text":
        raise ValueError("--prompts (batch) generates from text only; give one --prompt with conditioning inputs")
    return mode


def run(args: argparse.Namespace) -> int:
    """Runs one `generate` command; prints one JSON line per written output."""
    mode = conditioning_mode(args)
    if args.steps < 1:
        raise ValueError(f"--steps must be at least 1, got {args.steps}")
    prompts = _prompts(args)
    from sora_jax.generate import io

    if io.check_output_path(args.out, 1) == ".png":
        if mode not in ("text", "image") or args.frames not in (None, 1):
            raise ValueError(f"a PNG holds one frame; write {mode} output with --frames > 1 to .mp4 or .gif")
        args.frames = 1
    from sora_jax.generate.pipeline import Generator

    start = time.perf_counter()
    generator = Generator.from_workdir(args.workdir, args.step)
    load_s = time.perf_counter() - start
    from sora_jax.generate.modes import run_mode

    outputs = run_mode(generator, mode, args, prompts)
    for index, (prompt, seed, video, extra) in enumerate(outputs):
        path = _output_path(args.out, index, len(outputs))
        io.check_output_path(path, len(video))
        write_start = time.perf_counter()
        io.write_video(path, video, args.fps)
        info = _sidecar(args, generator, mode, prompt, seed, video, extra, load_s, time.perf_counter() - write_start)
        sidecar = io.write_sidecar(path, info)
        print(json.dumps({"out": path, "sidecar": sidecar, "frames": len(video), "height": video.shape[1],
                          "width": video.shape[2], "mode": mode, "seconds": round(info["timings"]["total_s"], 3)}))
    return 0


def _prompts(args) -> list[str]:
    from sora_jax.generate.io import read_prompts

    if args.prompts is not None:
        prompts = read_prompts(args.prompts)
    elif not args.prompt or not args.prompt.strip():
        raise ValueError("the prompt is empty; describe the video to generate")
    else:
        prompts = [args.prompt]
    args.given_prompts = dict()
    if args.upsample_prompt:
        from sora_jax.caption.upsampler import upsample_prompt

        upsampled = [upsample_prompt(args.upsample_prompt, p) for p in prompts]
        args.given_prompts = dict(zip(upsampled, prompts))
        return upsampled
    return prompts


def _output_path(out: str, index: int, count: int) -> str:
    if count == 1:
        return out
    stem, suffix = os.path.splitext(out)
    return f"{stem}_{index:03d}{suffix}"


def _sidecar(args, generator, mode, prompt, seed, video, extra, load_s, write_s) -> dict:
    timings = {k: round(v, 4) if isinstance(v, float) else v for k, v in generator.last_timings.items()}
    timings.update(load_s=round(load_s, 4), write_s=round(write_s, 4))
    timings["total_s"] = round(load_s + write_s + generator.last_timings.get("total_s", 0.0), 4)
    inputs = {k: os.path.abspath(v) for k, v in (("image", args.image), ("video", args.video), ("from", args.from_),
                                                   ("to", args.to), ("blend", args.blend)) if v}
    return {
        "prompt": prompt, "prompt_given": getattr(args, "given_prompts", {}).get(prompt, prompt), "seed": seed, "steps": args.steps, "cfg": args.cfg, "sampler": args.sampler,
        "frames": int(video.shape[0]), "height": int(video.shape[1]), "width": int(video.shape[2]), "fps": args.fps,
        "mode": mode, "model_mode": generator.codec.mode, "workdir": os.path.abspath(args.workdir),
        "checkpoint_step": generator.step, "edit_strength": args.edit_strength, "window": args.window,
        "overlap": args.overlap, "inputs": inputs, "timings": timings, **extra,
    }


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point with the same one-line errors as `sora-jax`."""
    parser = argparse.ArgumentParser(prog="sora-jax generate", description=__doc__.split("\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        print(f"sora-jax generate: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
