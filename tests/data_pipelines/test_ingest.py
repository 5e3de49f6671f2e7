"""video_folder ingest: real files in, exact report counts, records decoded back to the clip contract.

Resampling rule under test (decode.py): output tick k sits at k / target_fps seconds; it takes the
source frame with the nearest timestamp (ties to the earlier frame) and ticks run while inside the
source duration. A 12-frame 12 fps clip (1.0 s) at 8 fps gives ticks 0, .125, ..., .875 -> 8
frames from source frames [0, 1, 3, 4, 6, 7, 9, 10] (.125 is a tie between 1/12 and 2/12 -> 1).
"""
import hashlib
import io
import json
import shutil

import av
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from data_pipelines.video_folder.decode import VideoDecodeError, decode_record, decode_video, probe
from data_pipelines.video_folder.ingest import IngestConfig, derive_caption_short, run_ingest

BACKGROUND = (30, 60, 200)
SQUARE = (230, 40, 40)
H, W = 32, 48
CONFIG = {"target_fps": 8.0, "max_seconds": 0.5, "max_side": 24}
MP4_CAPTION = "A red square slides right across a blue field. It moves two pixels per frame."
WEBM_CAPTION = "The same red square, encoded as webm."
# 12 fps -> 8 fps, nearest timestamp with ties to the earlier frame (see module docstring).
SOURCES_AT_8FPS = [0, 1, 3, 4, 6, 7, 9, 10]


def square_frames(n: int) -> list[np.ndarray]:
    """Frame i: blue field with a 16x16 red square whose left edge is at x = 2i (H, W, 3)."""
    frames = []
    for i in range(n):
        frame = np.empty((H, W, 3), np.uint8)
        frame[:] = BACKGROUND
        frame[8:24, 2 * i : 2 * i + 16] = SQUARE
        frames.append(frame)
    return frames


def square_index(frame: np.ndarray) -> int:
    """Source frame index recovered from the square's left edge along row 16."""
    red = frame[16, :, 0] > 128  # (W,)
    return int(np.argmax(red)) // 2


def encode_video(fmt: str, codec: str, frames: list[np.ndarray], fps: int, rotation: int = 0) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def encode_image(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def encode_gif(frames: list[np.ndarray], frame_ms: int) -> bytes:
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], duration=frame_ms, loop=0)
    return buffer.getvalue()


def encode_audio_only() -> bytes:
    """An mp4 holding one AAC frame of silence and no video stream."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        silence = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        silence.sample_rate, silence.pts = 16000, 0
        container.mux(stream.encode(silence))
        container.mux(stream.encode())
    return buffer.getvalue()


def webm_codec() -> str:
    for name in ("libvpx-vp9", "libvpx"):
        try:
            av.Codec(name, "w")
            return name
        except (av.FFmpegError, ValueError):
            continue
    pytest.skip("this PyAV build has no VP8/VP9 encoder")


@pytest.fixture(scope="module")
def video_tree(tmp_path_factory):
    """A folder of good and bad inputs; returns (videos_dir, captions_file, original bytes by key)."""
    root = tmp_path_factory.mktemp("videos")
    mp4 = encode_video("mp4", "libx264", square_frames(12), fps=12)
    halves = np.zeros((40, 64, 3), np.uint8)  # (H, W, 3) left red, right blue
    halves[:, :32] = (255, 0, 0)
    halves[:, 32:] = (0, 0, 255)
    files = {
        "clips/square.mp4": mp4,
        "clips/square.webm": encode_video("webm", webm_codec(), square_frames(12), fps=12),
        "anim.gif": encode_gif(square_frames(6), frame_ms=100),
        "still.png": encode_image(halves, "PNG"),
        "photo.jpg": encode_image(np.full((32, 48, 3), (200, 180, 20), np.uint8), "JPEG", quality=95),
        "bad/empty.mp4": b"",
        "bad/truncated.mp4": mp4[: int(len(mp4) * 0.4)],
        "bad/notavideo.mp4": b"this is a plain text file, not an mp4\n" * 20,
        "bad/badcaption.mp4": mp4,
        "bad/nocaption.mp4": mp4,
        "bad/strip.png": encode_image(np.zeros((16, 4000, 3), np.uint8), "PNG"),
        "bad/tiny.png": encode_image(np.zeros((8, 8, 3), np.uint8), "PNG"),
        "bad/notes.csv": b"a,b\n1,2\n",
        "README.txt": b"a stray text file with no media file of the same stem\n",
    }
    sidecars = {
        "clips/square.txt": MP4_CAPTION.encode(),  # shared stem: captions the webm too, but jsonl wins
        "anim.txt": "Un carré rouge glisse vers la droite.\n".encode(),
        "still.txt": b"Red and blue halves.",
        "photo.txt": b"A mustard yellow card.",
        "bad/empty.txt": b"empty", "bad/truncated.txt": b"truncated", "bad/notavideo.txt": b"text",
        "bad/badcaption.txt": b"\xff\xfebad utf-16 caption",
        "bad/strip.txt": b"strip", "bad/tiny.txt": b"tiny",
    }
    for rel, data in {**files, **sidecars}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    captions_file = root / "captions.jsonl"
    lines = [
        {"file": "clips/square.webm", "caption": WEBM_CAPTION, "caption_short": "red square webm"},
        {"file": "gone.mp4", "caption": "names no file"},
    ]
    captions_file.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return root, captions_file, files


@pytest.fixture(scope="module")
def ingested(video_tree, tmp_path_factory):
    videos_dir, captions_file, files = video_tree
    out_dir = tmp_path_factory.mktemp("out")
    report = run_ingest(videos_dir, out_dir, captions_file=captions_file, config=CONFIG)
    return report, out_dir


def read_records(dataset_dir: str) -> dict[str, dict]:
    source = tfds.builder_from_directory(dataset_dir).as_data_source(split="train")
    records = [source[i] for i in range(len(source))]
    return {json.loads(r["meta"])["source_path"]: r for r in records}


def test_report_counts_every_file(ingested):
    report, out_dir = ingested
    assert report["files_read"] == 14
    assert report["records_written"] == 5
    assert report["files_read"] == report["records_written"] + len(report["rejected"])
    assert report["counts_by_reason"] == {
        "caption_not_utf8": 1, "empty_file": 1, "extreme_aspect": 1, "missing_caption": 1,
        "too_small": 1, "truncated": 1, "undecodable": 1, "unsupported_extension": 2,
    }
    by_path = {r["path"]: r["reason"] for r in report["rejected"]}
    assert by_path == {
        "README.txt": "unsupported_extension", "bad/badcaption.mp4": "caption_not_utf8",
        "bad/empty.mp4": "empty_file", "bad/nocaption.mp4": "missing_caption",
        "bad/notavideo.mp4": "undecodable", "bad/notes.csv": "unsupported_extension",
        "bad/strip.png": "extreme_aspect", "bad/tiny.png": "too_small", "bad/truncated.mp4": "truncated",
    }
    assert report["captions_without_file"] == ["gone.mp4"]
    assert report["config"] == {**IngestConfig().__dict__, **CONFIG}
    assert json.loads((out_dir / "ingest_report.json").read_text()) == report
    assert report["dataset_dir"] == str(out_dir / "video_folder" / "1.0.0")


def test_records_keep_original_bytes_and_captions(ingested, video_tree):
    report, _ = ingested
    _, _, files = video_tree
    records = read_records(report["dataset_dir"])
    assert sorted(records) == ["anim.gif", "clips/square.mp4", "clips/square.webm", "photo.jpg", "still.png"]
    for key, record in records.items():
        assert record["video_encoded"] == files[key]  # stored still encoded, byte for byte
        assert record["format"].decode() == key.rsplit(".", 1)[1]
        meta = json.loads(record["meta"])
        assert meta["sha256"] == hashlib.sha256(files[key]).hexdigest()
        assert (meta["target_fps"], meta["max_side"]) == (8.0, 24)
    mp4 = records["clips/square.mp4"]
    assert mp4["caption"].decode() == MP4_CAPTION
    assert mp4["caption_short"].decode() == "A red square slides right across a blue field"
    webm = records["clips/square.webm"]  # captions.jsonl wins over the shared clips/square.txt
    assert (webm["caption"].decode(), webm["caption_short"].decode()) == (WEBM_CAPTION, "red square webm")
    assert records["anim.gif"]["caption"].decode() == "Un carré rouge glisse vers la droite."
    meta = json.loads(mp4["meta"])
    assert {k: meta[k] for k in ("frames", "fps", "height", "width", "duration_s", "codec")} == dict(
        frames=12, fps=12.0, height=32, width=48, duration_s=1.0, codec="h264")
    assert meta["max_frames"] == 4  # max_seconds 0.5 at 8 fps: ticks 0, .125, .25, .375
    info = tfds.builder_from_directory(report["dataset_dir"]).info
    assert info.metadata["target_fps"] == 8.0 and info.metadata["max_side"] == 24


@pytest.mark.parametrize("key", ["clips/square.mp4", "clips/square.webm"])
def test_decode_record_resamples_and_keeps_colours(ingested, key):
    records = read_records(ingested[0]["dataset_dir"])
    # Explicit settings override the stored ones (max_seconds 0.5, max_side 24).
    clip = decode_record(records[key], target_fps=8.0, max_frames=12, max_side=48)
    video = clip["video"]
    assert video.dtype == np.uint8 and video.shape == (8, H, W, 3)
    assert [square_index(frame) for frame in video] == SOURCES_AT_8FPS
    for frame, source in zip(video, SOURCES_AT_8FPS):  # lossy codec: tolerance, away from edges
        np.testing.assert_allclose(frame[16, 2 * source + 8], SQUARE, atol=24)
        np.testing.assert_allclose(frame[28, 44], BACKGROUND, atol=24)
    meta = json.loads(clip["meta"])
    assert (meta["clip_frames"], meta["clip_fps"], meta["source_path"]) == (8, 8.0, key)
    assert isinstance(clip["caption"], str) and isinstance(clip["caption_short"], str)


def test_decode_record_falls_back_to_stored_settings(ingested):
    """Unset (None) options use the ingest config in meta: 8 fps, max_seconds 0.5, max_side 24."""
    records = read_records(ingested[0]["dataset_dir"])
    for key, expected_shape in [
        ("clips/square.mp4", (4, 16, 24, 3)),  # ticks 0, .125, .25, .375 < 0.5 s; 48x32 -> 24x16
        ("anim.gif", (4, 16, 24, 3)),  # 0.6 s gif has 5 ticks, capped at 4
        ("still.png", (1, 15, 24, 3)),  # 64x40 -> 24x15, T=1
        ("photo.jpg", (1, 16, 24, 3)),
    ]:
        clip = decode_record(records[key], target_fps=None, max_frames=None, max_side=None)
        assert clip["video"].shape == expected_shape, key
        assert json.loads(records[key]["meta"])["max_frames"] == (4 if expected_shape[0] > 1 else None)
    # Overriding the rate keeps the stored duration: 0.5 s at 12 fps is 6 frames.
    assert decode_record(records["clips/square.mp4"], target_fps=12.0)["video"].shape == (6, 16, 24, 3)
    still = decode_record(records["still.png"], max_side=64)["video"]
    assert still.shape == (1, 40, 64, 3)
    assert (still[0, :, :32] == (255, 0, 0)).all() and (still[0, :, 32:] == (0, 0, 255)).all()
    photo = decode_record(records["photo.jpg"], max_side=48)["video"]
    assert photo.shape == (1, 32, 48, 3)
    np.testing.assert_allclose(photo[0].reshape(-1, 3).mean(0), (200, 180, 20), atol=6)  # (3,) mean RGB


def test_gif_resampling_follows_timestamps(video_tree):
    gif = video_tree[2]["anim.gif"]
    assert probe(gif) == dict(frames=6, fps=10.0, height=H, width=W, duration_s=0.6, codec="gif")
    video, fps = decode_video(gif, target_fps=8.0)
    # ticks 0, .125, .25, .375, .5 inside 0.6 s; .25 ties frames at .2/.3 -> .2
    assert fps == 8.0 and [square_index(f) for f in video] == [0, 1, 2, 4, 5]
    np.testing.assert_array_equal(video[2][16, 12], SQUARE)  # GIF palette keeps these colours exact


def test_upsampling_and_caps(video_tree):
    mp4 = video_tree[2]["clips/square.mp4"]
    video, fps = decode_video(mp4, target_fps=24.0)
    assert fps == 24.0 and [square_index(f) for f in video] == [i // 2 for i in range(24)]
    video, fps = decode_video(mp4, max_frames=5, max_side=12)  # no resampling: source rate
    assert fps == 12.0 and video.shape == (5, 8, 12, 3)
    assert [square_index(f) * 4 for f in decode_video(mp4)[0][:5]] == [0, 4, 8, 12, 16]


def test_rotation_and_bad_inputs(video_tree):
    marker = np.zeros((32, 48, 3), np.uint8)  # (H, W, 3) red block at the top-left
    marker[:8, :8] = (255, 0, 0)
    rotated = encode_video("mp4", "libx264", [marker] * 2, fps=12, rotation=90)
    video, _ = decode_video(rotated)
    assert video.shape == (2, 48, 32, 3)  # 90 degrees counter-clockwise: top-left -> bottom-left
    assert video[0, 44, 4, 0] > 200 and video[0, 4, 4, 0] < 50
    webm = video_tree[2]["clips/square.webm"]
    for data, reason in [(b"", "empty_file"), (webm[: len(webm) // 3], "truncated"),
                         (b"\x00" * 300, "undecodable"), (encode_audio_only(), "no_video_stream")]:
        with pytest.raises(VideoDecodeError) as err:
            decode_video(data)
        assert err.value.reason == reason


def test_caption_short_rule():
    assert derive_caption_short("A cat sits. Then it jumps.") == "A cat sits"
    assert derive_caption_short("one clause only") == "one clause only"
    long = "word " * 40 + "end, and more"
    assert len(derive_caption_short(long)) <= 120


def test_rerun_is_idempotent(ingested, video_tree, tmp_path):
    report, out_dir = ingested
    videos_dir, captions_file, _ = video_tree
    before = read_records(report["dataset_dir"])
    again = run_ingest(videos_dir, out_dir, captions_file=captions_file, config=CONFIG)
    assert again["reused_existing"] is True
    strip = lambda r: {k: v for k, v in r.items() if k not in ("elapsed_s", "reused_existing")}
    assert strip(again) == strip(report)
    after = read_records(again["dataset_dir"])
    assert after.keys() == before.keys()
    assert all(after[k] == before[k] for k in before)
    # A config change rebuilds in place (on a copy, so the shared fixture stays as built).
    out_copy = tmp_path / "out"
    shutil.copytree(out_dir, out_copy)
    changed = run_ingest(videos_dir, out_copy, captions_file=captions_file, config={**CONFIG, "max_side": 16})
    assert changed["reused_existing"] is False and changed["records_written"] == 5
    assert changed["counts_by_reason"] == report["counts_by_reason"]
    rebuilt = read_records(changed["dataset_dir"])
    assert rebuilt.keys() == before.keys()
    assert all(json.loads(r["meta"])["max_side"] == 16 for r in rebuilt.values())
    assert changed["dataset_dir"] == str(out_copy / "video_folder" / "1.0.0")
    assert sorted(p.name for p in out_copy.iterdir()) == ["ingest_report.json", "video_folder"]


def test_missing_captions_allowed_empty_folder_and_bad_captions_file(video_tree, tmp_path):
    mp4 = video_tree[2]["clips/square.mp4"]
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(mp4)
    report = run_ingest(videos, tmp_path / "out", config={"allow_missing_caption": True})
    assert (report["records_written"], report["rejected"]) == (1, [])
    record = read_records(report["dataset_dir"])["a.mp4"]
    assert (record["caption"], record["caption_short"]) == (b"", b"")
    # Same folder, captions required: nothing accepted, so the previous build is removed.
    report = run_ingest(videos, tmp_path / "out")
    assert report["dataset_dir"] is None and report["counts_by_reason"] == {"missing_caption": 1}
    assert not (tmp_path / "out" / "video_folder" / "1.0.0").exists()
    bad = tmp_path / "captions.jsonl"
    bad.write_bytes(b'{"file": "a.mp4", "caption": "ok"}\n{"file": oops}\n')
    with pytest.raises(ValueError, match="captions.jsonl:2"):
        run_ingest(videos, tmp_path / "out", captions_file=bad)
