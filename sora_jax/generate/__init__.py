"""Generation: prompts and conditioning inputs to video, through one known-frame path.

- `Generator` (`pipeline.py`): `Generator.from_workdir(workdir).generate(prompt, frames, height,
  width, ...)` -> uint8 `(T, H, W, 3)`; `generate_batch`, `blend`.
- `conditioning`: image-to-video, extension, interpolation and loop bridges as `Known` frames.
- `codec`: pixel or VAE-latent frames, chosen by the run's `data.mode`.
- `io`: reading images/clips and writing MP4, GIF, PNG and the JSON sidecar; `cli`: `sora-jax generate`.
"""
from sora_jax.generate.conditioning import Known, extend, image_to_video, interpolate, loop_bridge
from sora_jax.generate.pipeline import Generator

__all__ = ["Generator", "Known", "extend", "image_to_video", "interpolate", "loop_bridge"]
