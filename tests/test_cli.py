"""The `sora-jax` command end to end: build, stats, show, ingest, and clear errors for bad input."""
import json
import os

import av
import numpy as np
import pytest
from PIL import Image

from sora_jax.cli import main


def last_json(capsys) -> dict:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def test_build_stats_show(tmp_path, capsys):
    assert main(["data", "build", "shapes_world", "--config", "tiny", "--out", str(tmp_path / "d")]) == 0
    dataset_dir = last_json(capsys)["dataset_dir"]
    assert dataset_dir.endswith(os.path.join("shapes_world", "tiny", "1.0.0"))
    assert main(["data", "stats", "--data", dataset_dir, "--batches", "4", "--batch-size", "2"]) == 0
    stats = last_json(capsys)
    assert stats["rows"] == 8 and 0.5 < stats["token_fill"] <= 1.0 and stats["segments_per_row"] >= 1
    assert main(["data", "show", "--data", dataset_dir, "--count", "6", "--out", str(tmp_path / "show")]) == 0
    shown = last_json(capsys)
    assert shown["clips"] == 6
    sheet = Image.open(shown["contact_sheet"])
    assert sheet.size[0] == 4 * 160 and sheet.size[1] > 2 * 160
    # GIF writers merge identical consecutive frames (static scenes), so only some GIFs animate.
    assert shown["gifs"] and max(Image.open(gif).n_frames for gif in shown["gifs"]) > 1


def write_mp4(path, frames=6, size=(32, 48), fps=6):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((*size, 3), 30 * i, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_ingest_reports_counts(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_mp4(videos / "good.mp4")
    (videos / "good.txt").write_text("a grey square fading in")
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "empty.txt").write_text("nothing")
    assert main(["data", "ingest", "--videos", str(videos), "--out", str(tmp_path / "out")]) == 0
    report = last_json(capsys)
    assert report["files_read"] == 2 and report["records_written"] == 1
    assert report["counts_by_reason"] == {"empty_file": 1}


def test_bad_input_is_one_line_error(tmp_path, capsys):
    assert main(["data", "stats", "--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "not a built dataset" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["data", "build", "shapes_world", "--config", "tiny"])  # --out is required
    assert main(["data", "build", "shapes_world", "--config", "huge", "--out", str(tmp_path)]) == 2
    assert "unknown shapes_world config 'huge'" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_end_to_end_in_a_few_steps(tmp_path):
    """`sora-jax demo` with 2-step trainings: every stage runs and writes its outputs; the samples sit
    next to real clips of the same shape."""
    import subprocess
    import sys

    out = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, as `make demo`
    command = [sys.executable, "-m", "sora_jax.cli", "demo", "--out", str(out), "--vae-steps", "2", "--dit-steps", "2",
               "--samples", "2", "--sample-steps", "2"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "latents" / "encode_report.json").exists() and (out / "dit" / "checkpoints").exists()
    gif = Image.open(out / "samples" / "sample_0.gif")
    assert gif.n_frames in (9, 17)  # the held-out clip's own length
    assert (out / "samples" / "contact_sheet.png").exists()
