"""Shared fixtures: datasets are built once per test session, in a temporary folder."""
import numpy as np
import pytest


@pytest.fixture(scope="session")
def tiny_shapes_world(tmp_path_factory) -> str:
    """The tiny Shapes World, built with the real TFDS builder; returns its versioned directory."""
    from data_pipelines.shapes_world.builder import build

    return build(str(tmp_path_factory.mktemp("shapes_world")), "tiny")


@pytest.fixture(scope="session")
def tiny_latents(tmp_path_factory) -> str:
    """A latent-records dataset of 24 random latents of varied shapes (16 channels)."""
    from data_pipelines.latents import write_latents

    rng = np.random.default_rng(0)

    def records(count: int, offset: int):
        for i in range(count):
            t, h, w = int(rng.integers(1, 6)), 2 * int(rng.integers(1, 6)), 2 * int(rng.integers(1, 6))
            yield f"clip{offset + i:04d}", {
                "latent": rng.normal(size=(t, h, w, 16)).astype(np.float32),
                "caption_short": f"clip {offset + i}",
                "caption": f"latent clip number {offset + i} of shape {t}x{h}x{w}",
                "meta": "{}",
            }

    return write_latents(str(tmp_path_factory.mktemp("latents")), {"train": records(24, 0), "validation": records(4, 100)})
