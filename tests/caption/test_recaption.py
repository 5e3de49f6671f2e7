"""The re-captioning job on a tiny dataset: every record gets a generated caption with its original
kept, the output reads back through the pipeline's record decoder, and reruns skip finished work."""
import os

import pytest

from data_pipelines.sources import DecodeOptions, clip_decoder, open_source
from sora_jax.caption import cli as caption_cli
from sora_jax.caption.recaption import PROGRESS_DIR, read_progress, recaption


def _records(dataset_dir, split):
    source, name = open_source(dataset_dir, split)
    return [source[i] for i in range(len(source))], name


@pytest.fixture(scope="module")
def first_run(overfit_workdir, overfit_dataset, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("recaptioned"))
    return out, recaption(overfit_workdir, overfit_dataset, out, chunk=8, show_progress=False, log=lambda _: None)


def test_every_record_gets_a_caption_and_keeps_its_original(first_run, overfit_dataset):
    out, report = first_run
    assert report["records_read"] == report["records_written"] == report["captioned_now"] == 36  # 4 + 32
    assert report["skipped"] == {"already_captioned": 0, "failed": 0, "dataset_already_written": False}
    for split in ("train", "validation"):
        original, _ = _records(overfit_dataset, split)
        written, name = _records(report["dataset"], split)
        assert name == "shapes_world" and len(written) == len(original)
        for before, after in zip(original, written):
            assert after["caption_original"] == before["caption"]
            assert after["caption"].decode().startswith(("A ", "An "))  # a generated detailed caption
            assert (after["video"] == before["video"]).all() and after["meta"] == before["meta"]
    # The overfit captioner reproduces its 4 training captions, so there the new caption is the old one.
    train, _ = _records(report["dataset"], "train")
    assert all(r["caption"] == r["caption_original"] for r in train)
    # The pipeline's decoder reads the generated caption as `caption`.
    decoded = clip_decoder("shapes_world", DecodeOptions())(train[0])
    assert decoded["caption"] == train[0]["caption"].decode()


def test_rerun_skips_finished_work(first_run, overfit_workdir, overfit_dataset):
    out, report = first_run
    again = recaption(overfit_workdir, overfit_dataset, out, show_progress=False, log=lambda _: None)
    assert again["captioned_now"] == 0 and again["skipped"]["already_captioned"] == 36
    assert again["skipped"]["dataset_already_written"] and again["dataset"] == report["dataset"]


def test_interrupted_run_resumes_only_missing_records(overfit_workdir, overfit_dataset, first_run, tmp_path):
    out, _ = first_run
    os.makedirs(tmp_path / PROGRESS_DIR)
    lines = open(os.path.join(out, PROGRESS_DIR, "validation.jsonl")).read().splitlines()
    # A run killed after 20 validation captions, mid-way through writing the 21st line.
    (tmp_path / PROGRESS_DIR / "validation.jsonl").write_text("\n".join(lines[:20]) + "\n" + lines[20][:15])
    report = recaption(overfit_workdir, overfit_dataset, str(tmp_path), show_progress=False, log=lambda _: None)
    assert report["captioned_now"] == 4 + 12 and report["skipped"]["already_captioned"] == 20
    resumed = read_progress(str(tmp_path / PROGRESS_DIR / "validation.jsonl"))
    assert sorted(resumed) == list(range(32))
    assert resumed == read_progress(os.path.join(out, PROGRESS_DIR, "validation.jsonl"))  # greedy: same captions


def test_cli_errors_are_clear(tmp_path, overfit_dataset):
    import argparse

    parser = argparse.ArgumentParser()
    caption_cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["caption", "--workdir", str(tmp_path / "none"), "--data", overfit_dataset,
                              "--out", str(tmp_path / "out"), "--no-progress"])
    with pytest.raises(FileNotFoundError, match="not a training workdir"):
        args.func(args)
    args = parser.parse_args(["caption", "--workdir", "w", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match="not a built dataset"):
        args.func(args)
    with pytest.raises(ValueError, match="must not contain the input"):
        recaption("w", overfit_dataset, os.path.dirname(overfit_dataset))
