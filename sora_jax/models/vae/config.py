"""Configuration of the spatiotemporal causal VAE: a frozen dataclass, presets and validation.

The encoder is a stack of `len(widths)` levels; between consecutive levels sits one resampling
stage, so there are `len(widths) - 1` stages. Space is halved in the FIRST `log2(space_factor)`
stages (high-resolution levels are the expensive ones, so they come first, as in Wan 2.1) and time
in the LAST `log2(time_factor)` stages (early levels keep full temporal detail, also as in Wan 2.1).
The decoder mirrors the schedule.
"""
from __future__ import annotations

import dataclasses
import math

TIME_FACTORS = (1, 2, 4, 8)
SPACE_FACTORS = (4, 8, 16)
SIZE_POLICIES = ("error", "pad")


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Every knob of the VAE. Build with `get_vae_config(name, **overrides)`; invalid values raise
    ValueError naming the field.

    Attributes:
      widths: channel width of each encoder level, highest resolution first (decoder mirrors it).
      num_res_blocks: residual blocks per encoder level (the decoder uses one more, as Wan 2.1).
      latent_channels: channels of the latent `(B, t, h, w, c)`.
      time_factor: temporal compression; T frames -> 1 + (T - 1) / time_factor latent frames.
      space_factor: spatial compression of height and width.
      in_channels: pixel channels (3 for RGB).
      mid_attention: single-head spatial self-attention (per frame, so still causal) in the middle
        blocks of encoder and decoder.
      logvar_min, logvar_max: clip range of the posterior log-variance.
      shortcuts: parameter-free residual shortcuts around every resampling stage and the latent
        bottleneck (DC-AE, Chen et al. 2024: average when halving, repeat when doubling; the bottleneck
        one needs widths[-1] to be a multiple of latent_channels and is skipped otherwise). Off gives
        Wan 2.1's layout exactly; on trains several times faster at the same compression.
      logvar_init: initial posterior log-variance (bias of the encoder's last layer). At 0 the
        training draws start with unit-variance noise that drowns the still-small latent means and
        slows early training several-fold; a small start lets reconstruction learn first while the
        KL term raises the variance where the decoder tolerates it.
      norm_eps: epsilon of the channel RMS norms.
      size_policy: "error" (reject sizes that do not fit the factors) or "pad" (pad, then crop back).
      chunk_latent_frames: latent frames per chunk in chunked encode/decode (after frame 0).
      tile_size, tile_overlap: spatial tiling in pixels (multiples of space_factor).
    """

    widths: tuple[int, ...] = (96, 192, 384, 384)
    num_res_blocks: int = 2
    latent_channels: int = 16
    time_factor: int = 4
    space_factor: int = 8
    in_channels: int = 3
    mid_attention: bool = True
    logvar_min: float = -30.0
    logvar_max: float = 20.0
    logvar_init: float = -6.0
    shortcuts: bool = True
    norm_eps: float = 1e-6
    size_policy: str = "error"
    chunk_latent_frames: int = 2
    tile_size: int = 256
    tile_overlap: int = 64

    def __post_init__(self):
        object.__setattr__(self, "widths", tuple(self.widths))
        _validate(self)

    @property
    def num_stages(self) -> int:
        """Resampling stages between levels."""
        return len(self.widths) - 1

    @property
    def space_stages(self) -> tuple[bool, ...]:
        """Per encoder stage: whether it halves height and width."""
        count = int(math.log2(self.space_factor))
        return tuple(i < count for i in range(self.num_stages))

    @property
    def time_stages(self) -> tuple[bool, ...]:
        """Per encoder stage: whether it halves (causally) the number of frames after frame 0."""
        count = int(math.log2(self.time_factor))
        return tuple(i >= self.num_stages - count for i in range(self.num_stages))


def _validate(c: VAEConfig) -> None:
    if not c.widths or any(not isinstance(w, int) or w <= 0 for w in c.widths):
        raise ValueError(f"widths must be a non-empty tuple of positive ints, got {c.widths}")
    if any(w % 2 for w in c.widths[1:]):
        raise ValueError(f"widths after the first must be even (decoder upsamplers halve them), got {c.widths}")
    if c.time_factor not in TIME_FACTORS:
        raise ValueError(f"time_factor must be one of {TIME_FACTORS}, got {c.time_factor}")
    if c.space_factor not in SPACE_FACTORS:
        raise ValueError(f"space_factor must be one of {SPACE_FACTORS}, got {c.space_factor}")
    needed = max(int(math.log2(c.time_factor)), int(math.log2(c.space_factor)))
    if c.num_stages < needed:
        raise ValueError(
            f"widths has {len(c.widths)} levels ({c.num_stages} stages) but time_factor={c.time_factor} and "
            f"space_factor={c.space_factor} need {needed} stages: give widths at least {needed + 1} entries"
        )
    for name in ("num_res_blocks", "latent_channels", "in_channels", "chunk_latent_frames"):
        if not isinstance(getattr(c, name), int) or getattr(c, name) < 1:
            raise ValueError(f"{name} must be a positive int, got {getattr(c, name)!r}")
    if not c.logvar_min < c.logvar_max:
        raise ValueError(f"logvar_min must be < logvar_max, got {c.logvar_min} and {c.logvar_max}")
    if not c.norm_eps > 0:
        raise ValueError(f"norm_eps must be > 0, got {c.norm_eps}")
    if c.size_policy not in SIZE_POLICIES:
        raise ValueError(f"size_policy must be one of {SIZE_POLICIES}, got {c.size_policy!r}")
    if c.tile_size <= 0 or c.tile_size % c.space_factor:
        raise ValueError(f"tile_size must be a positive multiple of space_factor={c.space_factor}, got {c.tile_size}")
    if c.tile_overlap < 0 or c.tile_overlap % c.space_factor or c.tile_overlap >= c.tile_size:
        raise ValueError(
            f"tile_overlap must be a multiple of space_factor={c.space_factor} in [0, tile_size), got {c.tile_overlap}"
        )


PRESETS: dict[str, dict] = {
    # Trains on a laptop CPU in minutes; same structure as `base`.
    "tiny": dict(widths=(16, 32, 32, 32), num_res_blocks=1, tile_size=64, tile_overlap=32),
    # Accelerators: the widths of Wan 2.1's VAE (96/192/384/384, two blocks per level).
    "base": dict(widths=(96, 192, 384, 384), num_res_blocks=2),
}


def get_vae_config(name: str = "base", **overrides) -> VAEConfig:
    """The preset `name` ("tiny" or "base") with `overrides` applied, validated.

    Unknown preset names and unknown override fields raise ValueError naming them.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown VAE config {name!r}; known: {sorted(PRESETS)}")
    fields = {f.name for f in dataclasses.fields(VAEConfig)}
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown VAE config fields {sorted(unknown)}; known: {sorted(fields)}")
    return VAEConfig(**(PRESETS[name] | overrides))
