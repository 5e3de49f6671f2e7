"""The probe: a small network that reads a clip's palette membership maps and answers, for each of
the 9 colour slots, whether an object of that colour is there and its shape, motion and direction.

One convolutional encoder is shared by the slots: slot k sees only its own membership maps (the
`frames` resampled frames stacked as channels, so motion is visible to the first layer), the frame
mask and two coordinate channels (so absolute position and heading are easy to read). Sharing makes
the probe colour-blind by construction: a slot's shape or motion never depends on which colour it
is, and every object of every clip trains the same weights. Presence adds a learned threshold on
the slot's membership mass (`log1p` of the mean per-frame mass in probe pixels) to the head's
logit, initialised so that an object of a few pixels reads present from the first step. A shape
branch reads the slot's most visible frame alone at full resolution and pools it globally (with the
frames stacked, a moving object's outline is smeared; v1 of the probe without this branch stayed at
31% shape accuracy). The slot embeddings, weighted by their presence probability and summed, plus
the 9 presence probabilities, are the clip's feature vector for the Fréchet distance (`features`).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.eval.targets import CLASS_COUNTS
from sora_jax.eval.world import COLOUR_NAMES, probe_view

SLOTS = len(COLOUR_NAMES)


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Input resampling (frames, size) and encoder widths; see `sora_jax.eval.world.probe_view`."""

    frames: int = 9
    size: int = 48
    widths: tuple[int, ...] = (16, 32, 48, 64)
    embed_dim: int = 64
    max_objects: int = 3  # slots encoded per clip: the ones with the most membership mass
    shape_widths: tuple[int, ...] = (16, 32, 32, 64)

    def __post_init__(self):
        if self.frames < 1 or self.size < 16 or not self.widths or self.embed_dim < 1:
            raise ValueError(f"probe needs frames >= 1, size >= 16, widths and embed_dim >= 1, got {self}")
        if not 1 <= self.max_objects <= SLOTS:
            raise ValueError(f"probe max_objects must be in 1..{SLOTS}, got {self.max_objects}")
        if self.size % (2 ** len(self.widths)):
            raise ValueError(f"probe size {self.size} must be divisible by 2^{len(self.widths)} (one stride 2 per width)")


class Probe(nnx.Module):
    """`views (B, F, S, S, K + 1)` in [0, 1] -> per-slot logits and embeddings (module docstring)."""

    def __init__(self, config: ProbeConfig, *, rngs: nnx.Rngs):
        self.config = config
        channels, convs = config.frames + 3, []
        for width in config.widths:
            convs.append(nnx.Conv(channels, width, (3, 3), strides=(2, 2), padding="SAME", rngs=rngs))
            channels = width
        self.convs = nnx.List(convs)
        # Shape branch: the slot's most visible frame alone (moving objects smear across the stacked
        # frames), full resolution first, then global max and mean pooling (shape is where-invariant).
        shape_convs, channels_in = [], 1
        for i, width in enumerate(config.shape_widths):
            shape_convs.append(nnx.Conv(channels_in, width, (3, 3), strides=(1, 1) if i == 0 else (2, 2),
                                        padding="SAME", rngs=rngs))
            channels_in = width
        self.shape_convs = nnx.List(shape_convs)
        self.shape_embed = nnx.Linear(2 * channels_in, config.embed_dim, rngs=rngs)
        cells = (config.size // 2 ** len(config.widths)) ** 2
        self.embed = nnx.Linear(cells * channels, config.embed_dim, rngs=rngs)
        self.hidden = nnx.Linear(config.embed_dim, config.embed_dim, rngs=rngs)
        self.heads = nnx.Linear(config.embed_dim, 1 + sum(CLASS_COUNTS.values()), rngs=rngs)
        self.mass_scale = nnx.Param(jnp.asarray(4.0))
        self.mass_bias = nnx.Param(jnp.asarray(1.0))

    def slot_inputs(self, views: jax.Array, slots: jax.Array) -> jax.Array:
        """Encoder inputs `(B * M, S, S, F + 3)` of the chosen `slots (B, M)`: own memberships, frame mask, x, y."""
        batch, frames, size = views.shape[:3]
        # Selection by a one-hot contraction: a dense op, where a gather is slow on XLA:CPU.
        pick = jax.nn.one_hot(slots, SLOTS, dtype=views.dtype)  # (B, M, K)
        membership = jnp.einsum("bmk,bfhwk->bmhwf", pick, views[..., :SLOTS])  # (B, M, S, S, F)
        chosen = slots.shape[1]
        mask = views[:, 0, :, :, SLOTS:]  # (B, S, S, 1)
        grid = (jnp.arange(size, dtype=jnp.float32) + 0.5) / size * 2 - 1  # (S,)
        coords = jnp.stack(jnp.meshgrid(grid, grid, indexing="xy"), axis=-1)  # (S, S, 2) x, y
        shared = jnp.concatenate([mask, jnp.broadcast_to(coords, (batch, size, size, 2))], axis=-1)  # (B, S, S, 3)
        shared = jnp.broadcast_to(shared[:, None], (batch, chosen, size, size, 3))  # (B, M, S, S, 3)
        inputs = jnp.concatenate([membership, shared], axis=-1)  # (B, M, S, S, F + 3)
        return inputs.reshape(batch * chosen, size, size, frames + 3)  # (B * M, S, S, F + 3)

    def key_frames(self, membership: jax.Array) -> jax.Array:
        """The frame with the most mass of each slot's memberships `(N, S, S, F)` -> `(N, S, S, 1)`."""
        mass = membership.sum(axis=(1, 2))  # (N, F)
        pick = jax.nn.one_hot(jnp.argmax(mass, axis=-1), membership.shape[-1], dtype=membership.dtype)  # (N, F)
        return jnp.einsum("nhwf,nf->nhw", membership, pick)[..., None]  # (N, S, S, 1)

    def shape_features(self, key_frames: jax.Array) -> jax.Array:
        """Translation-invariant shape features `(N, D)` of key frames `(N, S, S, 1)`."""
        x = key_frames
        for conv in self.shape_convs:
            x = jax.nn.gelu(conv(x))  # (N, S', S', C)
        pooled = jnp.concatenate([x.max(axis=(1, 2)), x.mean(axis=(1, 2))], axis=-1)  # (N, 2C)
        return self.shape_embed(pooled)  # (N, D)

    def __call__(self, views: jax.Array) -> dict:
        """Returns present (B, K) logits, shape/motion/direction (B, K, classes) logits, embedding (B, K, D).

        Only the `max_objects` slots with the most membership mass are encoded (the others are empty
        in the probe's domain): their outputs are scattered back into the K slots, the rest get zero
        logits and embeddings, and their presence rests on the (tiny) mass term alone.
        """
        views = views.astype(jnp.float32)
        batch = views.shape[0]
        mass = jnp.sum(views[..., :SLOTS], axis=(2, 3)).mean(axis=1)  # (B, K) probe px per frame
        slots = jax.lax.top_k(mass, self.config.max_objects)[1]  # (B, M)
        x = self.slot_inputs(views, slots)  # (B * M, S, S, F + 3)
        key_frames = self.key_frames(x[..., : self.config.frames])  # (B * M, S, S, 1)
        for conv in self.convs:
            x = jax.nn.gelu(conv(x))  # (B * M, S', S', C)
        x = x.reshape(batch, self.config.max_objects, -1)  # (B, M, cells * C)
        shape = self.shape_features(key_frames).reshape(batch, self.config.max_objects, -1)  # (B, M, D)
        embedding = jax.nn.gelu(self.embed(x) + shape)  # (B, M, D)
        logits = self.heads(jax.nn.gelu(self.hidden(embedding)) + embedding)  # (B, M, 1 + classes)
        scatter = jax.nn.one_hot(slots, SLOTS, dtype=logits.dtype)  # (B, M, K)
        logits = jnp.einsum("bmk,bmc->bkc", scatter, logits)  # (B, K, 1 + classes)
        embedding = jnp.einsum("bmk,bmd->bkd", scatter, embedding)  # (B, K, D)
        present = logits[..., 0] + self.mass_scale.value * (jnp.log1p(mass) - self.mass_bias.value)  # (B, K)
        out, start = {"present": present, "embedding": embedding}, 1
        for name, count in CLASS_COUNTS.items():
            out[name] = logits[..., start : start + count]  # (B, K, count)
            start += count
        return out


def features(outputs: dict) -> jax.Array:
    """Clip features `(B, D + K)` for the Fréchet distance: presence-weighted sum of slot embeddings
    and the presence probabilities (so which colours appear counts too)."""
    presence = jax.nn.sigmoid(outputs["present"])  # (B, K)
    pooled = jnp.einsum("bk,bkd->bd", presence, outputs["embedding"])  # (B, D)
    return jnp.concatenate([pooled, presence], axis=-1)  # (B, D + K)


class ProbeReader:
    """Runs a trained probe on clips of any shape, in fixed-size jitted batches (one compilation).

    `read(videos)` returns numpy arrays: present (N, K) probabilities, shape/motion/direction
    (N, K, classes) probabilities and features (N, D + K).
    """

    def __init__(self, model: Probe, batch_size: int = 16):
        self.config, self.batch_size = model.config, batch_size
        graphdef, state = nnx.split(model)

        @jax.jit
        def run(state, views):
            out = nnx.merge(graphdef, state)(views.astype(jnp.float32) / 255.0)
            probabilities = {name: jax.nn.softmax(out[name], axis=-1) for name in CLASS_COUNTS}
            return probabilities | {"present": jax.nn.sigmoid(out["present"]), "features": features(out)}

        self._state, self._run = state, run

    def views(self, videos) -> np.ndarray:
        """uint8 probe views `(N, F, S, S, K + 1)` of a list of `(T, H, W, 3)` clips."""
        return np.stack([probe_view(v, self.config.frames, self.config.size) for v in videos])

    def read(self, videos) -> dict:
        """Probe outputs for a list of clips (see the class docstring)."""
        views = self.views(videos)  # (N, F, S, S, K + 1)
        count = len(views)
        padded = -(-count // self.batch_size) * self.batch_size
        views = np.concatenate([views, np.zeros((padded - count, *views.shape[1:]), views.dtype)])
        parts = [jax.device_get(self._run(self._state, views[i : i + self.batch_size]))
                 for i in range(0, padded, self.batch_size)]
        return {name: np.concatenate([p[name] for p in parts])[:count] for name in parts[0]}
