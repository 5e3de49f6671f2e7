"""Text side: tokenizers and text encoders behind one interface.

`sora_jax.text.interface.get_text_encoder(spec)` returns MiniLM (`"minilm"`), a T5/umT5 folder
(`"t5:DIR"`) or the tiny trainable path (`"tiny"`); see `interface.py` and `docs/text.md`. The
submodules are imported on use (they pull in JAX/Flax), so `import sora_jax.text` stays light.
"""
