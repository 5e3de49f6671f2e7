"""Shape probe: can a front end learn Shapes World shapes when shape is the only thing asked?

Supervised 5-way shape (and 3-way size) classification of single-object Shapes World images,
fresh images every step, scored on held-out seeds. It separates "the captioner's objective never
asks for shape" from "shape is slow to learn from these pixels" (docs/caption.md):

    python -m sora_jax.caption.shape_probe --front cnn --head pool     # CNN, global max pooling
    python -m sora_jax.caption.shape_probe --front cnn --head attn     # CNN, then the captioner's blocks
    python -m sora_jax.caption.shape_probe --front patch --head attn   # linear 8x8 patches (the old stem)
    python -m sora_jax.caption.shape_probe --front stem --head pool    # the captioner's ConvStem on packed patches
    python -m sora_jax.caption.shape_probe --front stem --head blockpool --depth 3 [--zero-init]  # stem, blocks, max
    python -m sora_jax.caption.shape_probe --front stem --head attn --objects 3   # binding: "the red one's shape?"
    python -m sora_jax.caption.shape_probe --front stem --head attn --objects 3 --single-steps 1000  # curriculum
    python -m sora_jax.caption.shape_probe --front stem --head attn --objects 3 --qk-scale 2  # sharper attention

With `--objects K` each image holds 1 to K objects of distinct colours (as in the `tiny` mixture) and
the probe is asked about one of them, named by its colour: the learned query of the `attn` head adds
that colour's embedding, which is how a caption decoder that has just written "a small red" must
find the red object's patches to write its shape.

Prints one JSON line per evaluation: step, loss, held-out shape and size accuracy, shape accuracy
per object size (and, with `--objects`, per object count), seconds.
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

from data_pipelines.shapes_world.render import object_ids, render_scene
from data_pipelines.shapes_world.scene import COLOURS, SHAPES, SIZES, sample_scene
from sora_jax.caption.layers import EncoderBlock
from sora_jax.caption.stem import ConvStem
from sora_jax.models.dit.patchify import grid_coords, patchify
from sora_jax.models.dit.rope import rope_angles

HELD_OUT_SEED = 900_000_000  # far above any training seed the probe draws
PATCH = 8


def patch_labels(scene) -> np.ndarray:
    """Each 8x8 patch's object shape `(h, w)` int32 of a one-frame scene: 1 + its index in SHAPES for
    the object showing in most of the patch's pixels when it shows in at least a quarter, else 0."""
    ids = object_ids(scene)[0]  # (H, W)
    h, w = ids.shape[0] // PATCH, ids.shape[1] // PATCH
    blocks = ids[: h * PATCH, : w * PATCH].reshape(h, PATCH, w, PATCH).transpose(0, 2, 1, 3).reshape(h, w, -1)
    shape_of = np.array([1 + SHAPES.index(obj.shape) for obj in scene.objects], np.int32)  # (n,)
    labels = np.zeros((h, w), np.int32)
    for k in range(len(scene.objects)):
        share = (blocks == k).mean(-1)  # (h, w)
        most = share >= np.max([(blocks == j).mean(-1) for j in range(len(scene.objects))], axis=0)
        labels[(share >= 0.25) & most] = shape_of[k]
    return labels


def probe_scenes(seeds, side: int, objects: int = 1) -> dict[str, np.ndarray]:
    """Images `(N, side, side, 3)` in [-1, 1] of scenes with 1 to `objects` objects, labels `(N,)` of one
    object per image (drawn from the seed): its shape, size and colour index, the object count, and
    `patch_labels (N, side / 8, side / 8)` of every patch."""
    images, shapes, sizes, colours, counts, patches = [], [], [], [], [], []
    for seed in seeds:
        scene = sample_scene(int(seed), 1, side, side, 8.0, objects)
        video, _ = render_scene(scene)
        patches.append(patch_labels(scene))
        target = scene.objects[int(np.random.default_rng(int(seed)).integers(len(scene.objects)))]
        images.append(video[0])
        shapes.append(SHAPES.index(target.shape))
        sizes.append(list(SIZES).index(target.size))
        colours.append(list(COLOURS).index(target.colour))
        counts.append(len(scene.objects))
    return {"images": np.stack(images).astype(np.float32) / 127.5 - 1.0, "shapes": np.array(shapes),
            "sizes": np.array(sizes), "colours": np.array(colours), "counts": np.array(counts),
            "patch_labels": np.stack(patches)}


def probe_images(seeds, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Single-object images `(N, side, side, 3)` in [-1, 1], shape labels `(N,)`, size labels `(N,)`."""
    scenes = probe_scenes(seeds, side)
    return scenes["images"], scenes["shapes"], scenes["sizes"]


class Probe(nnx.Module):
    """Front end (`cnn`: stride 1 then stride-2 3x3 convs down to 1/8; `patch`: linear 8x8 patches;
    `stem`: the captioner's `ConvStem` over packed 8x8 patches) and head (`pool`: global max or mean;
    `attn`: the captioner's encoder blocks with 2D RoPE, then one learned query attending over the
    grid, as the caption decoder reads the encoder; `blockpool`: those blocks, then max pooling, as
    the captioner's concept head reads them). With `query=True` the colour of the object asked about
    is embedded and added to the `attn` head's query, or to the pooled features of the other heads
    (which pool before they know the colour, so cannot bind it to one object)."""

    def __init__(self, front: str, head: str, pool: str, widths, depth: int, *, rngs: nnx.Rngs,
                 stem_kernel: int = 2, zero_init: bool = False, query: bool = False, dense: bool = False,
                 qk_scale: float = 1.0):
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
            for block in self.blocks:  # q/k RMS-norm scales: attention logits start qk_scale**2 as sharp
                for norm in (block.attn.norm_q, block.attn.norm_k):
                    norm.scale[...] = jnp.full_like(norm.scale[...], qk_scale)
        if head == "attn":
            self.query = nnx.Param(jax.random.normal(rngs.params(), (1, 1, 128)) * 0.02)
            self.read = nnx.MultiHeadAttention(4, 128, decode=False, rngs=rngs)
        self.colour = nnx.Embed(len(COLOURS), features, rngs=rngs) if query else None
        self.out = nnx.Linear(features, len(SHAPES) + len(SIZES), rngs=rngs)
        if dense and head not in ("attn", "blockpool"):
            raise ValueError("--dense needs the encoder blocks: --head attn or blockpool")
        self.dense = nnx.Linear(128, 1 + len(SHAPES), rngs=rngs) if dense else None

    def __call__(self, x: jax.Array, colours: jax.Array | None = None) -> jax.Array:
        """Shape and size logits `(B, shapes + sizes)` of images `x (B, H, W, 3)`; with a colour query,
        of the object of colour `colours (B,)` in each image."""
        return self.forward(x, colours)[0]

    def forward(self, x: jax.Array, colours: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
        """`(logits (B, shapes + sizes), patch logits (B, h * w, 1 + shapes) or None)`: with `dense`,
        every patch also names the shape of the object it shows (0 = background)."""
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
                x = block(x, segments, rope)  # (B, N, 128)
            patches = self.dense(x) if self.dense is not None else None  # (B, N, 1 + shapes)
            if self.head_kind == "attn":
                query = jnp.broadcast_to(self.query[...], (batch, 1, 128))  # (B, 1, 128)
                if self.colour is not None:
                    query = query + self.colour(colours)[:, None]  # (B, 1, 128)
                return self.out(self.read(query, x)[:, 0]), patches  # (B, shapes + sizes)
            features = x.max(axis=1)  # the captioner's encoder, then the concept head's max pooling
        else:
            features, patches = (x.max(axis=(1, 2)) if self.pool == "max" else x.mean(axis=(1, 2))), None
        if self.colour is not None:
            features = features + self.colour(colours)  # (B, F)
        return self.out(features), patches  # (B, shapes + sizes)


def _loss(model, images, shapes, sizes, colours, patch_labels, dense_weight):
    logits, patches = model.forward(images, colours)
    n = len(SHAPES)
    loss = (optax.softmax_cross_entropy_with_integer_labels(logits[:, :n], shapes).mean()
            + optax.softmax_cross_entropy_with_integer_labels(logits[:, n:], sizes).mean())
    if patches is None:
        return loss
    dense = optax.softmax_cross_entropy_with_integer_labels(patches, patch_labels.reshape(len(images), -1))  # (B, N)
    return loss + dense_weight * dense.mean()


@nnx.jit
def _train_step(model, optimizer, images, shapes, sizes, colours, patch_labels, dense_weight):
    loss, grads = nnx.value_and_grad(_loss)(model, images, shapes, sizes, colours, patch_labels, dense_weight)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def _predict(model, images, colours):
    logits, patches = model.forward(images, colours)
    dense = None if patches is None else patches.argmax(-1)  # (B, N)
    return logits[:, : len(SHAPES)].argmax(-1), logits[:, len(SHAPES):].argmax(-1), dense


def run(args) -> list[dict]:
    """Trains one probe and returns its evaluation records (also printed as JSON lines)."""
    widths = tuple(int(w) for w in args.widths.split(","))
    if args.side % PATCH or 2 ** (len(widths) - 1) != PATCH:
        raise ValueError(f"--side must be a multiple of {PATCH} and --widths hold 4 widths (stride 8)")
    if args.objects < 1:
        raise ValueError(f"--objects must be at least 1, got {args.objects}")
    if not 0 <= args.single_steps < args.steps:
        raise ValueError(f"--single-steps must be in [0, --steps), got {args.single_steps}")
    if args.qk_scale <= 0:
        raise ValueError(f"--qk-scale must be > 0, got {args.qk_scale}")
    if args.dense < 0:
        raise ValueError(f"--dense is a loss weight and must be >= 0, got {args.dense}")
    model = Probe(args.front, args.head, args.pool, widths, args.depth, rngs=nnx.Rngs(args.seed),
                  stem_kernel=args.stem_kernel, zero_init=args.zero_init, query=args.objects > 1,
                  dense=args.dense > 0, qk_scale=args.qk_scale)
    optimizer = nnx.Optimizer(model, optax.adam(args.lr), wrt=nnx.Param)
    held = probe_scenes(range(HELD_OUT_SEED, HELD_OUT_SEED + args.held_out), args.side, args.objects)
    records, start = [], time.time()
    for step in range(1, args.steps + 1):
        first = (args.seed * 10_000_000) + step * args.batch
        objects = 1 if step <= args.single_steps else args.objects  # the curriculum's first stage
        batch = probe_scenes(range(first, first + args.batch), args.side, objects)
        loss = _train_step(model, optimizer, batch["images"], batch["shapes"], batch["sizes"], batch["colours"],
                           batch["patch_labels"], args.dense)
        if step % args.eval_every and step != args.steps:
            continue
        predicted = [_predict(model, held["images"][i:i + 96], held["colours"][i:i + 96])
                     for i in range(0, args.held_out, 96)]
        shape_pred = np.concatenate([p[0] for p in predicted])
        size_pred = np.concatenate([p[1] for p in predicted])
        right = shape_pred == held["shapes"]
        record = dict(step=step, loss=round(float(loss), 4), shape=round(float(right.mean()), 3),
                      size=round(float((size_pred == held["sizes"]).mean()), 3),
                      shape_by_size={name: round(float(right[held["sizes"] == k].mean()), 3)
                                     for k, name in enumerate(SIZES) if (held["sizes"] == k).any()},
                      seconds=round(time.time() - start, 1), train_objects=objects)
        if args.dense > 0:  # per-patch shape on the patches that show an object
            labels = held["patch_labels"].reshape(args.held_out, -1)  # (N, h * w)
            dense = np.concatenate([p[2] for p in predicted])  # (N, h * w)
            record["patch_shape"] = round(float((dense == labels)[labels > 0].mean()), 3)
        if args.objects > 1:
            record["shape_by_count"] = {int(n): round(float(right[held["counts"] == n].mean()), 3)
                                        for n in np.unique(held["counts"])}
        print(json.dumps(record), flush=True)
        records.append(record)
    return records


def main(argv=None) -> list[dict]:
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
    parser.add_argument("--objects", type=int, default=1,
                        help="objects per image, 1 to K; above 1 the probe is asked about one, named by its colour")
    parser.add_argument("--single-steps", type=int, default=0,
                        help="a curriculum: train on one-object images for this many steps first")
    parser.add_argument("--dense", type=float, default=0.0,
                        help="weight of a per-patch loss naming the shape each patch shows (0 = off)")
    parser.add_argument("--qk-scale", type=float, default=1.0,
                        help="starting q/k RMS-norm scale of the encoder blocks (attention logits x its square)")
    parser.add_argument("--seed", type=int, default=0)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
