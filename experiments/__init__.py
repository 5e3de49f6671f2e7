"""Experiment configs: `get_config(arg)` files, one per stage, run as `--config experiments/X.py:variant`."""
