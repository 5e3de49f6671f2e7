"""`sora-jax encode --vae-workdir DIR --data DIR --out DIR [--text-encoder minilm]`: see sora_jax/encode/job.py."""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    encode = subparsers.add_parser("encode", help="encode a clip dataset into VAE latent records (resumable)")
    encode.add_argument("--vae-workdir", required=True, help="workdir of a trained VAE (experiments/vae.py)")
    encode.add_argument("--data", required=True, help="clip dataset directory, or shapes_world:CONFIG")
    encode.add_argument("--out", required=True, help="output directory (rerun the same command to resume)")
    encode.add_argument("--splits", default=None, help="comma-separated splits (default: all)")
    encode.add_argument("--batch-size", type=int, default=8)
    encode.add_argument("--chunk-frames", type=int, default=33, help="clips longer than this are encoded in chunks")
    encode.add_argument("--text-encoder", default=None,
                        help="frozen text encoder ('minilm', 'minilm:DIR', 't5:DIR') whose caption embeddings each "
                             "record also stores, so DiT training (data.text_encoder=SPEC) does not run it")
    encode.add_argument("--text-max-len", type=int, default=None,
                        help="caption tokens kept by --text-encoder (longer captions are cut at the end, special "
                             "tokens kept; default: the encoder's own, 256 for MiniLM)")
    encode.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sora_jax.encode.job import EncodeConfig, run_encode  # noqa: PLC0415 (keeps `sora-jax --help` fast)

    splits = tuple(s for s in args.splits.split(",") if s) if args.splits else None
    config = EncodeConfig(vae_workdir=args.vae_workdir, data=args.data, out=args.out, splits=splits,
                          batch_size=args.batch_size, chunk_frames=args.chunk_frames,
                          text_encoder=args.text_encoder, text_max_len=args.text_max_len)
    print(json.dumps(run_encode(config)))
    return 0
