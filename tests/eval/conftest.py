"""Probe fixtures: an untrained probe (presence already works through its membership-mass term) for
the fast tests, and, for the slow ones, a probe trained with the real trainer."""
import pytest
from flax import nnx

from sora_jax.eval.probe import Probe, ProbeConfig, ProbeReader

TEST_PROBE = ProbeConfig(frames=9, size=32, widths=(16, 32, 32), embed_dim=32, glimpse=8, glimpse_widths=(8, 16), track_frames=17)


@pytest.fixture(scope="session")
def untrained_reader() -> ProbeReader:
    """A freshly initialised probe: random slot features, presence from the mass term. It reads each
    clip once (the mirror reading doubles the cost; `test_mirrored_reading...` switches it on)."""
    return ProbeReader(Probe(TEST_PROBE, rngs=nnx.Rngs(0)), mirror=False)


@pytest.fixture(scope="session")
def probe_workdir(tmp_path_factory) -> str:
    """Workdir of a 30-step probe trained by `sora-jax train`'s loop (`experiments/probe.py:test`)."""
    from sora_jax.train.config import load_config
    from sora_jax.train.loop import train

    workdir = str(tmp_path_factory.mktemp("probe"))
    config = load_config("experiments/probe.py:test", ["steps=30", "checkpoint_every=30", "eval_every=30",
                                                      "sample_every=30", "eval_clips=48", "log_every=1"])
    train(config, workdir, log=lambda *_: None)
    return workdir
