"""Diffusion Transformer over spacetime patches."""
