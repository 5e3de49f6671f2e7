"""DiT sizes, from a CPU-test `tiny` to a Wan-2.1-1.3B-shaped model; versions by config, one module."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch", "dots_attention")


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """Shape and execution choices of the Diffusion Transformer.

    The layout follows Wan 2.1's DiT (adaLN-Zero modulation table per block, RMS-normalised q/k
    across heads, affine norm before cross-attention, tanh-GELU MLP, 3D RoPE with the head dim split
    t : h : w = d - 4(d//6) : 2(d//6) : 2(d//6)), so its public weights map onto this module.
    """

    dim: int = 64
    depth: int = 2
    heads: int = 4
    mlp_dim: int = 128
    in_channels: int = 16  # latent channels (3 in pixel mode)
    patch: tuple[int, int, int] = (1, 2, 2)
    text_dim: int = 64  # width of the text encoder's embeddings
    freq_dim: int = 256  # sinusoidal timestep features
    rope_theta: float = 10000.0
    eps: float = 1e-6
    scan_layers: bool = True
    remat: str = "none"  # one of REMAT_POLICIES
    dtype: str = "float32"  # compute dtype; parameters stay float32
    attention: str = "auto"  # see sora_jax.models.attention

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"head_dim {self.head_dim} must be even and at least 6 for 3D RoPE")
        if min(self.patch) < 1 or len(self.patch) != 3:
            raise ValueError(f"patch must be three positive ints, got {self.patch}")
        if self.remat not in REMAT_POLICIES:
            raise ValueError(f"remat must be one of {REMAT_POLICIES}, got {self.remat!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")
        if min(self.dim, self.depth, self.mlp_dim, self.in_channels, self.text_dim) < 1:
            raise ValueError("dim, depth, mlp_dim, in_channels and text_dim must be positive")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def patch_dim(self) -> int:
        return self.patch[0] * self.patch[1] * self.patch[2] * self.in_channels

    @property
    def compute_dtype(self):
        return DTYPES[self.dtype]


PRESETS = {
    "tiny": dict(dim=64, depth=2, heads=4, mlp_dim=128, text_dim=64),
    "S": dict(dim=384, depth=12, heads=6, mlp_dim=1536, text_dim=384),
    "B": dict(dim=768, depth=12, heads=12, mlp_dim=3072, text_dim=768),
    "L": dict(dim=1024, depth=24, heads=16, mlp_dim=4096, text_dim=1024),
    "XL": dict(dim=1152, depth=28, heads=16, mlp_dim=4608, text_dim=1152),
    # Wan 2.1 T2V-1.3B's transformer shape (about 1.3B parameters with a 4096-wide umT5 text input).
    "1B": dict(dim=1536, depth=30, heads=12, mlp_dim=8960, text_dim=4096),
}


def get_dit_config(name: str = "tiny", **overrides) -> DiTConfig:
    """A preset (`tiny`, `S`, `B`, `L`, `XL`, `1B`) with field overrides; bad values raise ValueError."""
    if name not in PRESETS:
        raise ValueError(f"unknown DiT preset {name!r}; known: {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(DiTConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown DiT config fields {sorted(unknown)}")
    return DiTConfig(**(PRESETS[name] | overrides))
