"""Decoding of stored video_folder files (mp4/webm/mov/gif via PyAV, png/jpg via PIL) into clips.

Ingest keeps the original encoded bytes; the data workers call `decode_record` to turn one stored
record into the common clip contract `{"video": uint8 (T, H, W, 3), "caption_short", "caption",
"meta": JSON str}`. Frame-rate resampling is timestamp based: output tick k sits at k / target_fps
seconds after the first frame and takes the source frame whose timestamp is nearest (ties go to the
earlier frame); ticks run while they fall inside the source duration (last timestamp plus the last
frame's display time), so a 12-frame 12 fps clip (1.0 s) becomes 8 frames at 8 fps and 24 at 24 fps.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Iterator
from typing import BinaryIO

import av
import numpy as np
from PIL import Image, ImageOps

Source = bytes | bytearray | memoryview | str | os.PathLike

# Ticks closer than this to a tie or to the clip end count as on it; real frame periods are >> 1 us.
# Streams with coarse time bases (webm: 1 ms) widen it to half a time-base unit, see _resample.
_TIME_EPS = 1e-6
# FFmpeg's own fallback when a stream declares no rate and frames carry no timestamps.
_FALLBACK_FPS = 25.0
# Top-level ISO-BMFF/QuickTime box types; anything else at top level is treated as trailing junk.
_BMFF_TOP_LEVEL = {
    b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"styp", b"uuid", b"moof",
    b"mfra", b"sidx", b"ssix", b"prft", b"emsg", b"meta", b"pdin", b"meco", b"udta", b"junk",
}
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_EBML_SEGMENT_ID = b"\x18\x53\x80\x67"


class VideoDecodeError(ValueError):
    """Bad input for decoding. `reason` is a short machine-friendly tag used in ingest reports:
    empty_file, undecodable, no_video_stream, zero_frames, truncated, corrupt_stream."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ----------------------------------------------------------------------------------------------
# Input handling and container sniffing
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _open_source(source: Source) -> Iterator[tuple[BinaryIO, int]]:
    """Yields a seekable binary file for bytes or a path, with its size; empty input is an error."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        handle: BinaryIO = io.BytesIO(bytes(source))
    else:
        handle = open(source, "rb")
    with handle:
        size = handle.seek(0, io.SEEK_END)
        handle.seek(0)
        if size == 0:
            raise VideoDecodeError("empty_file")
        yield handle, size


def _sniff(head: bytes) -> str:
    """Container family from magic bytes: png, jpeg, gif, bmff (mp4/mov), ebml (webm/mkv) or other."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head[4:8] in _BMFF_TOP_LEVEL:
        return "bmff"
    if head.startswith(_EBML_MAGIC):
        return "ebml"
    return "other"


def _bmff_truncated(handle: BinaryIO, size: int) -> bool:
    """True when a top-level ISO-BMFF box (usually mdat or moov) claims more bytes than the file has."""
    pos = 0
    while pos + 8 <= size:
        handle.seek(pos)
        header = handle.read(16)
        if header[4:8] not in _BMFF_TOP_LEVEL:  # trailing junk, not a box: stop judging
            return False
        box_size = int.from_bytes(header[:4], "big")
        if box_size == 1:  # 64-bit "largesize" follows the type
            if len(header) < 16:
                return True
            box_size = int.from_bytes(header[8:16], "big")
        elif box_size == 0:  # box runs to the end of the file by definition
            return False
        if box_size < 8:  # malformed rather than truncated; let FFmpeg judge it
            return False
        pos += box_size
    return pos > size


def _read_ebml_vint(buf: bytes, pos: int) -> tuple[int, int, bool]:
    """EBML variable-length integer at `pos`: (value, byte length, is the reserved 'unknown size')."""
    first = buf[pos]
    length = 9 - first.bit_length() if first else 9
    if length > 8 or pos + length > len(buf):
        raise ValueError("bad vint")
    value = first & ((1 << (8 - length)) - 1)
    for byte in buf[pos + 1 : pos + length]:
        value = (value << 8) | byte
    return value, length, value == (1 << (7 * length)) - 1


def _ebml_truncated(handle: BinaryIO, size: int) -> bool:
    """True when a webm/mkv Segment declares a size that runs past the end of the file."""
    handle.seek(0)
    buf = handle.read(256)
    try:
        header_size, n, _ = _read_ebml_vint(buf, 4)
        pos = 4 + n + header_size
        if buf[pos : pos + 4] != _EBML_SEGMENT_ID:
            return False
        segment_size, n, unknown = _read_ebml_vint(buf, pos + 4)
    except (ValueError, IndexError):
        return size < 64  # a file this small cannot even hold its EBML and Segment headers
    return not unknown and pos + 4 + n + segment_size > size


def _gif_truncated(handle: BinaryIO, size: int) -> bool:
    """True when a GIF lacks its 0x3B trailer (NUL padding after the trailer is tolerated)."""
    handle.seek(max(0, size - 4096))
    tail = handle.read().rstrip(b"\x00")
    return not tail.endswith(b"\x3b")


def _check_not_truncated(handle: BinaryIO, size: int, kind: str) -> None:
    """Raises truncated for containers whose own structure proves bytes are missing at the end."""
    checks = {"bmff": _bmff_truncated, "ebml": _ebml_truncated, "gif": _gif_truncated}
    if kind in checks and checks[kind](handle, size):
        raise VideoDecodeError("truncated", f"{kind} structure needs more than the {size} bytes present")
    handle.seek(0)


def _fit_size(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """(height, width) downscaled so the longer side is at most max_side; never upscales."""
    longer = max(height, width)
    if max_side is None or longer <= max_side:
        return height, width
    scale = max_side / longer
    return max(1, round(height * scale)), max(1, round(width * scale))


# ----------------------------------------------------------------------------------------------
# Stills (PIL)
# ----------------------------------------------------------------------------------------------


def _open_still(handle: BinaryIO) -> Image.Image:
    """Fully loaded, EXIF-upright RGB image; PIL failures map to truncated or undecodable."""
    try:
        image = Image.open(handle)
        image.load()
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise VideoDecodeError("undecodable", f"image too large: {exc}") from exc
    except (OSError, EOFError, SyntaxError, ValueError) as exc:
        truncated = isinstance(exc, EOFError) or "truncated" in str(exc).lower()
        raise VideoDecodeError("truncated" if truncated else "undecodable", str(exc)) from exc


def _decode_still(handle: BinaryIO, max_side: int | None) -> np.ndarray:
    """A still image as a one-frame clip (1, H, W, 3), downscaled with Lanczos when needed."""
    image = _open_still(handle)
    height, width = _fit_size(image.height, image.width, max_side)
    if (height, width) != (image.height, image.width):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(image, dtype=np.uint8)[None]  # (1, H, W, 3)


# ----------------------------------------------------------------------------------------------
# Videos (PyAV)
# ----------------------------------------------------------------------------------------------


def _open_container(handle: BinaryIO) -> av.container.InputContainer:
    """Opens a demuxer over `handle` (already checked for truncation by the caller)."""
    try:
        return av.open(handle, mode="r")
    except (av.FFmpegError, OSError) as exc:
        raise VideoDecodeError("undecodable", str(exc)) from exc


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    """The first video stream; its decoder uses frame+slice threads for speed."""
    if not container.streams.video:
        raise VideoDecodeError("no_video_stream", container.format.name)
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return stream


def _codec_name(stream: av.video.stream.VideoStream) -> str:
    """Codec id name such as av1, rather than the decoder's name such as libdav1d."""
    return stream.codec_context.codec.canonical_name


def _nominal_fps(stream: av.video.stream.VideoStream) -> float | None:
    """Declared frame rate (average, else FFmpeg's guess), or None when the stream has none."""
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def _timed_frames(container, stream) -> Iterator[tuple[float, float, av.VideoFrame]]:
    """Decoded frames as (seconds since first frame, display duration s, frame), in display order.

    Missing or non-increasing timestamps are replaced by previous + one nominal period so the
    resampler always sees a strictly increasing clock.
    """
    period = 1.0 / (_nominal_fps(stream) or _FALLBACK_FPS)
    origin = prev_t = None
    decoded = 0
    try:
        for frame in container.decode(stream):
            raw = float(frame.pts * frame.time_base) if frame.pts is not None else None
            if origin is None:
                origin = raw if raw is not None else 0.0
            t = raw - origin if raw is not None else None
            if t is None or (prev_t is not None and t <= prev_t):
                t = 0.0 if prev_t is None else prev_t + period
            duration = float(frame.duration * frame.time_base) if frame.duration else period
            decoded += 1
            prev_t = t
            yield t, duration, frame
    except (av.FFmpegError, OSError) as exc:
        raise VideoDecodeError("corrupt_stream" if decoded else "undecodable", str(exc)) from exc


def _resample(
    timed, target_fps: float | None, max_frames: int | None, tie_s: float = _TIME_EPS
) -> Iterator[av.VideoFrame]:
    """Source frames for each output tick (see module docstring); stops decoding at max_frames.

    Without target_fps every frame passes through. With it, tick k at k / target_fps takes the frame
    nearest in time; a tick within `tie_s` of the midpoint of two frames is a tie and goes to the
    earlier one. `tie_s` is half the stream's time-base unit, because stored timestamps are rounded
    to it: webm's millisecond stamps would otherwise break 2x-upsampling ties at random. Ticks
    continue while inside [0, end), end being the last timestamp plus that frame's duration. A
    non-empty source always yields at least one frame.
    """
    limit = max_frames if max_frames is not None else float("inf")
    emitted = 0
    if target_fps is None:
        for _, _, frame in timed:
            emitted += 1
            yield frame
            if emitted >= limit:  # return before pulling (decoding) another frame
                return
        return
    prev = None
    for t, duration, frame in timed:
        if prev is not None:
            midpoint = (prev[0] + t) / 2
            while emitted < limit and emitted / target_fps <= midpoint + tie_s:
                emitted += 1
                yield prev[2]
            if emitted >= limit:
                return
        prev = (t, duration, frame)
    if prev is None:
        return
    end = prev[0] + prev[1]
    while emitted < limit and (emitted == 0 or emitted / target_fps < end - tie_s):
        emitted += 1
        yield prev[2]


def _display_geometry(frame: av.VideoFrame) -> tuple[int, int, int]:
    """(counter-clockwise quarter turns from the display matrix, display height, display width)."""
    quarter_turns = round(frame.rotation / 90) % 4  # counter-clockwise, as np.rot90 counts
    if quarter_turns % 2:
        return quarter_turns, frame.width, frame.height
    return quarter_turns, frame.height, frame.width


def _frame_to_rgb(frame: av.VideoFrame, max_side: int | None) -> np.ndarray:
    """(H, W, 3) uint8 in display orientation (container rotation applied), area-downscaled."""
    quarter_turns, display_h, display_w = _display_geometry(frame)
    out_h, out_w = _fit_size(display_h, display_w, max_side)
    coded_h, coded_w = (out_w, out_h) if quarter_turns % 2 else (out_h, out_w)
    rgb = frame.to_ndarray(
        width=coded_w, height=coded_h, format="rgb24", interpolation="AREA",
        src_color_range=frame.color_range,
    )  # (h, w, 3) coded orientation
    if quarter_turns:
        rgb = np.rot90(rgb, k=quarter_turns)  # (H, W, 3) display orientation
    return np.ascontiguousarray(rgb)


def _decode_container(handle, target_fps, max_frames, max_side) -> tuple[np.ndarray, float]:
    """PyAV path of decode_video; converts each selected frame to RGB once even when repeated."""
    with _open_container(handle) as container:
        stream = _video_stream(container)
        frames: list[np.ndarray] = []
        last_frame, last_rgb = None, None
        tie_s = max(_TIME_EPS, float(stream.time_base or 0) / 2)
        for frame in _resample(_timed_frames(container, stream), target_fps, max_frames, tie_s):
            if frame is not last_frame:
                last_frame, last_rgb = frame, _frame_to_rgb(frame, max_side)
            frames.append(last_rgb)
        if not frames:
            raise VideoDecodeError("zero_frames", f"{_codec_name(stream)} stream decoded no frames")
        fps = target_fps if target_fps is not None else (_nominal_fps(stream) or _FALLBACK_FPS)
    return np.stack(frames), float(fps)  # (T, H, W, 3)


def decode_video(
    data: Source,
    *,
    target_fps: float | None = None,
    max_frames: int | None = None,
    max_side: int | None = None,
) -> tuple[np.ndarray, float]:
    """Decodes a video, animated GIF or still image (bytes or a path) into RGB frames.

    Args:
      data: encoded file contents, or a path to the file.
      target_fps: resample to this rate by timestamp (see module docstring); None keeps every frame.
      max_frames: cap on output frames (decoding stops early once reached).
      max_side: downscale so the longer side is at most this; never upscales; aspect is kept.

    Returns:
      (video uint8 (T, H, W, 3), fps). fps is target_fps when given, else the stream's declared
      rate; stills give T=1 and fps 0.0 (no time axis).

    Raises:
      VideoDecodeError: with `reason` in empty_file, undecodable, no_video_stream, zero_frames,
        truncated, corrupt_stream.
    """
    if target_fps is not None and target_fps <= 0:
        raise ValueError(f"target_fps must be positive, got {target_fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    with _open_source(data) as (handle, size):
        kind = _sniff(handle.read(16))
        handle.seek(0)
        if kind in ("png", "jpeg"):
            return _decode_still(handle, max_side), 0.0
        _check_not_truncated(handle, size, kind)
        return _decode_container(handle, target_fps, max_frames, max_side)


def probe(data: Source) -> dict:
    """Validates a file by decoding every frame (no RGB conversion) and describes it.

    Returns:
      dict(frames, fps, height, width, duration_s, codec). height/width are in display orientation;
      fps is the declared rate (frames / duration when undeclared); stills give frames=1, fps=0.0,
      duration_s=0.0 and codec "png" or "jpeg".

    Raises:
      VideoDecodeError: as decode_video.
    """
    with _open_source(data) as (handle, size):
        kind = _sniff(handle.read(16))
        handle.seek(0)
        if kind in ("png", "jpeg"):
            image = _open_still(handle)
            return dict(frames=1, fps=0.0, height=image.height, width=image.width, duration_s=0.0, codec=kind)
        _check_not_truncated(handle, size, kind)
        with _open_container(handle) as container:
            stream = _video_stream(container)
            frames, end, first = 0, 0.0, None
            for t, duration, frame in _timed_frames(container, stream):
                frames, end = frames + 1, t + duration
                if first is None:  # orientation and size come from the first frame
                    first = frame
            if not frames:
                raise VideoDecodeError("zero_frames", f"{_codec_name(stream)} stream decoded no frames")
            _, height, width = _display_geometry(first)
            fps = _nominal_fps(stream) or frames / end
            return dict(frames=frames, fps=round(float(fps), 6), height=height, width=width,
                        duration_s=round(end, 6), codec=_codec_name(stream))


def _as_text(value) -> str:
    """TFDS data sources return Text features as bytes; accept str too."""
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)


def frames_within(seconds: float | None, fps: float) -> int | None:
    """Output frames whose ticks fall inside [0, seconds) at `fps`; None when uncapped or a still."""
    if seconds is None or fps <= 0:
        return None
    return max(1, math.ceil(seconds * fps - _TIME_EPS))


def decode_settings(meta: dict, *, target_fps=None, max_frames=None, max_side=None) -> dict:
    """Decode settings for a record: explicit values win, None falls back to what ingest stored.

    The stored cap is max_seconds, turned into frames at the effective rate (target_fps, else the
    source rate), so overriding target_fps keeps the same clip duration.
    """
    target_fps = target_fps if target_fps is not None else meta.get("target_fps")
    if max_frames is None:
        max_frames = frames_within(meta.get("max_seconds"), target_fps or meta.get("fps") or 0.0)
    max_side = max_side if max_side is not None else meta.get("max_side")
    return dict(target_fps=target_fps, max_frames=max_frames, max_side=max_side)


def decode_record(
    record: dict,
    *,
    target_fps: float | None = None,
    max_frames: int | None = None,
    max_side: int | None = None,
) -> dict:
    """Turns one stored video_folder record into the common clip contract.

    Args:
      record: a row of the video_folder dataset (video_encoded bytes, format, caption_short,
        caption, meta JSON).
      target_fps, max_frames, max_side: as decode_video. None means "not set here": the value
        ingest stored in the record's meta applies (see decode_settings), so a pipeline whose
        decode options are unset decodes as the dataset was ingested for. To decode without
        resampling or caps, ingest with those settings off.

    Returns:
      {"video": uint8 (T, H, W, 3), "caption_short": str, "caption": str, "meta": JSON str}; meta is
      the stored meta plus clip_fps, clip_frames, clip_height, clip_width of the decoded clip.

    Raises:
      VideoDecodeError: as decode_video.
    """
    encoded = record["video_encoded"]
    if isinstance(encoded, np.ndarray):  # object scalar from some readers
        encoded = encoded.item()
    meta = json.loads(_as_text(record["meta"]))
    settings = decode_settings(meta, target_fps=target_fps, max_frames=max_frames, max_side=max_side)
    video, fps = decode_video(encoded, **settings)
    meta.update(clip_fps=fps, clip_frames=int(video.shape[0]),
                clip_height=int(video.shape[1]), clip_width=int(video.shape[2]))
    return {
        "video": video,  # (T, H, W, 3)
        "caption_short": _as_text(record["caption_short"]),
        "caption": _as_text(record["caption"]),
        "meta": json.dumps(meta, sort_keys=True),
    }
