"""Shared fixtures: datasets are built once per test session, in a temporary folder.

The session also gets a fresh JAX persistent compilation cache, set through the environment before
anything imports JAX, so the many `sora-jax` subprocesses that compile the same tiny train steps
(tests/train, tests/caption, ...) compile each program once per run, not once per process. It saves
about 40 s of test_trainer.py's 180 s on 2 cores. The folder is new each run and removed after it, so
no run can pass on executables compiled from an older checkout."""
import os
import shutil
import tempfile

import numpy as np
import pytest

_CACHE_ENV = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
              "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES")


def pytest_configure(config):
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        config._sora_jax_cache = tempfile.mkdtemp(prefix="sora_jax_test_jit_cache_")
        os.environ.update(dict(zip(_CACHE_ENV, (config._sora_jax_cache, "0", "0"))))


def pytest_unconfigure(config):
    cache = getattr(config, "_sora_jax_cache", None)
    if cache:
        shutil.rmtree(cache, ignore_errors=True)
        for name in _CACHE_ENV:
            os.environ.pop(name, None)


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
