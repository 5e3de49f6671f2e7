"""Data side of sora_jax: Shapes World, real-video ingest, TFDS builders and the Grain pipeline."""
