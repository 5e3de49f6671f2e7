"""Model FLOPs of the DiT, with attention counted per segment (packed rows do less attention work).

Counts multiply-adds as 2 FLOPs, matmuls only (norms, activations and RoPE are a few percent at
most), the convention MFU figures use. A train step is 3x the forward: forward, and backward for
activations and for weights.
"""
from __future__ import annotations

from typing import Sequence

from sora_jax.models.dit.config import DiTConfig


def forward_flops(c: DiTConfig, segment_tokens: Sequence[int], segment_text: Sequence[int]) -> float:
    """Forward FLOPs of one packed row whose segments have these video and text token counts.

    Padding is not counted: MFU should measure useful work.
    """
    tokens, text = sum(segment_tokens), sum(segment_text)
    d, f = c.dim, c.mlp_dim
    per_token_block = 2 * (4 * d * d + 2 * d * d + 2 * d * f)  # self-attn qkvo, cross-attn q+o, MLP
    per_text_block = 2 * (2 * d * d)  # cross-attn k and v from text tokens
    attention = sum(2 * 2 * n * n * d + 2 * 2 * n * m * d for n, m in zip(segment_tokens, segment_text))
    blocks = c.depth * (tokens * per_token_block + text * per_text_block + attention)
    embed = 2 * tokens * (c.patch_dim * d + c.freq_dim * d + d * d + 6 * d * d + d * c.patch_dim)
    text_embed = 2 * text * (c.text_dim * d + d * d)
    return float(blocks + embed + text_embed)


def train_step_flops(c: DiTConfig, rows: Sequence[tuple[Sequence[int], Sequence[int]]]) -> float:
    """FLOPs of a train step over `rows`, each `(segment_tokens, segment_text)`."""
    return 3.0 * sum(forward_flops(c, tokens, text) for tokens, text in rows)
