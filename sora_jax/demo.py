"""`sora-jax demo` (what `make demo` runs): the whole system on its embedded data, on a CPU.

1. builds Shapes World `demo` (64 px short side, three aspects, images and 9/17-frame clips) and
   prints the Grain packing statistics;
2. trains the tiny spatiotemporal VAE (`experiments/vae.py:tiny`) on it;
3. encodes the dataset into normalised latent records (`sora-jax encode`);
4. trains the tiny DiT on those latents (`experiments/pretrain.py:tiny_latent`);
5. generates clips for held-out captions at the held-out clips' own shapes (square, tall, wide)
   and writes each next to the real clip as a GIF, plus a contact sheet.

Every stage resumes: rerunning the command after an interruption continues where it stopped.
`--vae-steps`/`--dit-steps` trade quality for time (defaults fit in ~20 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def register(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="train the tiny VAE and DiT on Shapes World, then generate")
    demo.add_argument("--out", default="demo_out", help="output folder")
    demo.add_argument("--vae-steps", type=int, default=300)
    demo.add_argument("--dit-steps", type=int, default=600)
    demo.add_argument("--samples", type=int, default=4, help="held-out captions to generate")
    demo.add_argument("--sample-steps", type=int, default=24, help="sampler steps per clip")
    demo.set_defaults(func=run)


def _stage(number: int, text: str) -> float:
    print(f"[{number}/5] {text}", flush=True)
    return time.perf_counter()


def _train(spec: str, workdir: str, overrides: list[str]) -> None:
    """Trains `experiments/<file>:<variant>` (found in the installed package, whatever the cwd)."""
    import experiments
    from sora_jax.train.config import load_config
    from sora_jax.train.loop import train

    path = os.path.join(os.path.dirname(experiments.__file__), spec.removeprefix("experiments/"))
    train(load_config(path, overrides), workdir)


def _side_by_side(real: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """Frames `(T, H, 2W + 4, 3)`: the real clip, a white gap, the generated one."""
    gap = np.full(real.shape[:2] + (4, 3), 255, np.uint8)
    return np.concatenate([real, gap, generated], axis=2)


def run(args: argparse.Namespace) -> int:
    from data_pipelines.cli import packing_report, read_clips
    from data_pipelines.preview import captioned_gif, contact_sheet
    from data_pipelines.shapes_world.builder import build
    from sora_jax.encode import EncodeConfig, run_encode

    out = os.path.abspath(args.out)
    begin = start = _stage(1, f"building Shapes World 'demo' into {out}/data and packing it ...")
    dataset = build(os.path.join(out, "data"), "demo")
    report = packing_report([dataset], "train", batches=8, seq_len=1024, batch_size=4)
    print("      " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in report.items()))
    with open(os.path.join(out, "packing_stats.json"), "w") as f:
        json.dump(report, f, indent=2)
    print(f"      {time.perf_counter() - start:.0f}s", flush=True)

    start = _stage(2, f"training the tiny VAE for {args.vae_steps} steps ...")
    vae_dir = os.path.join(out, "vae")
    _train("experiments/vae.py:tiny", vae_dir, [f"steps={args.vae_steps}", f"data.sources=['{dataset}']",
                                                 f"optim.warmup_steps={min(20, args.vae_steps)}",
                                                 f"checkpoint_every={max(1, args.vae_steps // 2)}",
                                                 f"eval_every={args.vae_steps}", "sample_every=0"])
    print(f"      {time.perf_counter() - start:.0f}s; reconstructions and metrics in {vae_dir}", flush=True)

    start = _stage(3, "encoding the dataset into latent records ...")
    encoded = run_encode(EncodeConfig(vae_workdir=vae_dir, data=dataset, out=os.path.join(out, "latents")))
    print(f"      {time.perf_counter() - start:.0f}s: {encoded['dataset']}", flush=True)

    start = _stage(4, f"training the tiny DiT on the latents for {args.dit_steps} steps ...")
    dit_dir = os.path.join(out, "dit")
    _train("experiments/pretrain.py:tiny_latent", dit_dir, [
        f"steps={args.dit_steps}", f"data.sources=['{encoded['dataset']}']",
        f"optim.warmup_steps={min(30, args.dit_steps)}", f"checkpoint_every={max(1, args.dit_steps // 3)}",
        f"eval_every={args.dit_steps}"])
    print(f"      {time.perf_counter() - start:.0f}s", flush=True)

    start = _stage(5, f"generating {args.samples} held-out captions next to the real clips ...")
    paths = _write_samples(dit_dir, read_clips(dataset, "validation", 32), args, os.path.join(out, "samples"),
                           captioned_gif, contact_sheet)
    print(f"      {time.perf_counter() - start:.0f}s", flush=True)
    for path in paths:
        print(f"      {path}")
    print(f"demo finished in {time.perf_counter() - begin:.0f}s; outputs in {out}")
    return 0


def _pick(clips: list[dict], count: int) -> list[dict]:
    """Held-out videos of different shapes first (square, tall, wide), then any."""
    chosen, shapes = [], set()
    for clip in clips:
        shape = clip["video"].shape[:3]
        if shape[0] > 1 and shape not in shapes:
            chosen.append(clip)
            shapes.add(shape)
    rest = [c for c in clips if all(c is not x for x in chosen)]
    return (chosen + rest)[:count]


def _write_samples(dit_dir: str, clips: list[dict], args, out_dir: str, captioned_gif, contact_sheet) -> list[str]:
    from sora_jax.generate import Generator

    os.makedirs(out_dir, exist_ok=True)
    generator = Generator.from_workdir(dit_dir)
    paths, sheet = [], []
    for i, clip in enumerate(_pick(clips, args.samples)):
        frames, height, width = clip["video"].shape[:3]
        video = generator.generate(clip["caption"], frames, height, width, steps=args.sample_steps, seed=i)
        both = _side_by_side(clip["video"], video)
        caption = f"left: held-out clip; right: generated from its caption. {clip['caption']}"
        paths.append(captioned_gif({"video": both, "caption": caption}, os.path.join(out_dir, f"sample_{i}.gif")))
        sheet.append({"video": both, "caption_short": clip["caption_short"]})
    paths.append(contact_sheet(sheet, os.path.join(out_dir, "contact_sheet.png"), columns=2))
    return paths
