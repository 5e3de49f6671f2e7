"""`sora-jax generate` through a local argparse harness wired like `sora_jax/cli.py`: every mode,
the written files and sidecars, and one-line errors for bad input."""
import argparse
import json
import re
import sys

import pytest
from PIL import Image

from data_pipelines.shapes_world import generate_clip
from sora_jax.generate import cli as generate_cli
from sora_jax.generate import io
from sora_jax.generate.pipeline import Generator


def sora_jax(argv: list[str]) -> int:
    """What `sora_jax.cli.main` does once `generate_cli.register` is wired in."""
    parser = argparse.ArgumentParser(prog="sora-jax")
    generate_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, NotADirectoryError) as error:
        print(f"sora-jax {args.command}: error: {error}", file=sys.stderr)
        return 2


def outputs(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    clip = generate_clip(21, 9, 32, 32)["video"]
    Image.fromarray(generate_clip(22, 1, 32, 40)["video"][0]).save(root / "first.png")
    io.write_video(str(root / "clip.mp4"), clip)
    io.write_video(str(root / "other.mp4"), generate_clip(23, 9, 32, 32)["video"])
    (root / "prompts.txt").write_text("a red circle\na blue square falls\na green triangle\n")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 8)
    return root


def test_text_to_video_writes_mp4_and_sidecar(tiny_dit_workdir, tmp_path, capsys):
    out = str(tmp_path / "a.mp4")
    code = sora_jax(["generate", "--workdir", tiny_dit_workdir, "--prompt", "a red circle", "--frames", "9",
                     "--height", "24", "--width", "48", "--steps", "3", "--cfg", "2.0", "--seed", "4", "--out", out])
    assert code == 0
    video, fps = io.read_frames(out)
    assert video.shape == (9, 24, 48, 3) and fps == pytest.approx(8.0)
    info = json.load(open(out + ".json"))
    assert {k: info[k] for k in ("prompt", "seed", "steps", "cfg", "sampler", "frames", "height", "width")} == {
        "prompt": "a red circle", "seed": 4, "steps": 3, "cfg": 2.0, "sampler": "euler", "frames": 9, "height": 24,
        "width": 48}
    assert info["mode"] == "text" and info["model_mode"] == "pixel" and info["checkpoint_step"] == 20
    assert info["timings"]["sample_s"] > 0 and info["timings"]["total_s"] >= info["timings"]["sample_s"]
    assert outputs(capsys)[0]["out"] == out


@pytest.fixture
def loaded(generator, monkeypatch):
    """The session's generator stands in for loading (that path is covered above)."""
    monkeypatch.setattr(Generator, "from_workdir", classmethod(lambda cls, workdir, step=None: generator))


MODES = [
    (["--image", "{d}/first.png"], "i.gif", (9, 32, 40)),  # size from the image, frames from sample_shape
    (["--video", "{d}/clip.mp4", "--extend", "forward", "--frames", "13"], "e.mp4", (13, 32, 32)),
    (["--video", "{d}/clip.mp4", "--extend", "backward", "--frames", "13"], "b.mp4", (13, 32, 32)),
    (["--from", "{d}/first.png", "--to", "{d}/clip.mp4", "--frames", "20"], "f.gif", (20, 32, 40)),
    (["--loop", "--video", "{d}/clip.mp4"], "l.gif", (16, 32, 32)),  # 9 + a 9-frame bridge less 2 shared
    (["--loop"], "l2.gif", (16, 32, 32)),
    (["--video", "{d}/clip.mp4", "--edit-strength", "0.5"], "s.mp4", (9, 32, 32)),
    (["--video", "{d}/clip.mp4", "--blend", "{d}/other.mp4", "--edit-strength", "0.5"], "m.mp4", (9, 32, 32)),
    (["--frames", "33", "--window", "5", "--overlap", "2"], "long.mp4", (33, 32, 32)),
]


@pytest.mark.parametrize("flags,name,shape", MODES, ids=[m[1] for m in MODES])
def test_every_mode_writes_the_requested_shape(loaded, inputs, tmp_path, capsys, flags, name, shape):
    out = str(tmp_path / name)
    argv = ["generate", "--workdir", "unused", "--prompt", "shapes", "--steps", "3", "--cfg", "1", "--out", out]
    assert sora_jax(argv + [f.format(d=inputs) for f in flags]) == 0
    video, _ = io.read_frames(out)
    assert video.shape == (*shape, 3)
    assert json.load(open(out + ".json"))["frames"] == shape[0]


def test_batch_prompts_write_one_png_each(loaded, inputs, tmp_path, capsys):
    out = str(tmp_path / "batch.png")
    argv = ["generate", "--workdir", "unused", "--prompts", f"{inputs}/prompts.txt", "--steps", "3", "--cfg", "1",
            "--seed", "7", "--out", out]
    assert sora_jax(argv) == 0
    written = outputs(capsys)
    assert [w["out"] for w in written] == [str(tmp_path / f"batch_{i:03d}.png") for i in range(3)]
    sidecars = [json.load(open(w["sidecar"])) for w in written]
    assert [s["seed"] for s in sidecars] == [7, 8, 9] and sidecars[1]["prompt"] == "a blue square falls"
    assert all(io.read_frames(w["out"])[0].shape == (1, 32, 32, 3) for w in written)


BAD = [
    (["--prompt", "x", "--image", "{d}/missing.png"], "--image .*missing.png not found"),
    (["--prompt", "x", "--video", "{d}/broken.mp4", "--edit-strength", "0.5"], "cannot read --video"),
    (["--prompt", "x", "--height", "30"], "height=30 is not a multiple of 8; nearest valid: 24 or 32"),
    (["--prompt", "x", "--frames", "0"], "frames must be at least 1"),
    (["--prompt", "x", "--steps", "-3"], "--steps must be at least 1"),
    (["--prompt", "  "], "the prompt is empty"),
    (["--prompt", "x", "--sampler", "ddim"], "method must be one of"),
    (["--prompt", "x", "--image", "{d}/first.png", "--loop"], "choose one conditioning mode"),
    (["--prompt", "x", "--video", "{d}/clip.mp4"], "--video needs --extend"),
    (["--prompt", "x", "--from", "{d}/first.png"], "needs both --from and --to"),
    (["--prompt", "x", "--video", "{d}/clip.mp4", "--extend", "forward"], "--extend needs --frames"),
    (["--prompt", "x", "--video", "{d}/clip.mp4", "--edit-strength", "1.5"], "edit strength must be in"),
    (["--prompts", "{d}/prompts.txt", "--image", "{d}/first.png"], "generates from text only"),
]


@pytest.mark.parametrize("flags,message", BAD, ids=[b[1][:24] for b in BAD])
def test_bad_input_is_a_one_line_error(loaded, inputs, tmp_path, capsys, flags, message):
    argv = ["generate", "--workdir", "unused", "--steps", "3", "--cfg", "1", "--out", str(tmp_path / "x.mp4")]
    assert sora_jax(argv + [f.format(d=inputs) for f in flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sora-jax generate: error: ") and "Traceback" not in err
    assert re.search(message, err), err


def test_errors_before_any_model_is_loaded(tmp_path, capsys):
    assert generate_cli.main(["--workdir", str(tmp_path), "--prompt", "x", "--out", str(tmp_path / "a.mp4")]) == 2
    assert "is not a training workdir: no config.json" in capsys.readouterr().err
    argv = ["--workdir", str(tmp_path), "--prompt", "x", "--frames", "9", "--out", str(tmp_path / "a.png")]
    assert generate_cli.main(argv) == 2
    assert "a PNG holds one frame" in capsys.readouterr().err
    assert generate_cli.main(["--workdir", str(tmp_path), "--prompt", "x", "--out", str(tmp_path / "a.webm")]) == 2
    assert "must end in one of" in capsys.readouterr().err
