"""Benchmarks for sora_jax components; each runs as `python -m benchmarks.<name>` and prints one JSON line."""
