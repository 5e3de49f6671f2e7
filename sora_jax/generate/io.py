"""Generation's files: reading image and clip inputs, writing MP4 / GIF / PNG and the JSON sidecar.

Inputs go through the project's one decoder (`data_pipelines.video_folder.decode`: PyAV for
videos and GIFs, Pillow for stills), then `fit_frames` resizes them to the requested size by
covering it and cropping the centre (aspect kept, nothing stretched). Outputs: `.mp4` is H.264
(libx264, yuv420p) through PyAV, with odd sides padded by one replicated row/column because 4:2:0
chroma needs even ones; `.gif` through Pillow; `.png` for a single frame. `<out>.json` records
the prompt, seed, settings, shapes and timings.
"""
from __future__ import annotations

import fractions
import json
import os

import av
import numpy as np
from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".gif", ".png")


def read_frames(path: str, what: str = "input", max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """An image or clip file as uint8 `(T, H, W, 3)` (T = 1 for stills) and its frame rate (0 for stills).

    Raises FileNotFoundError when `path` does not exist and ValueError naming `what` when it cannot
    be decoded (empty, truncated, not an image or video).
    """
    from data_pipelines.video_folder.decode import decode_video

    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        return decode_video(path, max_frames=max_frames)
    except ValueError as error:  # VideoDecodeError is a ValueError with a short reason
        raise ValueError(f"cannot read {what} {path}: {error}") from None


def fit_frames(video: np.ndarray, height: int, width: int) -> np.ndarray:
    """`video (T, h, w, 3)` scaled to cover `height x width` and centre-cropped to it (Lanczos)."""
    frames, h, w = video.shape[:3]
    if (h, w) == (height, width):
        return video
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))  # PIL order: (W, H)
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    out = np.empty((frames, height, width, 3), np.uint8)
    for i in range(frames):
        image = Image.fromarray(video[i]).resize(size, Image.Resampling.LANCZOS)
        out[i] = np.asarray(image)[top : top + height, left : left + width]
    return out


def check_output_path(path: str, frames: int) -> str:
    """The lower-case suffix of an output path that can hold `frames` frames; ValueError otherwise."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"output {path} must end in one of {VIDEO_SUFFIXES}")
    if suffix == ".png" and frames != 1:
        raise ValueError(f"a PNG holds one frame; {frames} frames need .mp4 or .gif")
    return suffix


def write_video(path: str, video: np.ndarray, fps: float = 8.0) -> str:
    """Writes uint8 `video (T, H, W, 3)` to `path` by its suffix (.mp4, .gif, .png); returns the path."""
    video = np.asarray(video, np.uint8)
    suffix = check_output_path(path, len(video))
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if suffix == ".png":
        Image.fromarray(video[0]).save(path)
    elif suffix == ".gif":
        images = [Image.fromarray(frame) for frame in video]
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0,
                       optimize=False)
    else:
        write_mp4(path, video, fps)
    return path


def even_sides(video: np.ndarray) -> np.ndarray:
    """`video (T, H, W, 3)` padded by one replicated row/column where H or W is odd (yuv420p needs even)."""
    pad_h, pad_w = video.shape[1] % 2, video.shape[2] % 2
    if not (pad_h or pad_w):
        return video
    return np.pad(video, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")  # (T, H', W', 3)


def write_mp4(path: str, video: np.ndarray, fps: float, crf: int = 18) -> None:
    """H.264 MP4 (libx264, yuv420p, constant quality `crf`) through PyAV."""
    video = even_sides(video)
    rate = fractions.Fraction(fps).limit_denominator(1001)
    with av.open(path, "w") as container:
        stream = container.add_stream("libx264", rate=rate, options={"crf": str(crf)})
        stream.height, stream.width = video.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def sidecar_path(path: str) -> str:
    """Where the JSON sidecar of output `path` goes: `<path>.json`."""
    return path + ".json"


def write_sidecar(path: str, info: dict) -> str:
    """Writes `info` as `<path>.json` (indented, keys sorted); returns the sidecar's path."""
    target = sidecar_path(path)
    with open(target, "w") as f:
        json.dump(info, f, indent=2, sort_keys=True, default=_jsonable)
        f.write("\n")
    return target


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def read_prompts(path: str) -> list[str]:
    """Prompts of a batch file: one per non-empty line (`#` lines are comments)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"prompts file {path} not found")
    with open(path, encoding="utf-8") as f:
        prompts = [line.strip() for line in f if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise ValueError(f"prompts file {path} has no prompts")
    return prompts
