"""`sora-jax eval --workdir DIR [--prompts FILE] [--probe-workdir DIR] [--vae-workdir DIR] --out DIR [--compare DIR2]`."""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser("eval", help="generate the prompt suite with a checkpoint and score it (JSON + HTML)")
    parser.add_argument("--workdir", required=True, help="DiT training workdir (its latest checkpoint is evaluated)")
    parser.add_argument("--out", required=True, help="where report.json and report.html go")
    parser.add_argument("--prompts", default=None, help="prompt suite JSONL (default: sora_jax/eval/prompts_v1.jsonl)")
    parser.add_argument("--probe-workdir", default=None, help="workdir of `sora-jax train --config experiments/probe.py:tiny`")
    parser.add_argument("--vae-workdir", default=None, help="VAE workdir: PSNR, SSIM and Fréchet of reconstructions")
    parser.add_argument("--compare", default=None, help="a second DiT workdir, evaluated and shown side by side")
    parser.add_argument("--prompt-field", default="prompt", choices=("prompt", "prompt_short"),
                        help="prompt with the suite's detailed prompts (default) or its short ones")
    parser.add_argument("--seed", type=int, default=0, help="generation seed")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the generator's)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sora_jax.eval.evaluate import run_eval  # noqa: PLC0415 (keeps `sora-jax --help` fast)

    paths = run_eval(args.workdir, args.out, prompts=args.prompts, probe_workdir=args.probe_workdir,
                     vae_workdir=args.vae_workdir, compare=args.compare, seed=args.seed, steps=args.steps,
                     guidance=args.guidance, prompt_field=args.prompt_field)
    print(json.dumps({"report": paths["json"], "html": paths["html"]}))
    return 0
