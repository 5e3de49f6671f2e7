"""Ingest of a folder of real videos into the `video_folder` TFDS dataset (ArrayRecord).

Every regular file under the folder is read and ends up either as a record or in the report's
`rejected` list with a reason (`files_read == records_written + len(rejected)`). Exceptions to
"every file": `.txt` caption sidecars (a `.txt` whose stem matches a media file in the same
directory), the captions_file itself and anything inside out_dir. Checks run in this order and the
first failure is the file's reason:

  1. extension in SUPPORTED_EXTENSIONS, else unsupported_extension;
  2. caption (captions_file entry, else `<stem>.txt`): missing_caption, caption_not_utf8,
     empty_caption, invalid_caption; read_error when the file cannot be read;
  3. full decode via `decode.probe`: empty_file, undecodable, no_video_stream, zero_frames,
     truncated, corrupt_stream;
  4. geometry: too_small (shorter side < min_side), extreme_aspect (longer/shorter > max_aspect).

Re-running is safe: the dataset is built in a temporary folder inside out_dir and renamed into
place, and a dataset whose stored fingerprint (inputs + captions + config) matches is reused as is.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import tensorflow_datasets as tfds

from data_pipelines.video_folder.builder import VideoFolder, VideoFolderExample
from data_pipelines.video_folder.decode import VideoDecodeError, frames_within, probe

SUPPORTED_EXTENSIONS = (".mp4", ".webm", ".mov", ".gif", ".png", ".jpg", ".jpeg")
CAPTION_SIDECAR_EXTENSION = ".txt"
REPORT_NAME = "ingest_report.json"
# Bumped when validation or record layout changes, so old builds are not reused by fingerprint.
INGEST_FORMAT_VERSION = 1
_SHORT_CAPTION_CHARS = 120


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """Ingest settings. target_fps, max_seconds and max_side are applied later, at decode time in
    the workers (decode_record falls back to them); ingest stores them in each record's meta (with
    max_seconds also as that file's max_frames) and in the dataset metadata. max_aspect, min_side
    and allow_missing_caption are checked here."""

    target_fps: float | None = 8.0
    max_seconds: float | None = None
    max_side: int | None = None
    max_aspect: float = 8.0
    min_side: int = 16
    allow_missing_caption: bool = False

    def __post_init__(self):
        for name in ("target_fps", "max_seconds", "max_side"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"IngestConfig.{name} must be positive or None, got {value}")
        if self.max_aspect < 1:
            raise ValueError(f"IngestConfig.max_aspect must be >= 1, got {self.max_aspect}")
        if self.min_side < 1:
            raise ValueError(f"IngestConfig.min_side must be >= 1, got {self.min_side}")

    @classmethod
    def from_any(cls, config: IngestConfig | dict | None) -> IngestConfig:
        """Accepts an IngestConfig, a plain dict of its fields, or None for defaults."""
        if config is None or isinstance(config, cls):
            return config or cls()
        unknown = set(config) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown IngestConfig keys: {sorted(unknown)}")
        return cls(**config)

    def max_frames_for(self, source_fps: float) -> int | None:
        """Frame cap that max_seconds means for a file (source_fps 0 marks a still: no cap)."""
        return frames_within(self.max_seconds, (self.target_fps or source_fps) if source_fps > 0 else 0.0)


class _Rejected(Exception):
    """A file fails a check; `reason` goes into the report."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


# ----------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------


def derive_caption_short(caption: str, max_chars: int = _SHORT_CAPTION_CHARS) -> str:
    """First sentence of a caption, cut to its first clause (then a word boundary) if too long."""
    first = re.split(r"(?<=[.!?])\s+", caption.strip(), maxsplit=1)[0]
    if len(first) > max_chars:
        first = re.split(r"[,;:]\s", first, maxsplit=1)[0]
    if len(first) > max_chars:
        cut = first[:max_chars].rsplit(" ", 1)[0]
        first = cut or first[:max_chars]
    return first.rstrip(" .,;:")


def _clean_caption(text: str) -> str:
    """Whitespace runs (newlines included) collapse to single spaces; text encoders want one line."""
    return " ".join(text.split())


def load_captions_file(captions_file: str | os.PathLike) -> dict[str, dict]:
    """Reads captions.jsonl into {relative posix path: {"caption", "caption_short"?}}.

    Lines are `{"file": "rel/path.mp4", "caption": "...", "caption_short": "..."}`; blank lines are
    skipped. A line that is not UTF-8 JSON, lacks "file", or repeats a file raises ValueError with
    its line number, since it cannot be attributed to one video. Caption values are checked later,
    per file, so a bad caption rejects only its own video.
    """
    entries: dict[str, dict] = {}
    with open(captions_file, "rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            where = f"{captions_file}:{lineno}"
            try:
                entry = json.loads(raw.decode("utf-8-sig" if lineno == 1 else "utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{where}: not a UTF-8 JSON line ({exc})") from exc
            if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
                raise ValueError(f"{where}: expected an object with a string 'file'")
            key = Path(entry["file"]).as_posix().removeprefix("./")
            if key in entries:
                raise ValueError(f"{where}: duplicate entry for {key}")
            entries[key] = entry
    return entries


def _caption_from_entry(entry: dict) -> tuple[str, str | None]:
    """(caption, caption_short or None) from a captions.jsonl entry; non-strings are invalid."""
    caption, short = entry.get("caption"), entry.get("caption_short")
    if caption is None:
        raise _Rejected("missing_caption", "captions_file entry has no 'caption'")
    if not isinstance(caption, str) or not (short is None or isinstance(short, str)):
        raise _Rejected("invalid_caption", "caption and caption_short must be strings")
    return caption, short


def _caption_from_sidecar(sidecar: Path) -> str | None:
    """Sidecar text (strict UTF-8, BOM allowed), or None when there is no sidecar."""
    try:
        raw = sidecar.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _Rejected("read_error", f"{sidecar.name}: {exc}") from exc
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _Rejected("caption_not_utf8", f"{sidecar.name}: {exc}") from exc


def _resolve_caption(path: Path, key: str, entries: dict, allow_missing: bool) -> tuple[str, str]:
    """(caption, caption_short) for a media file; the captions_file entry wins over the sidecar."""
    if key in entries:
        caption, short = _caption_from_entry(entries[key])
    else:
        caption, short = _caption_from_sidecar(path.with_suffix(CAPTION_SIDECAR_EXTENSION)), None
    caption = _clean_caption(caption) if caption is not None else None
    if not caption and allow_missing:  # absent or blank both count as missing here
        return "", ""
    if caption is None:
        raise _Rejected("missing_caption", "no captions_file entry and no sidecar .txt")
    if not caption:
        raise _Rejected("empty_caption")
    short = _clean_caption(short) if short else derive_caption_short(caption)
    return caption, short or caption


# ----------------------------------------------------------------------------------------------
# Scanning and validation
# ----------------------------------------------------------------------------------------------


def _is_excluded(path: Path, excluded: list[Path]) -> bool:
    return any(path == other or other in path.parents for other in excluded)


def scan_folder(videos_dir: Path, excluded: list[Path]) -> list[Path]:
    """Files to account for, sorted by relative path: every regular file except caption sidecars
    (a .txt next to a media file with the same stem) and excluded paths (captions_file, out_dir)."""
    files = [p for p in videos_dir.rglob("*") if p.is_file() and not _is_excluded(p.resolve(), excluded)]
    media_stems = {p.with_suffix("") for p in files if p.suffix.lower() in SUPPORTED_EXTENSIONS}
    kept = [
        p for p in files
        if not (p.suffix == CAPTION_SIDECAR_EXTENSION and p.with_suffix("") in media_stems)
    ]
    return sorted(kept, key=lambda p: p.relative_to(videos_dir).as_posix())


def _check_geometry(info: dict, config: IngestConfig) -> None:
    """Rejects frames too small to train on and extreme strips (e.g. 4000x16)."""
    short, long = sorted((info["height"], info["width"]))
    size = f"{info['width']}x{info['height']}"
    if short < config.min_side:
        raise _Rejected("too_small", f"{size} < min_side {config.min_side}")
    if long / short > config.max_aspect:
        raise _Rejected("extreme_aspect", f"{size} > max_aspect {config.max_aspect}")


def validate_file(path: Path, key: str, entries: dict, config: IngestConfig) -> VideoFolderExample:
    """Runs the checks in the module docstring on one file; raises _Rejected on the first failure."""
    extension = path.suffix.lower()
    if extension not in SUPPORTED_EXTENSIONS:
        raise _Rejected("unsupported_extension", extension or "(none)")
    caption, caption_short = _resolve_caption(path, key, entries, config.allow_missing_caption)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _Rejected("read_error", str(exc)) from exc
    try:
        info = probe(data)
    except VideoDecodeError as exc:
        raise _Rejected(exc.reason, exc.detail) from exc
    _check_geometry(info, config)
    digest = hashlib.sha256(data).hexdigest()
    meta = dict(
        info, source_path=key, format=extension[1:], sha256=digest, size_bytes=len(data),
        target_fps=config.target_fps, max_seconds=config.max_seconds,
        max_frames=config.max_frames_for(info["fps"]), max_side=config.max_side,
    )
    return VideoFolderExample(
        key=key, path=str(path), format=extension[1:], caption=caption,
        caption_short=caption_short, meta=meta, sha256=digest,
    )


# ----------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------


def _fingerprint(examples: list[VideoFolderExample], config: IngestConfig) -> str:
    """Digest of everything a record depends on, so an identical rebuild can be skipped."""
    payload = {
        "ingest_format_version": INGEST_FORMAT_VERSION,
        "builder_version": str(VideoFolder.VERSION),
        "config": dataclasses.asdict(config),
        "examples": [[e.key, e.sha256, e.format, e.caption, e.caption_short, e.meta] for e in examples],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _stored_fingerprint(dataset_dir: Path) -> str | None:
    """Fingerprint in a built dataset's metadata.json, or None if absent or unreadable."""
    try:
        return json.loads((dataset_dir / "metadata.json").read_text())["ingest_fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _build_and_swap(out_dir: Path, examples: list[VideoFolderExample], metadata: dict) -> Path:
    """Builds the dataset in a temp dir inside out_dir, then renames it over the final dir.

    Readers never see a half-written dataset: the final dir is either the old build or the new one
    (for the instant between the two renames, neither). The temp dir is removed on any outcome.
    """
    final = out_dir / VideoFolder.name / str(VideoFolder.VERSION)
    scratch = Path(tempfile.mkdtemp(prefix=".ingest-", dir=out_dir))
    try:
        builder = VideoFolder(
            examples=examples, ingest_metadata=metadata, data_dir=str(scratch), file_format="array_record"
        )
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            os.replace(final, scratch / "previous_build")
        os.replace(os.fspath(builder.data_path), final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def write_dataset(
    out_dir: Path, examples: list[VideoFolderExample], config: IngestConfig
) -> tuple[Path | None, bool]:
    """Writes (or reuses) the dataset for `examples`. Returns (dataset_dir or None, reused).

    With no accepted files there is no dataset (TFDS cannot write an empty split): any previous
    build is removed so out_dir never holds records that the current inputs do not produce.
    """
    final = out_dir / VideoFolder.name / str(VideoFolder.VERSION)
    if not examples:
        shutil.rmtree(final, ignore_errors=True)
        return None, False
    fingerprint = _fingerprint(examples, config)
    if final.is_dir() and _stored_fingerprint(final) == fingerprint:
        return final, True
    metadata = {
        "ingest_fingerprint": fingerprint,
        "ingest_config": dataclasses.asdict(config),
        "target_fps": config.target_fps,
        "max_seconds": config.max_seconds,
        "max_side": config.max_side,
    }
    return _build_and_swap(out_dir, examples, metadata), False


def _write_json_atomically(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False))
    os.replace(tmp, path)


def run_ingest(
    videos_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    captions_file: str | os.PathLike | None = None,
    config: IngestConfig | dict | None = None,
) -> dict:
    """Validates every file under videos_dir and writes the accepted ones as `video_folder`.

    Args:
      videos_dir: folder scanned recursively (see the module docstring for what is counted).
      out_dir: TFDS data_dir; the dataset lands in <out_dir>/video_folder/1.0.0.
      captions_file: optional captions.jsonl; its entries win over `<stem>.txt` sidecars.
      config: IngestConfig, a dict of its fields, or None for defaults.

    Returns:
      The report, also written to <out_dir>/ingest_report.json: files_read, records_written,
      rejected [{path, reason, detail}], counts_by_reason, config, dataset_dir (None when nothing
      was accepted), reused_existing, captions_without_file (captions_file entries naming no
      scanned file), elapsed_s.
    """
    start = time.perf_counter()
    config = IngestConfig.from_any(config)
    videos_dir, out_dir = Path(videos_dir).resolve(), Path(out_dir).resolve()
    if not videos_dir.is_dir():
        raise FileNotFoundError(f"videos_dir {videos_dir} is not a directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = load_captions_file(captions_file) if captions_file is not None else {}
    excluded = [out_dir] + ([Path(captions_file).resolve()] if captions_file is not None else [])
    files = scan_folder(videos_dir, excluded)

    examples, rejected = [], []
    for path in files:
        key = path.relative_to(videos_dir).as_posix()
        try:
            examples.append(validate_file(path, key, entries, config))
        except _Rejected as exc:
            rejected.append({"path": key, "reason": exc.reason, "detail": exc.detail})

    dataset_dir, reused = write_dataset(out_dir, examples, config)
    scanned = {path.relative_to(videos_dir).as_posix() for path in files}
    report = {
        "files_read": len(files),
        "records_written": len(examples),
        "rejected": rejected,
        "counts_by_reason": dict(sorted(collections.Counter(r["reason"] for r in rejected).items())),
        "config": dataclasses.asdict(config),
        "dataset_dir": str(dataset_dir) if dataset_dir else None,
        "reused_existing": reused,
        "captions_without_file": sorted(set(entries) - scanned),
        "elapsed_s": round(time.perf_counter() - start, 3),
    }
    assert report["files_read"] == report["records_written"] + len(rejected)  # nothing silently lost
    _write_json_atomically(out_dir / REPORT_NAME, report)
    return report
