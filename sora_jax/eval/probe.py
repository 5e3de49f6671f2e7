"""The probe: a small network that reads a clip's colour slots and answers, for each of the 9
palette colours, whether an object of that colour is there and its shape, motion and direction.

Its inputs (`sora_jax.eval.world.probe_inputs`) are, per slot: the clip's palette membership maps
letterboxed to `size x size` (the `frames` resampled frames stacked as channels, with the frame mask
and two coordinate channels: where the object is relative to the walls and its occluders), its
track (per frame: seen, centroid, mass, fraction of its largest mass) and its glimpses (the object
centred and scaled to a fixed window at native resolution in every frame; tracks read every frame
of a clip of up to 17, time-aligned). Four branches, summed
into one slot embedding:

- scene: convolutions over the stacked letterboxed maps;
- track: an MLP over the frames' centroids and masses (speed, heading, reflections, gravity);
- glimpse: one per-frame convolutional encoder, pooled globally and then over the seen frames
  (shape; position- and size-invariant by construction);
- spin: convolutions over the glimpses stacked as channels (rotation: the centred object turns).

One network is shared by the slots, so the probe is colour-blind by construction: a slot's shape or
motion never depends on which colour it is, and every object trains the same weights. Only the
`max_objects` slots with the most mass are encoded. Presence adds a learned threshold on the slot's
membership mass (`log1p` of the mean per-frame mass in view pixels) to the head's logit, initialised
so that an object of a few pixels reads present from the first step. Version history: v1 (scene
branch only) reached 31% shape accuracy; v2 (plus the most visible frame at view resolution) 69%
shape and 40% on rotating objects, 88% overall, because the view's area resampling blurs small
shapes and a spinning object in place looks static in it.

The slot embeddings, weighted by their presence probability and summed, plus the 9 presence
probabilities, are the clip's feature vector for the Fréchet distance (`features`).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.eval.targets import CLASS_COUNTS, DIRECTIONS
from sora_jax.eval.world import COLOUR_NAMES, TRACK_FEATURES, probe_inputs

SLOTS = len(COLOUR_NAMES)
_MIRROR = {"right": "left", "left": "right", "down-right": "down-left", "down-left": "down-right",
           "up-right": "up-left", "up-left": "up-right"}
# MIRRORED_DIRECTIONS[i]: the class a mirrored clip reports for an original heading of class i.
MIRRORED_DIRECTIONS = np.array([DIRECTIONS.index(_MIRROR.get(name, name)) for name in DIRECTIONS])


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Input resampling (frames, size, glimpse) and branch widths; see `sora_jax.eval.world.probe_inputs`."""

    frames: int = 9
    size: int = 48
    widths: tuple[int, ...] = (16, 32, 48, 64)
    embed_dim: int = 64
    max_objects: int = 3  # slots encoded per clip: the ones with the most membership mass
    glimpse: int = 16
    glimpse_widths: tuple[int, ...] = (16, 32, 64)
    track_frames: int = 17  # time-aligned track slots (every frame of a clip of up to 17 frames)

    def __post_init__(self):
        if self.frames < 1 or self.track_frames < 1 or self.size < 16 or not self.widths or self.embed_dim < 1:
            raise ValueError(f"probe needs frames and track_frames >= 1, size >= 16, widths and embed_dim >= 1, got {self}")
        if not 1 <= self.max_objects <= SLOTS:
            raise ValueError(f"probe max_objects must be in 1..{SLOTS}, got {self.max_objects}")
        if self.size % (2 ** len(self.widths)):
            raise ValueError(f"probe size {self.size} must be divisible by 2^{len(self.widths)} (one stride 2 per width)")
        if not self.glimpse_widths or self.glimpse % (2 ** (len(self.glimpse_widths) - 1)) or self.glimpse < 8:
            raise ValueError(f"probe glimpse {self.glimpse} must be >= 8 and divisible by "
                             f"2^{len(self.glimpse_widths) - 1} (glimpse_widths {self.glimpse_widths})")


def conv_stack(channels: int, widths: tuple[int, ...], first_stride: int, rngs: nnx.Rngs) -> nnx.List:
    """3x3 convolutions of `widths`, stride 2 except the first (`first_stride`)."""
    convs = []
    for i, width in enumerate(widths):
        stride = first_stride if i == 0 else 2
        convs.append(nnx.Conv(channels, width, (3, 3), strides=(stride, stride), padding="SAME", rngs=rngs))
        channels = width
    return nnx.List(convs)


def run_convs(convs: nnx.List, x: jax.Array) -> jax.Array:
    """`x (N, S, S, C_in)` through `convs`, GELU after each -> `(N, S', S', C)`."""
    for conv in convs:
        x = jax.nn.gelu(conv(x))  # (N, S', S', C)
    return x


class Probe(nnx.Module):
    """Probe inputs (views, tracks, glimpses; `probe_inputs`, scaled to [0, 1]) -> per-slot logits and
    embeddings (module docstring)."""

    def __init__(self, config: ProbeConfig, *, rngs: nnx.Rngs):
        self.config = config
        c, d = config, config.embed_dim
        self.convs = conv_stack(c.frames + 3, c.widths, 2, rngs)
        self.embed = nnx.Linear((c.size // 2 ** len(c.widths)) ** 2 * c.widths[-1], d, rngs=rngs)
        self.track_in = nnx.Linear(c.track_frames * TRACK_FEATURES, 2 * d, rngs=rngs)
        self.track_out = nnx.Linear(2 * d, d, rngs=rngs)
        self.glimpse_convs = conv_stack(1, c.glimpse_widths, 1, rngs)
        self.glimpse_embed = nnx.Linear(4 * c.glimpse_widths[-1], d, rngs=rngs)
        self.spin_convs = conv_stack(c.frames, c.glimpse_widths, 1, rngs)
        spin_cells = (c.glimpse // 2 ** (len(c.glimpse_widths) - 1)) ** 2
        self.spin_embed = nnx.Linear(spin_cells * c.glimpse_widths[-1], d, rngs=rngs)
        self.hidden = nnx.Linear(d, d, rngs=rngs)
        # Zero heads: at initialisation presence is the mass term alone and the classes are uniform.
        self.heads = nnx.Linear(d, 1 + sum(CLASS_COUNTS.values()), kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.mass_scale = nnx.Param(jnp.asarray(4.0))
        self.mass_bias = nnx.Param(jnp.asarray(1.0))

    def scene_inputs(self, views: jax.Array, pick: jax.Array) -> jax.Array:
        """Scene-branch inputs `(B * M, S, S, F + 3)` of the chosen slots `pick (B, M, K)` one-hot:
        own memberships, frame mask, x, y."""
        batch, frames, size = views.shape[:3]
        membership = jnp.einsum("bmk,bfhwk->bmhwf", pick, views[..., :SLOTS])  # (B, M, S, S, F)
        chosen = pick.shape[1]
        mask = views[:, 0, :, :, SLOTS:]  # (B, S, S, 1)
        grid = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size * 2 - 1  # (S,)
        coords = jnp.stack(jnp.meshgrid(grid, grid, indexing="xy"), axis=-1)  # (S, S, 2) x, y
        shared = jnp.concatenate([mask, jnp.broadcast_to(coords, (batch, size, size, 2))], axis=-1)  # (B, S, S, 3)
        shared = jnp.broadcast_to(shared[:, None], (batch, chosen, size, size, 3))  # (B, M, S, S, 3)
        inputs = jnp.concatenate([membership, shared], axis=-1)  # (B, M, S, S, F + 3)
        return inputs.reshape(batch * chosen, size, size, frames + 3)  # (B * M, S, S, F + 3)

    def glimpse_features(self, glimpses: jax.Array, seen: jax.Array) -> jax.Array:
        """Shape features `(N, D)` of glimpses `(N, F, G, G)`: per frame, global max and mean pooling;
        then the mean over seen frames `seen (N, F)` and the max over them."""
        n, frames, g = glimpses.shape[:3]
        x = run_convs(self.glimpse_convs, glimpses.reshape(n * frames, g, g, 1))  # (N * F, G', G', C)
        pooled = jnp.concatenate([x.max(axis=(1, 2)), x.mean(axis=(1, 2))], axis=-1).reshape(n, frames, -1)  # (N, F, 2C)
        weights = seen[..., None]  # (N, F, 1)
        mean = (pooled * weights).sum(axis=1) / jnp.maximum(weights.sum(axis=1), 1.0)  # (N, 2C)
        peak = jnp.where(weights > 0, pooled, -1e4).max(axis=1) * (weights.sum(axis=1) > 0)  # (N, 2C)
        return self.glimpse_embed(jnp.concatenate([mean, peak], axis=-1))  # (N, D)

    def __call__(self, views: jax.Array, tracks: jax.Array, glimpses: jax.Array) -> dict:
        """Returns present (B, K) logits, shape/motion/direction (B, K, classes) logits, embedding (B, K, D).

        `views (B, F, S, S, K + 1)`, `tracks (B, K, Ft, 5)`, `glimpses (B, K, F, G, G)`, all float.
        Only the `max_objects` slots with the most membership mass are encoded (the others are empty
        in the probe's domain): their outputs are scattered back into the K slots, the rest get zero
        logits and embeddings, and their presence rests on the (tiny) mass term alone.
        """
        c = self.config
        views, tracks, glimpses = (x.astype(jnp.float32) for x in (views, tracks, glimpses))
        batch = views.shape[0]
        mass = jnp.sum(views[..., :SLOTS], axis=(2, 3)).mean(axis=1)  # (B, K) view px per frame
        slots = jax.lax.top_k(mass, c.max_objects)[1]  # (B, M)
        # Selection by one-hot contractions: dense ops, where a gather is slow on XLA:CPU.
        pick = jax.nn.one_hot(slots, SLOTS, dtype=jnp.float32)  # (B, M, K)
        scene = run_convs(self.convs, self.scene_inputs(views, pick)).reshape(batch, c.max_objects, -1)  # (B, M, cells * C)
        track = jnp.einsum("bmk,bkft->bmft", pick, tracks).reshape(batch, c.max_objects, -1)  # (B, M, Ft * 5)
        track = self.track_out(jax.nn.gelu(self.track_in(track)))  # (B, M, D)
        chosen = jnp.einsum("bmk,bkfgh->bmfgh", pick, glimpses).reshape(batch * c.max_objects, c.frames, c.glimpse, c.glimpse)
        seen = (chosen.sum(axis=(2, 3)) > 0).astype(jnp.float32)  # (B * M, F) glimpses are zero where unseen
        shape = self.glimpse_features(chosen, seen).reshape(batch, c.max_objects, -1)  # (B, M, D)
        spin = run_convs(self.spin_convs, chosen.transpose(0, 2, 3, 1)).reshape(batch, c.max_objects, -1)
        spin = self.spin_embed(spin)  # (B, M, D)
        embedding = jax.nn.gelu(self.embed(scene) + track + shape + spin)  # (B, M, D)
        logits = self.heads(jax.nn.gelu(self.hidden(embedding)) + embedding)  # (B, M, 1 + classes)
        logits = jnp.einsum("bmk,bmc->bkc", pick, logits)  # (B, K, 1 + classes)
        embedding = jnp.einsum("bmk,bmd->bkd", pick, embedding)  # (B, K, D)
        present = logits[..., 0] + self.mass_scale.value * (jnp.log1p(mass) - self.mass_bias.value)  # (B, K)
        out, start = {"present": present, "embedding": embedding}, 1
        for name, count in CLASS_COUNTS.items():
            out[name] = logits[..., start : start + count]  # (B, K, count)
            start += count
        return out


def scale_inputs(inputs: dict) -> dict:
    """uint8 probe inputs (`probe_inputs`, batched) -> the float [0, 1] arrays `Probe` takes."""
    return {"views": inputs["views"].astype(np.float32) / 255.0, "tracks": inputs["tracks"].astype(np.float32),
            "glimpses": inputs["glimpses"].astype(np.float32) / 255.0}


def features(outputs: dict) -> jax.Array:
    """Clip features `(B, D + K)` for the Fréchet distance: presence-weighted sum of slot embeddings
    and the presence probabilities (so which colours appear counts too)."""
    presence = jax.nn.sigmoid(outputs["present"])  # (B, K)
    pooled = jnp.einsum("bk,bkd->bd", presence, outputs["embedding"])  # (B, D)
    return jnp.concatenate([pooled, presence], axis=-1)  # (B, D + K)


class ProbeReader:
    """Runs a trained probe on clips of any shape, in fixed-size jitted batches (one compilation).

    `read(videos)` returns numpy arrays: present (N, K) probabilities, shape/motion/direction
    (N, K, classes) probabilities and features (N, D + K). With `mirror` (the default) every clip is
    also read mirrored left to right, and the two readings are averaged, the mirrored directions
    mapped back (right <-> left, down-right <-> down-left, up-right <-> up-left): Shapes World is
    left-right symmetric (gravity points down), so the mirror image is another valid clip whose
    answers are known from the original's. Features come from the original clip alone.
    """

    def __init__(self, model: Probe, batch_size: int = 16, mirror: bool = True):
        self.config, self.batch_size, self.mirror = model.config, batch_size, mirror
        graphdef, state = nnx.split(model)

        @jax.jit
        def run(state, inputs):
            out = nnx.merge(graphdef, state)(**scale_inputs(inputs))
            probabilities = {name: jax.nn.softmax(out[name], axis=-1) for name in CLASS_COUNTS}
            return probabilities | {"present": jax.nn.sigmoid(out["present"]), "features": features(out)}

        self._state, self._run = state, run

    def inputs(self, videos) -> dict:
        """Batched probe inputs (`probe_inputs`: views, tracks, glimpses) of a list of `(T, H, W, 3)` clips."""
        c = self.config
        items = [probe_inputs(v, c.frames, c.size, c.glimpse, c.track_frames) for v in videos]
        return {name: np.stack([item[name] for item in items]) for name in items[0]}

    def read(self, videos) -> dict:
        """Probe outputs for a list of clips (see the class docstring)."""
        out = self._read_once(videos)
        if not self.mirror:
            return out
        mirrored = self._read_once([np.asarray(v)[:, :, ::-1] for v in videos])
        mirrored["direction"] = mirrored["direction"][..., MIRRORED_DIRECTIONS]  # back to the original's sides
        return {name: out[name] if name == "features" else (out[name] + mirrored[name]) / 2 for name in out}

    def _read_once(self, videos) -> dict:
        inputs = self.inputs(videos)
        count = len(inputs["views"])
        padded = -(-count // self.batch_size) * self.batch_size
        inputs = {name: np.concatenate([x, np.zeros((padded - count, *x.shape[1:]), x.dtype)]) for name, x in inputs.items()}
        parts = [jax.device_get(self._run(self._state, {name: x[i : i + self.batch_size] for name, x in inputs.items()}))
                 for i in range(0, padded, self.batch_size)]
        return {name: np.concatenate([p[name] for p in parts])[:count] for name in parts[0]}
