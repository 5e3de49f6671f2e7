"""The Colab demo notebook, executed on CPU: its code cells run in order as plain Python (nbformat
and nbclient are not dependencies), skipping the install-only cell, with test parameters injected
after the `parameters` cell as papermill does."""
import json
import os

import numpy as np
import pytest

from sora_jax.generate.io import read_frames
from tests.generate.conftest import ROOT, TINY_DIT

NOTEBOOK = os.path.join(ROOT, "notebooks", "colab_tpu_demo.ipynb")


def code_cells() -> list[tuple[list[str], str]]:
    """(tags, source) of every code cell except those tagged `install`."""
    with open(NOTEBOOK) as f:
        notebook = json.load(f)
    assert notebook["nbformat"] == 4 and notebook["metadata"]["accelerator"] == "TPU"
    cells = [(c.get("metadata", {}).get("tags", []), "".join(c["source"])) for c in notebook["cells"]
             if c["cell_type"] == "code"]
    return [(tags, source) for tags, source in cells if "install" not in tags]


def run_notebook(parameters: dict) -> dict:
    """Executes the notebook's code cells in one namespace; returns the namespace."""
    namespace = {"__name__": "__main__"}
    for index, (tags, source) in enumerate(code_cells()):
        exec(compile(source, f"{NOTEBOOK}:cell{index}", "exec"), namespace)  # noqa: S102
        if "parameters" in tags:
            namespace.update(parameters)
    return namespace


def test_cells_are_plain_python_outside_the_install_cell():
    cells = code_cells()
    assert len(cells) >= 5 and any("parameters" in tags for tags, _ in cells)
    for _, source in cells:
        assert not any(line.lstrip().startswith(("!", "%")) for line in source.splitlines())


def check_outputs(namespace: dict, frames: int, height: int, width: int) -> None:
    assert namespace["video"].shape == (frames, height, width, 3)
    np.testing.assert_array_equal(namespace["i2v"][0], namespace["first"])  # pixel mode: exact
    for name in ("mp4", "gif", "i2v_gif"):
        assert read_frames(namespace[name])[0].shape[0] == frames


def test_notebook_loads_a_checkpoint_and_generates(tiny_dit_workdir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SORA_JAX_DATA", os.environ.get("SORA_JAX_DATA", str(tmp_path / "data")))
    namespace = run_notebook(dict(WORKDIR=tiny_dit_workdir, OUT_DIR=str(tmp_path / "out"), TRAIN_STEPS=20,
                                  SAMPLE_STEPS=3, CFG=1.0, FRAMES=9, HEIGHT=32, WIDTH=48))
    assert f"found a checkpoint at step 20 in {tiny_dit_workdir}" in capsys.readouterr().out
    check_outputs(namespace, 9, 32, 48)


@pytest.mark.slow
def test_notebook_trains_then_generates(tmp_path, monkeypatch):
    """The training branch (about a minute on 8 simulated devices, hence slow)."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("SORA_JAX_DATA", os.environ.get("SORA_JAX_DATA", str(tmp_path / "data")))
    shrink = [o for o in TINY_DIT if not o.startswith(("--config.steps", "--config.global_batch_size",
                                                       "--config.checkpoint_every"))]
    namespace = run_notebook(dict(WORKDIR=str(tmp_path / "run"), OUT_DIR=str(tmp_path / "out"), TRAIN_STEPS=2,
                                  OVERRIDES=shrink, SAMPLE_STEPS=2, CFG=2.0, FRAMES=5, HEIGHT=32, WIDTH=32))
    assert namespace["trained_steps"](str(tmp_path / "run")) == 2 and namespace["generator"].step == 2
    check_outputs(namespace, 5, 32, 32)
