"""Offline evaluation against Shapes World's exact ground truth (`sora-jax eval`; docs/eval.md).

- `world`: palette membership maps and the probe's fixed-size view of any clip.
- `targets`: per-colour-slot attributes (present, shape, motion, direction) from meta.
- `probe`, `probe_data`, `probe_task`: the probe network, its clips and its trainer task.
- `tracking`, `physics`, `permanence`, `consistency`: classical tracking and the metrics built on it.
- `frechet`, `vae_metrics`: Fréchet distance in probe features; VAE reconstruction quality.
- `suite` (+ `prompts_v1.jsonl`), `corruptions`, `harness`, `evaluate`, `report`, `cli`.
"""
