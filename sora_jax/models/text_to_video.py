"""The denoiser the diffusion code trains and samples: a text encoder feeding the DiT."""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from sora_jax.models.dit.config import DiTConfig
from sora_jax.models.dit.model import DiT
from sora_jax.text.encoders import TokenEmbeddingEncoder


def per_segment_to_tokens(values: jax.Array, segment_ids: jax.Array) -> jax.Array:
    """Gathers per-segment values `(B, S, ...)` to tokens `(B, L, ...)`; padding tokens get zeros."""
    index = jnp.maximum(segment_ids - 1, 0)  # (B, L)
    gathered = jnp.take_along_axis(values, index.reshape(*index.shape, *([1] * (values.ndim - 2))), axis=1)
    mask = (segment_ids > 0).reshape(*segment_ids.shape, *([1] * (values.ndim - 2)))
    return jnp.where(mask, gathered, jnp.zeros((), values.dtype))  # (B, L, ...)


class TextToVideo(nnx.Module):
    """Text encoder + DiT: velocity of noisy packed tokens given their captions.

    `text_keep (B, S)` drops the caption of a segment (classifier-free guidance): a dropped segment's
    text embeddings are zeroed, which is also exactly the unconditional input at sampling time.
    """

    def __init__(self, dit_config: DiTConfig, vocab_size: int = 258, max_text_len: int = 512, *, rngs: nnx.Rngs):
        self.text_encoder = TokenEmbeddingEncoder(vocab_size, dit_config.text_dim, max_text_len, rngs=rngs)
        self.dit = DiT(dit_config, rngs=rngs)

    def __call__(self, tokens, coords, segment_ids, timesteps, text_tokens, text_segment_ids, text_keep=None):
        """Velocity `(B, L, patch_dim)`; arguments as `DiT.__call__` plus raw text tokens `(B, Lt)`."""
        text = self.text_encoder(text_tokens, text_segment_ids)  # (B, Lt, text_dim)
        if text_keep is not None:
            keep = per_segment_to_tokens(text_keep.astype(text.dtype), text_segment_ids)  # (B, Lt)
            text = text * keep[..., None]
        return self.dit(tokens, coords, segment_ids, timesteps, text, text_segment_ids)
