"""Shape probe: can a front end learn Shapes World shapes when shape is the only thing asked?

Supervised 5-way shape (and 3-way size) classification of single-object Shapes World images,
fresh images every step, scored on held-out seeds. It separates "the captioner's objective never
asks for shape" from "shape is slow to learn from these pixels" (docs/caption.md):

    python -m sora_jax.caption.shape_probe --front cnn --head pool     # CNN, global max pooling
    python -m sora_jax.caption.shape_probe --front cnn --head attn     # CNN, then the captioner's blocks
    python -m sora_jax.caption.shape_probe --front patch --head attn   # linear 8x8 patches (the old stem)
    python -m sora_jax.caption.shape_probe --front stem --head pool    # the captioner's ConvStem on packed patches
    python -m sora_jax.caption.shape_probe --front stem --head blockpool --depth 3 [--zero-init]  # stem, blocks, max

Prints one JSON line per evaluation: step, loss, held-out shape and size accuracy, shape accuracy
per object size, seconds.
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
from data_pipelines.shapes_world.scene import SHAPES, SIZES, sample_scene
from sora_jax.caption.layers import EncoderBlock
from sora_jax.caption.stem import ConvStem
from sora_jax.models.dit.patchify import grid_coords, patchify
from sora_jax.models.dit.rope import rope_angles

HELD_OUT_SEED = 900_000_000  # far above any training seed the probe draws
PATCH = 8


def probe_images(seeds, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Single-object images `(N, side, side, 3)` in [-1, 1], shape labels `(N,)`, size labels `(N,)`."""
    images, shapes, sizes = [], [], []
    for seed in seeds:
        scene = sample_scene(int(seed), 1, side, side, 8.0, 1)
        video, _ = render_scene(scene)
        images.append(video[0])
        shapes.append(SHAPES.index(scene.objects[0].shape))
        sizes.append(list(SIZES).index(scene.objects[0].size))
    return np.stack(images).astype(np.float32) / 127.5 - 1.0, np.array(shapes), np.array(sizes)


class Probe(nnx.Module):
    """Front end (`cnn`: stride 1 then stride-2 3x3 convs down to 1/8; `patch`: linear 8x8 patches;
    `stem`: the captioner's `ConvStem` over packed 8x8 patches) and head (`pool`: global max or mean;
    `attn`: the captioner's encoder blocks with 2D RoPE, then one learned query attending over the
    grid, as the caption decoder reads the encoder; `blockpool`: those blocks, then max pooling, as
    the captioner's concept head reads them)."""

    def __init__(self, front: str, head: str, pool: str, widths, depth: int, *, rngs: nnx.Rngs,
                 stem_kernel: int = 2, zero_init: bool = False):
        self.front, self.head_kind, self.pool = front, head, pool
        convs, previous = [], 3
        for i, width in enumerate(widths if front == "cnn" else ()):
            convs.append(nnx.Conv(previous, width, (3, 3), strides=1 if i == 0 else 2, rngs=rngs))
            previous = width
        self.convs = nnx.List(convs)
        features = previous if front == "cnn" else PATCH * PATCH * 3
        if front == "stem":
            self.stem = ConvStem((1, PATCH, PATCH), 3, widths, 128, dtype=jnp.float32, rngs=rngs,
                                 deep_kernel=stem_kernel)
            features = 128
        if head in ("attn", "blockpool"):
            self.proj = nnx.Linear(features, 128, rngs=rngs)
            self.blocks = nnx.List([EncoderBlock(128, 4, 512, eps=1e-6, dtype=jnp.float32, implementation="xla",
                                                 rngs=rngs) for _ in range(depth)])
            features = 128
            for block in self.blocks if zero_init else ():
                block.start_as_identity()
        if head == "attn":
            self.query = nnx.Param(jax.random.normal(rngs.params(), (1, 1, 128)) * 0.02)
            self.read = nnx.MultiHeadAttention(4, 128, decode=False, rngs=rngs)
        self.out = nnx.Linear(features, len(SHAPES) + len(SIZES), rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        batch, height, width, _ = x.shape
        if self.front in ("patch", "stem"):  # the batch stands in for the time axis of one clip
            tokens, _, _ = patchify(x, (1, PATCH, PATCH))  # (B * h * w, 192)
            x = tokens.reshape(batch, height // PATCH, width // PATCH, -1)  # (B, h, w, 192)
        if self.front == "stem":  # each image one segment of its own row
            h, w = height // PATCH, width // PATCH
            coords = jnp.broadcast_to(grid_coords((1, h, w)), (batch, h * w, 3))
            x = self.stem(x.reshape(batch, h * w, -1), coords, jnp.ones((batch, h * w), jnp.int32))
            x = x.reshape(batch, h, w, -1)  # (B, h, w, 128)
        for conv in self.convs:
            x = jax.nn.gelu(conv(x))  # (B, h, w, C)
        if self.head_kind in ("attn", "blockpool"):
            _, h, w, c = x.shape
            x = self.proj(x.reshape(batch, h * w, c))  # (B, N, 128)
            coords = jnp.broadcast_to(grid_coords((1, h, w)), (batch, h * w, 3))
            rope = rope_angles(coords, 32, 10000.0)
            segments = jnp.ones((batch, h * w), jnp.int32)
            for block in self.blocks:
                x = block(x, segments, rope)
            if self.head_kind == "attn":
                features = self.read(jnp.broadcast_to(self.query[...], (batch, 1, 128)), x)[:, 0]
            else:  # the captioner's encoder, then the concept head's max pooling
                features = x.max(axis=1)
        else:
            features = x.max(axis=(1, 2)) if self.pool == "max" else x.mean(axis=(1, 2))
        return self.out(features)  # (B, shapes + sizes)


def _loss(model, images, shapes, sizes):
    logits = model(images)
    n = len(SHAPES)
    return (optax.softmax_cross_entropy_with_integer_labels(logits[:, :n], shapes).mean()
            + optax.softmax_cross_entropy_with_integer_labels(logits[:, n:], sizes).mean())


@nnx.jit
def _train_step(model, optimizer, images, shapes, sizes):
    loss, grads = nnx.value_and_grad(_loss)(model, images, shapes, sizes)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def _predict(model, images):
    logits = model(images)
    return logits[:, : len(SHAPES)].argmax(-1), logits[:, len(SHAPES):].argmax(-1)


def run(args) -> list[dict]:
    """Trains one probe and returns its evaluation records (also printed as JSON lines)."""
    widths = tuple(int(w) for w in args.widths.split(","))
    if args.side % PATCH or 2 ** (len(widths) - 1) != PATCH:
        raise ValueError(f"--side must be a multiple of {PATCH} and --widths hold 4 widths (stride 8)")
    model = Probe(args.front, args.head, args.pool, widths, args.depth, rngs=nnx.Rngs(args.seed),
                  stem_kernel=args.stem_kernel, zero_init=args.zero_init)
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)
    held_images, held_shapes, held_sizes = probe_images(range(HELD_OUT_SEED, HELD_OUT_SEED + args.held_out), args.side)
    records, start = [], time.time()
    for step in range(1, args.steps + 1):
        first = (args.seed * 10_000_000) + step * args.batch
        loss = _train_step(model, optimizer, *probe_images(range(first, first + args.batch), args.side))
        if step % args.eval_every and step != args.steps:
            continue
        predicted = [_predict(model, held_images[i:i + 96]) for i in range(0, len(held_images), 96)]
        shape_pred = np.concatenate([p[0] for p in predicted])
        size_pred = np.concatenate([p[1] for p in predicted])
        right = shape_pred == held_shapes
        record = dict(step=step, loss=round(float(loss), 4), shape=round(float(right.mean()), 3),
                      size=round(float((size_pred == held_sizes).mean()), 3),
                      shape_by_size={name: round(float(right[held_sizes == k].mean()), 3) for k, name in enumerate(SIZES)},
                      seconds=round(time.time() - start, 1))
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--front", choices=("cnn", "patch", "stem"), default="cnn")
    parser.add_argument("--head", choices=("pool", "attn", "blockpool"), default="pool")
    parser.add_argument("--pool", choices=("max", "mean"), default="max")
    parser.add_argument("--widths", default="32,64,64,128", help="CNN widths: stride 1, then three stride-2 layers")
    parser.add_argument("--depth", type=int, default=2, help="encoder blocks of the attn head")
    parser.add_argument("--stem-kernel", type=int, default=2, choices=(2, 3), help="the stem front's deep kernel")
    parser.add_argument("--zero-init", action="store_true", help="blocks start as the identity")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--side", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--held-out", type=int, default=480)
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
