"""Reading inputs and writing MP4 / GIF / PNG / sidecars."""
import json

import numpy as np
import pytest

from data_pipelines.shapes_world import generate_clip
from sora_jax.generate import io


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_mp4_is_h264_and_round_trips(tmp_path):
    import av

    clip = generate_clip(2, 9, 32, 48)["video"]
    path = io.write_video(str(tmp_path / "clip.mp4"), clip, fps=8)
    with av.open(path) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert float(stream.average_rate) == pytest.approx(8.0)
    video, fps = io.read_frames(path)
    assert video.shape == clip.shape and fps == pytest.approx(8.0)
    # 4:2:0 halves colour resolution: on 32x48 coloured shapes even lossless H.264 (crf 0) reads back
    # at 30.2 dB and crf 18 at 29.7 dB (35 dB at 128x192), so 28 dB bounds the codec, not a bug.
    assert psnr(video, clip) > 28.0


def test_odd_sizes_are_padded_for_yuv420(tmp_path):
    clip = generate_clip(2, 3, 33, 47)["video"]
    video, _ = io.read_frames(io.write_video(str(tmp_path / "odd.mp4"), clip))
    assert video.shape == (3, 34, 48, 3)
    assert psnr(video[:, :33, :47], clip) > 28.0


def test_gif_and_png_are_lossless_for_few_colours(tmp_path):
    clip = np.zeros((4, 16, 24, 3), np.uint8)
    for i in range(4):
        clip[i, :, 6 * i : 6 * i + 6] = (200, 40, 10)  # a red bar moving right
    video, _ = io.read_frames(io.write_video(str(tmp_path / "bar.gif"), clip, fps=4))
    np.testing.assert_array_equal(video, clip)
    image, fps = io.read_frames(io.write_video(str(tmp_path / "one.png"), clip[:1]))
    np.testing.assert_array_equal(image, clip[:1])
    assert fps == 0.0
    with pytest.raises(ValueError, match="a PNG holds one frame; 4 frames need .mp4 or .gif"):
        io.write_video(str(tmp_path / "many.png"), clip)
    with pytest.raises(ValueError, match="must end in one of"):
        io.write_video(str(tmp_path / "clip.avi"), clip)


def test_fit_frames_covers_and_crops_the_centre():
    frame = np.zeros((1, 40, 80, 3), np.uint8)
    frame[:, :, :40] = (255, 0, 0)
    frame[:, :, 40:] = (0, 0, 255)
    fitted = io.fit_frames(frame, 32, 32)  # scaled to 32x64, then the middle 32 columns kept
    assert fitted.shape == (1, 32, 32, 3)
    assert (fitted[0, :, :14, 0] > 240).all() and (fitted[0, :, 18:, 2] > 240).all()
    assert io.fit_frames(frame, 40, 80) is frame


def test_bad_inputs_and_sidecar(tmp_path):
    with pytest.raises(FileNotFoundError, match="--image .*missing.png not found"):
        io.read_frames(str(tmp_path / "missing.png"), "--image")
    (tmp_path / "junk.mp4").write_bytes(b"\x00\x01 not a video at all")
    with pytest.raises(ValueError, match="cannot read --video .*junk.mp4"):
        io.read_frames(str(tmp_path / "junk.mp4"), "--video")
    (tmp_path / "prompts.txt").write_text("a red circle\n\n# skipped\n  a blue square  \n")
    assert io.read_prompts(str(tmp_path / "prompts.txt")) == ["a red circle", "a blue square"]
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    with pytest.raises(ValueError, match="has no prompts"):
        io.read_prompts(str(tmp_path / "empty.txt"))
    path = io.write_sidecar(str(tmp_path / "out.mp4"), {"seed": np.int64(3), "shape": np.array([9, 32, 32])})
    assert path.endswith("out.mp4.json") and json.load(open(path)) == {"seed": 3, "shape": [9, 32, 32]}
