"""The denoiser the diffusion code trains and samples: a text encoder feeding the DiT.

Two text paths, chosen when the model is built:
- trainable (default): `text_tokens (B, Lt)` int ids go through the `TokenEmbeddingEncoder`, whose
  parameters train with the DiT;
- frozen (`frozen_text=True`, a pretrained encoder such as MiniLM or T5 run outside the model): the
  text input is already the encoder's embeddings, `(B, Lt, text_dim)` (float16 in packed rows); the
  model has no text encoder of its own and the DiT's text projection (`text_embed_1`, from
  `DiTConfig.text_dim` = the encoder's width to the model width) is the first layer they meet.
"""
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
    text embeddings are zeroed, which is also exactly the unconditional input at sampling time. With
    a frozen encoder the zeroed embeddings are the encoder's outputs, so training's dropout and
    sampling's unconditional branch see the same zeros.

    Args:
      dit_config: the DiT; its `text_dim` is the text width (the frozen encoder's `dim` when frozen).
      vocab_size, max_text_len: the trainable token encoder's vocabulary and positions.
      frozen_text: True when the text input is precomputed embeddings (no trainable text encoder).
    """

    def __init__(self, dit_config: DiTConfig, vocab_size: int = 258, max_text_len: int = 512, *,
                 frozen_text: bool = False, rngs: nnx.Rngs):
        self.frozen_text = frozen_text
        self.text_encoder = None if frozen_text else TokenEmbeddingEncoder(vocab_size, dit_config.text_dim,
                                                                            max_text_len, rngs=rngs)
        self.dit = DiT(dit_config, rngs=rngs)

    def embed_text(self, text_tokens: jax.Array, text_segment_ids: jax.Array) -> jax.Array:
        """Text embeddings `(B, Lt, text_dim)` float32 of the text input (ids, or embeddings when frozen)."""
        text_dim = self.dit.config.text_dim
        if self.text_encoder is not None:
            if text_tokens.ndim != 2 or jnp.issubdtype(text_tokens.dtype, jnp.floating):
                raise ValueError(f"this model trains its own text encoder: the text input must be token ids (B, Lt), "
                                 f"got {text_tokens.dtype} {text_tokens.shape} (embeddings from a frozen encoder?)")
            return self.text_encoder(text_tokens, text_segment_ids)  # (B, Lt, text_dim)
        if text_tokens.ndim != 3 or text_tokens.shape[-1] != text_dim:
            raise ValueError(f"this model reads frozen-encoder embeddings (B, Lt, {text_dim}); got the text input "
                             f"{text_tokens.dtype} {text_tokens.shape} (token ids? set data.text_encoder to match)")
        return text_tokens.astype(jnp.float32)  # (B, Lt, text_dim)

    def __call__(self, tokens, coords, segment_ids, timesteps, text_tokens, text_segment_ids, text_keep=None):
        """Velocity `(B, L, patch_dim)`; arguments as `DiT.__call__`, the text given as token ids
        `(B, Lt)` (trainable encoder) or as a frozen encoder's embeddings `(B, Lt, text_dim)`."""
        text = self.embed_text(text_tokens, text_segment_ids)  # (B, Lt, text_dim)
        if text_keep is not None:
            keep = per_segment_to_tokens(text_keep.astype(text.dtype), text_segment_ids)  # (B, Lt)
            text = text * keep[..., None]  # (B, Lt, text_dim)
        return self.dit(tokens, coords, segment_ids, timesteps, text, text_segment_ids)
