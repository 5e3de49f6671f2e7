"""Chunked encode/decode along time with a causal cache, and spatial tiling with linear blending.

Time: frame 0 is one chunk, then chunks of `time_factor * n` frames (n = `chunk_latent_frames`
latent frames). Each causal layer hands the next chunk the input frames its kernel still needs
(`TimeStream`), so the result is the one-pass computation, not an approximation. The last chunk is
padded to the full chunk length by repeating its last frame and the extra outputs are dropped:
by causality the padding cannot change earlier outputs, and every chunk after the first has the
same shape, so the per-chunk function compiles exactly twice (first chunk, later chunks) whatever
the clip length, and peak memory is that of one chunk.

Space: frames larger than a tile are cut into overlapping tiles (`tile_size`, `tile_overlap`
pixels, multiples of `space_factor`; in latent units when decoding they are divided by it), each
tile is encoded/decoded (chunked in time) on its own, and tiles are blended with weights that ramp
linearly across the overlap (a partition of unity, so an unchanged signal passes exactly). Tiling
is an approximation: a tile sees zeros, not its neighbours, beyond its edge, and the middle block's
attention sees only its tile.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sora_jax.models.vae.layers import TimeStream
from sora_jax.models.vae.model import VAE, DiagonalGaussian, apply_size_policy, crop_to, posterior_from_moments


def _encode_step(graphdef, state, frames: jax.Array, cache):
    """Encoder moments of one chunk and the cache for the next (cache None: chunk starts at frame 0)."""
    stream = TimeStream(cache)
    moments = nnx.merge(graphdef, state).encoder(frames, stream)  # (B, t_chunk, h, w, 2c)
    return moments, stream.next_cache


def _decode_step(graphdef, state, latents: jax.Array, cache):
    """Decoded frames of one latent chunk and the cache for the next."""
    stream = TimeStream(cache)
    frames = nnx.merge(graphdef, state).decoder(latents, stream)  # (B, T_chunk, H, W, 3)
    return frames, stream.next_cache


def _pad_frames(chunk: np.ndarray, length: int) -> np.ndarray:
    """`chunk (B, T, ...)` extended to `length` frames by repeating its last frame."""
    missing = length - chunk.shape[1]
    if missing <= 0:
        return chunk
    return np.concatenate([chunk, np.repeat(chunk[:, -1:], missing, axis=1)], axis=1)  # (B, length, ...)


class ChunkedVAE:
    """Bounded-memory encode/decode of a VAE's current weights (a snapshot taken at construction).

    The per-chunk functions are jitted once per chunk shape and reused across clips, so build one
    `ChunkedVAE` per model snapshot and call it for every clip. Inputs and outputs are host numpy
    arrays: this path exists for clips that do not fit in one pass.
    """

    def __init__(self, vae: VAE, *, chunk_latent_frames: int | None = None):
        self.config = vae.config
        self.chunk_latent_frames = chunk_latent_frames or self.config.chunk_latent_frames
        if self.chunk_latent_frames < 1:
            raise ValueError(f"chunk_latent_frames must be >= 1, got {self.chunk_latent_frames}")
        graphdef, self.state = nnx.split(vae)
        self.encode_step = jax.jit(functools.partial(_encode_step, graphdef))
        self.decode_step = jax.jit(functools.partial(_decode_step, graphdef))

    def refresh(self, vae: VAE) -> None:
        """Takes `vae`'s current weights (same architecture) without recompiling the chunk functions."""
        if vae.config != self.config:
            raise ValueError("refresh needs a VAE of the same config; build a new ChunkedVAE instead")
        self.state = nnx.state(vae)

    def encode_moments(self, video: np.ndarray) -> np.ndarray:
        """Moments `(B, t, h, w, 2c)` of a valid-shaped `video (B, T, H, W, 3)`, chunk by chunk."""
        tf, n = self.config.time_factor, self.chunk_latent_frames
        video = np.asarray(video, np.float32)
        moments, cache = self.encode_step(self.state, jnp.asarray(video[:, :1]), None)  # (B, 1, h, w, 2c)
        out = [np.asarray(moments)]
        for start in range(1, video.shape[1], tf * n):
            chunk = video[:, start : start + tf * n]  # (B, <= tf*n, H, W, 3)
            moments, cache = self.encode_step(self.state, jnp.asarray(_pad_frames(chunk, tf * n)), cache)
            out.append(np.asarray(moments)[:, : chunk.shape[1] // tf])  # (B, n, h, w, 2c), padding dropped
        return np.concatenate(out, axis=1)  # (B, t, h, w, 2c)

    def decode_frames(self, latents: np.ndarray) -> np.ndarray:
        """Video `(B, 1 + (t-1)*tf, H, W, 3)` of `latents (B, t, h, w, c)`, chunk by chunk, into one
        preallocated host array (no second copy of the clip)."""
        tf, n = self.config.time_factor, self.chunk_latent_frames
        latents = np.asarray(latents, np.float32)
        frames, cache = self.decode_step(self.state, jnp.asarray(latents[:, :1]), None)  # (B, 1, H, W, 3)
        out = np.empty((latents.shape[0], 1 + (latents.shape[1] - 1) * tf, *frames.shape[2:]), np.float32)
        out[:, :1] = np.asarray(frames)
        for start in range(1, latents.shape[1], n):
            chunk = latents[:, start : start + n]  # (B, <= n, h, w, c)
            frames, cache = self.decode_step(self.state, jnp.asarray(_pad_frames(chunk, n)), cache)
            begin = 1 + (start - 1) * tf
            out[:, begin : begin + chunk.shape[1] * tf] = np.asarray(frames)[:, : chunk.shape[1] * tf]
        return out

    def encode(self, video, *, policy: str | None = None) -> DiagonalGaussian:
        """Chunked `VAE.encode`: the posterior of `video (B, T, H, W, 3)`, equal to the one-pass one."""
        video, source_shape = apply_size_policy(np.asarray(video, np.float32), self.config, policy)
        return posterior_from_moments(jnp.asarray(self.encode_moments(video)), self.config, source_shape)

    def decode(self, latents, *, shape=None, clip: bool = False) -> np.ndarray:
        """Chunked `VAE.decode`: video `(B, 1 + (t-1)*tf, H, W, 3)`, cropped to `shape` when given."""
        video = crop_to(self.decode_frames(latents), shape)  # (B, T, H, W, 3)
        return np.clip(video, -1.0, 1.0) if clip else video

    def tiled_encode(self, video, *, tile: int | None = None, overlap: int | None = None, policy=None):
        """`encode` of frames larger than `tile` pixels as overlapping tiles blended in latent space."""
        video, source_shape = apply_size_policy(np.asarray(video, np.float32), self.config, policy)
        sf = self.config.space_factor
        tile, overlap = self._tiling(tile, overlap)
        moments = blend_tiles(video, tile, overlap, self.encode_moments, scale=1 / sf)  # (B, t, h, w, 2c)
        return posterior_from_moments(jnp.asarray(moments), self.config, source_shape)

    def tiled_decode(self, latents, *, tile: int | None = None, overlap: int | None = None, shape=None, clip=False):
        """`decode` of latents larger than a tile (`tile`, `overlap` in PIXELS) as blended tiles."""
        sf = self.config.space_factor
        tile, overlap = self._tiling(tile, overlap)
        video = blend_tiles(np.asarray(latents, np.float32), tile // sf, overlap // sf, self.decode_frames, scale=sf)
        video = crop_to(video, shape)  # (B, T, H, W, 3)
        return np.clip(video, -1.0, 1.0) if clip else video

    def _tiling(self, tile, overlap) -> tuple[int, int]:
        tile = self.config.tile_size if tile is None else tile
        overlap = self.config.tile_overlap if overlap is None else overlap
        sf = self.config.space_factor
        if tile <= 0 or tile % sf or overlap < 0 or overlap % sf or overlap >= tile:
            raise ValueError(f"tile={tile} and overlap={overlap} must be multiples of {sf} with 0 <= overlap < tile")
        return tile, overlap


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of length `tile` overlapping by at least `overlap` that cover `size`;
    the last tile is aligned to the end so every tile has the same shape (one compilation)."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    return list(range(0, size - tile, stride)) + [size - tile]


def ramp(length: int, overlap: int, before: bool, after: bool) -> np.ndarray:
    """Blend weights of one tile along one axis: linear ramps over `overlap` positions at the edges
    that have a neighbour, 1 elsewhere; opposite ramps of two neighbours sum to 1."""
    position = np.arange(length, dtype=np.float64) + 0.5
    weight = np.ones(length)
    if overlap > 0 and before:
        weight = np.minimum(weight, position / overlap)
    if overlap > 0 and after:
        weight = np.minimum(weight, (length - position) / overlap)
    return weight


def blend_tiles(array: np.ndarray, tile: int, overlap: int, fn, scale: float) -> np.ndarray:
    """Applies `fn` to overlapping spatial tiles of `array (B, T, H, W, C)` and blends the results.

    `fn` maps a tile `(B, T, tile, tile, C)` to `(B, T', tile*scale, tile*scale, C')`; the outputs are
    accumulated with `ramp` weights (overlap scaled too) and normalised by the summed weights.
    """
    height, width = array.shape[2:4]
    rows, cols = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    out, weights = None, None
    for top in rows:
        for left in cols:
            result = np.asarray(fn(array[:, :, top : top + tile, left : left + tile]))  # (B, T', th, tw, C')
            th, tw = result.shape[2:4]
            y0, x0, o = round(top * scale), round(left * scale), round(overlap * scale)
            if out is None:
                out_shape = (*result.shape[:2], round(height * scale), round(width * scale), result.shape[-1])
                out, weights = np.zeros(out_shape, np.float32), np.zeros(out_shape[2:4], np.float32)
            w = np.outer(ramp(th, o, top > 0, top + tile < height), ramp(tw, o, left > 0, left + tile < width))
            out[:, :, y0 : y0 + th, x0 : x0 + tw] += result * w[None, None, :, :, None].astype(np.float32)
            weights[y0 : y0 + th, x0 : x0 + tw] += w.astype(np.float32)
    return out / weights[None, None, :, :, None]  # (B, T', H*scale, W*scale, C')
