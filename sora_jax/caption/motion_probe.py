"""Motion probe: can the captioner's encoder tell how an object moves when motion is all it is asked?

The clip-stage captioner names static, linear and bouncing objects but almost never a fall and seldom
a spin (docs/caption.md). This probe trains the captioner's own encoder (`Captioner.encode`: conv stem
over packed `(pt, 8, 8)` patches, frame positions, identity-started blocks with 3D RoPE) plus one
learned query that reads its memory, as the caption decoder does, on direct 5-way motion labels of
Shapes World clips rendered fresh every step, and scores held-out seeds per motion type:

    python -m sora_jax.caption.motion_probe --pt 2 --frames 8     # the captioner's temporal patch
    python -m sora_jax.caption.motion_probe --pt 1 --frames 8     # one frame per token
    python -m sora_jax.caption.motion_probe --pt 2 --stem-motion  # the stem also reads frame differences
    python -m sora_jax.caption.motion_probe --pt 2 --head max     # max pooling instead of the query's reading
    python -m sora_jax.caption.motion_probe --pt 2 --head summary # the query also reads a max-pooled token
    python -m sora_jax.caption.motion_probe --pt 2 --objects 3    # which way does the red one move?

With `--objects K` each clip holds 1 to K objects and the probe is asked about one of them, named by
its colour (added to the query), as a decoder that has just written "The red square" must find it.

Prints one JSON line per evaluation: step, loss, held-out motion accuracy, accuracy per motion type,
the confusion counts (true type -> predicted type), seconds.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from data_pipelines.shapes_world.render import render_scene
from data_pipelines.shapes_world.scene import COLOURS, MOTIONS, sample_scene
from sora_jax.caption.model import Captioner, CaptionerConfig
from sora_jax.models.dit.patchify import patchify

HELD_OUT_SEED = 900_000_000  # far above any training seed the probe draws
PATCH = 8
FPS = 8.0  # the Shapes World default, as the `tiny` mixture renders
# attn: a learned query reads the memory (as the decoder does); max: max pooling over it; summary: the query
# reads the memory plus one more token, the memory's max pooling (normalised), which it can find at once.
HEADS = ("attn", "max", "summary")


def probe_clips(seeds, frames: int, side: int, pt: int, objects: int = 1) -> dict[str, np.ndarray]:
    """Packed clips of `frames` frames at `side` x `side` pixels, one per row: `tokens (N, L, pt*8*8*3)` in
    [-1, 1], `coords (N, L, 3)`, and labels of one object per clip (drawn from the seed): its motion index
    in `MOTIONS`, its colour index, the object count."""
    if frames % pt or side % PATCH:
        raise ValueError(f"frames ({frames}) must be a multiple of pt ({pt}) and side ({side}) of {PATCH}")
    tokens, motions, colours, counts, coords = [], [], [], [], None
    for seed in seeds:
        scene = sample_scene(int(seed), frames, side, side, FPS, objects)
        video, _ = render_scene(scene)  # (T, H, W, 3) uint8
        clip_tokens, coords, _ = patchify(video.astype(np.float32) / 127.5 - 1.0, (pt, PATCH, PATCH))
        target = scene.objects[int(np.random.default_rng(int(seed)).integers(len(scene.objects)))]
        tokens.append(clip_tokens)
        motions.append(MOTIONS.index(target.motion))
        colours.append(list(COLOURS).index(target.colour))
        counts.append(len(scene.objects))
    return {"tokens": np.stack(tokens), "coords": np.broadcast_to(coords, (len(tokens),) + coords.shape).copy(),
            "motions": np.array(motions), "colours": np.array(colours), "counts": np.array(counts)}


class MotionProbe(nnx.Module):
    """The captioner's encoder (`experiments/caption.py:tiny` sizes and the clip-stage recipe's switches),
    then one learned query (plus the asked colour's embedding) attending over the memory, then 5 logits."""

    def __init__(self, pt: int, *, rngs: nnx.Rngs, depth: int = 3, frame_position: bool = True,
                 identity_init: bool = True, query_colour: bool = False, stem_motion: bool = False,
                 head: str = "attn"):
        if head not in HEADS:
            raise ValueError(f"--head must be one of {HEADS}, got {head!r}")
        if head == "max" and query_colour:
            raise ValueError("--head max pools before it knows the colour: use --head attn with --objects above 1")
        self.head = head
        config = CaptionerConfig(patch_dim=pt * PATCH * PATCH * 3, vocab_size=8, encoder_depth=depth, decoder_depth=1,
                                 max_caption_len=8, attention="xla", stem="conv", stem_widths=(16, 32, 64, 128),
                                 stem_motion=stem_motion, patch=(pt, PATCH, PATCH), frame_position=frame_position,
                                 identity_init=identity_init)
        self.captioner = Captioner(config, rngs=rngs)
        self.captioner.decoder = None  # only the encoder is probed
        self.query = nnx.Param(jax.random.normal(rngs.params(), (1, 1, config.dim)) * 0.02)
        self.colour = nnx.Embed(len(COLOURS), config.dim, rngs=rngs) if query_colour else None
        self.read = nnx.MultiHeadAttention(config.heads, config.dim, decode=False, rngs=rngs)
        self.summary_norm = nnx.LayerNorm(config.dim, rngs=rngs) if head == "summary" else None
        self.out = nnx.Linear(config.dim, len(MOTIONS), rngs=rngs)

    def __call__(self, tokens: jax.Array, coords: jax.Array, colours: jax.Array) -> jax.Array:
        """Motion logits `(B, len(MOTIONS))` of clips `tokens (B, L, D)` at `coords (B, L, 3)`."""
        batch, length, _ = tokens.shape
        memory = self.captioner.encode(tokens, coords, jnp.ones((batch, length), jnp.int32))  # (B, L, dim)
        if self.head == "max":  # every token competes for each feature: nothing is averaged away
            return self.out(memory.max(axis=1))  # (B, len(MOTIONS))
        query = jnp.broadcast_to(self.query[...], (batch, 1, memory.shape[-1]))  # (B, 1, dim)
        if self.colour is not None:
            query = query + self.colour(colours)[:, None]  # (B, 1, dim)
        if self.summary_norm is not None:
            summary = self.summary_norm(memory.max(axis=1, keepdims=True))  # (B, 1, dim)
            memory = jnp.concatenate([memory, summary], axis=1)  # (B, L + 1, dim)
        return self.out(self.read(query, memory)[:, 0])  # (B, len(MOTIONS))


def _loss(model, tokens, coords, colours, motions):
    return optax.softmax_cross_entropy_with_integer_labels(model(tokens, coords, colours), motions).mean()


@nnx.jit
def _train_step(model, optimizer, tokens, coords, colours, motions):
    loss, grads = nnx.value_and_grad(_loss)(model, tokens, coords, colours, motions)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def _predict(model, tokens, coords, colours):
    return model(tokens, coords, colours).argmax(-1)


def confusion(truth: np.ndarray, predicted: np.ndarray) -> dict[str, dict[str, int]]:
    """Counts `{true motion: {predicted motion: n}}` (zero counts left out)."""
    table = {}
    for k, name in enumerate(MOTIONS):
        calls = predicted[truth == k]
        if len(calls):
            table[name] = {MOTIONS[j]: int((calls == j).sum()) for j in range(len(MOTIONS)) if (calls == j).any()}
    return table


def run(args) -> list[dict]:
    """Trains one probe and returns its evaluation records (also printed as JSON lines)."""
    if args.pt < 1 or args.frames < args.pt or args.frames % args.pt:
        raise ValueError(f"--frames ({args.frames}) must be a positive multiple of --pt ({args.pt})")
    if args.objects < 1:
        raise ValueError(f"--objects must be at least 1, got {args.objects}")
    model = MotionProbe(args.pt, rngs=nnx.Rngs(args.seed), depth=args.depth, frame_position=not args.no_frame_position,
                        identity_init=not args.no_identity_init, query_colour=args.objects > 1,
                        stem_motion=args.stem_motion, head=args.head)
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, min(100, args.steps // 10), args.steps, args.lr * 0.1)
    optimizer = nnx.Optimizer(model, optax.adamw(schedule, weight_decay=0.0), wrt=nnx.Param)
    held = probe_clips(range(HELD_OUT_SEED, HELD_OUT_SEED + args.held_out), args.frames, args.side, args.pt,
                       args.objects)
    records, start = [], time.time()
    for step in range(1, args.steps + 1):
        first = args.seed * 10_000_000 + step * args.batch
        batch = probe_clips(range(first, first + args.batch), args.frames, args.side, args.pt, args.objects)
        loss = _train_step(model, optimizer, batch["tokens"], batch["coords"], batch["colours"], batch["motions"])
        if step % args.eval_every and step != args.steps:
            continue
        predicted = np.concatenate([
            _predict(model, held["tokens"][i:i + 64], held["coords"][i:i + 64], held["colours"][i:i + 64])
            for i in range(0, args.held_out, 64)])
        right = predicted == held["motions"]
        record = dict(step=step, loss=round(float(loss), 4), motion=round(float(right.mean()), 3),
                      motion_by_type={name: round(float(right[held["motions"] == k].mean()), 3)
                                      for k, name in enumerate(MOTIONS) if (held["motions"] == k).any()},
                      confusion=confusion(held["motions"], predicted), seconds=round(time.time() - start, 1))
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pt", type=int, default=2, help="frames per temporal patch")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (a multiple of --pt)")
    parser.add_argument("--side", type=int, default=48)
    parser.add_argument("--objects", type=int, default=1,
                        help="objects per clip, 1 to K; above 1 the probe is asked about one, named by its colour")
    parser.add_argument("--depth", type=int, default=3, help="encoder blocks")
    parser.add_argument("--no-frame-position", action="store_true", help="RoPE only, no frame position features")
    parser.add_argument("--head", choices=HEADS, default="attn",
                        help="attn: one learned query reads the memory, as the decoder does; max: max pooling; "
                             "summary: the query reads the memory and its max pooling")
    parser.add_argument("--stem-motion", action="store_true", help="the stem also reads frame differences")
    parser.add_argument("--no-identity-init", action="store_true", help="randomly initialised encoder blocks")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak of a warm-up + cosine schedule")
    parser.add_argument("--held-out", type=int, default=512)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
