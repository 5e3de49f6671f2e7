"""Host batches onto the mesh: each process contributes its local rows to one global array."""
from __future__ import annotations

import jax
import numpy as np

PIXEL_SCALE = 127.5


def model_inputs(batch: dict) -> dict:
    """Host-side conversion of a packed batch to what the model eats: float tokens in [-1, 1] for
    pixel mode (uint8 tokens), float latents unchanged, and no bookkeeping-only fields."""
    out = {k: v for k, v in batch.items() if k != "segment_record"}
    tokens = out["tokens"]
    if tokens.dtype == np.uint8:
        out["tokens"] = tokens.astype(np.float32) / PIXEL_SCALE - 1.0  # (B, L, D)
    return out


def to_global(batch: dict, shardings: dict) -> dict:
    """Assembles global arrays from this process's rows (`jax.make_array_from_process_local_data`)."""
    return {k: jax.make_array_from_process_local_data(shardings[k], np.asarray(v)) for k, v in batch.items()}
