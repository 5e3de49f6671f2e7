"""Re-captioning a dataset: every clip record gains a generated detailed caption.

    sora-jax caption --workdir CAPTIONER_WORKDIR --data DATASET_DIR --out OUT_DIR

Output: a TFDS ArrayRecord dataset with the input's name, version and splits, under
`OUT_DIR/<name>/<version>`, records in the input's order. Every stored field is copied unchanged except `caption`, which holds the
generated caption; the input's caption moves to the new field `caption_original`. Replacing
`caption` is what lets the DiT pipeline train on generated captions with no new option: point
`data.sources` at the output (default `caption_key="caption"`), or at the input for the originals.
The dataset name is kept so the same record decoder reads it (`data_pipelines.sources`).

Resumable: captions are appended per batch of clips to `OUT_DIR/progress/<split>.jsonl` (flushed and
fsynced), and a rerun captions only records missing there. Once every split is captioned the
dataset is written in one pass (reading and copying, no model work); a rerun after that finds it and
does nothing. A record that cannot be captioned (it does not decode, or does not fit the
captioner's input) is left out of the output, with its reason in the progress file and the report.
"""
from __future__ import annotations

import json
import os

import tensorflow_datasets as tfds
from tqdm import tqdm

from data_pipelines.sources import DecodeOptions, clip_decoder
from sora_jax.caption.data import resolve_caption_source
from sora_jax.caption.inference import ClipCaptioner, clip_patches

PROGRESS_DIR = "progress"


def read_progress(path: str) -> dict[int, dict]:
    """Entries `{index: {"caption": ...} or {"error": ...}}` of one split's progress file.

    A line cut short by a kill mid-write is ignored; its record is captioned again.
    """
    done = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                done[int(entry["index"])] = entry
    return done


def _drop_partial_line(path: str) -> None:
    """Cuts a last line left unfinished by a killed run, so appended entries start on a line of their own."""
    if not os.path.exists(path):
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


def _append(path: str, entries: list[dict]) -> None:
    with open(path, "a") as f:
        for entry in entries:
            f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _caption_chunk(captioner, decode, source, indices: list[int]) -> list[dict]:
    """Progress entries for records `indices`: generated captions, or the reason a record failed."""
    entries, segments, ok = [], [], []
    for index in indices:
        try:
            segments.append(clip_patches(decode(source[index]), captioner.c, index))
            ok.append(index)
        except (ValueError, OSError, KeyError) as error:  # undecodable, or unfit for this captioner
            entries.append({"index": index, "error": f"{type(error).__name__}: {error}"})
    for index, caption in zip(ok, captioner.caption_segments(segments)):
        entries.append({"index": index, "caption": caption})
    return entries


def caption_split(captioner, builder, split: str, progress_path: str, chunk: int, show_progress: bool) -> dict:
    """Captions the records of one split missing from its progress file; returns the split's counts."""
    source = builder.as_data_source(split=split)
    decode = clip_decoder(builder.info.name, DecodeOptions())
    _drop_partial_line(progress_path)
    done = read_progress(progress_path)
    todo = [i for i in range(len(source)) if i not in done]
    bar = tqdm(total=len(source), initial=len(source) - len(todo), desc=f"caption {split}", unit="clip",
               disable=not show_progress)
    for start in range(0, len(todo), chunk):
        entries = _caption_chunk(captioner, decode, source, todo[start : start + chunk])
        _append(progress_path, entries)
        bar.update(len(entries))
    bar.close()
    entries = read_progress(progress_path)
    failed = {i: e["error"] for i, e in entries.items() if "error" in e}
    return {"records": len(source), "captioned_now": len(todo) - sum(1 for i in todo if i in failed),
            "already_captioned": len(done), "failed": failed}


def _output_builder(dataset_name: str, version: str, features: dict, splits: dict, data_dir: str):
    """A builder writing `splits` (name -> iterable of (key, record)) as dataset `dataset_name`."""

    class Recaptioned(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        name = dataset_name
        VERSION = tfds.core.Version(version)
        RELEASE_NOTES = {version: "Re-captioned by sora-jax caption."}

        def _info(self) -> tfds.core.DatasetInfo:
            return tfds.core.DatasetInfo(
                builder=self, description="Clips with generated detailed captions (originals in caption_original).",
                disable_shuffling=True,  # record i of the output is record i of the input
                features=tfds.features.FeaturesDict({**features, "caption_original": tfds.features.Text()}))

        def _split_generators(self, dl_manager):
            del dl_manager
            return {split: self._generate_examples(records) for split, records in splits.items()}

        def _generate_examples(self, records):
            yield from records

    return Recaptioned(data_dir=data_dir, file_format="array_record")


def _records(source, entries: dict[int, dict]):
    """(key, record) pairs of the captioned records, stored fields copied, captions swapped."""
    for index in sorted(i for i, e in entries.items() if "caption" in e):
        record = dict(source[index])
        original = record["caption"]
        record["caption_original"] = original.decode("utf-8") if isinstance(original, bytes) else str(original)
        record["caption"] = entries[index]["caption"]
        yield f"{index:09d}", record


def recaption(captioner_workdir: str, data: str, out_dir: str, chunk: int = 16, rows: int = 4,
              show_progress: bool = True, log=print) -> dict:
    """Runs the job (module docstring); returns the report it also logs as JSON."""
    data_dir = resolve_caption_source(data)
    if not os.path.exists(os.path.join(data_dir, "dataset_info.json")):
        raise FileNotFoundError(f"{data_dir} is not a built dataset (no dataset_info.json)")
    if os.path.abspath(out_dir) == os.path.abspath(data_dir) or os.path.abspath(data_dir).startswith(
            os.path.abspath(out_dir) + os.sep):
        raise ValueError(f"--out {out_dir} must not contain the input dataset {data_dir}")
    builder = tfds.builder_from_directory(data_dir)
    features = dict(builder.info.features)
    if "caption" not in features or "caption_original" in features:
        raise ValueError(f"{data_dir}: expected clip records with a `caption` and no `caption_original` field")
    captioner = ClipCaptioner.from_workdir(captioner_workdir, rows=rows)
    os.makedirs(os.path.join(out_dir, PROGRESS_DIR), exist_ok=True)
    splits = sorted(builder.info.splits.keys())
    progress = {s: os.path.join(out_dir, PROGRESS_DIR, f"{s}.jsonl") for s in splits}
    counts = {s: caption_split(captioner, builder, s, progress[s], chunk, show_progress) for s in splits}
    sources = {s: builder.as_data_source(split=s) for s in splits}
    out = _output_builder(builder.info.name, str(builder.info.version), features,
                          {s: _records(sources[s], read_progress(progress[s])) for s in splits}, out_dir)
    already_written = os.path.exists(os.path.join(str(out.data_path), "dataset_info.json"))
    if not already_written:
        out.download_and_prepare(download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    report = _report(counts, str(out.data_path), already_written)
    log(json.dumps(report))
    return report


def _report(counts: dict, dataset: str, already_written: bool) -> dict:
    read = sum(c["records"] for c in counts.values())
    failed = {f"{split}/{i}": reason for split, c in counts.items() for i, reason in sorted(c["failed"].items())}
    return {
        "dataset": dataset, "records_read": read, "records_written": read - len(failed),
        "captioned_now": sum(c["captioned_now"] for c in counts.values()),
        "skipped": {"already_captioned": sum(c["already_captioned"] for c in counts.values()),
                    "failed": len(failed), "dataset_already_written": already_written},
        "failed_records": dict(list(failed.items())[:20]),
        "splits": {s: {k: v for k, v in c.items() if k != "failed"} | {"failed": len(c["failed"])}
                   for s, c in counts.items()},
    }

