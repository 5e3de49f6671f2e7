"""Text side: tokenizers and (later) text encoders behind one interface."""
