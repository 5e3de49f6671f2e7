"""The whole evaluation on a small suite: report.json and a self-contained report.html, with a
perfect generator (the real clips), a frame-shuffling one, and clear errors for bad input."""
import argparse
import base64
import json
import re

import numpy as np
import pytest
from flax import nnx

from sora_jax.eval import cli
from sora_jax.eval.corruptions import shuffle_frames
from sora_jax.eval.evaluate import run_eval, vae_metrics
from sora_jax.eval.harness import generate_clips
from sora_jax.eval.suite import load_suite, reference_clip, write_suite


@pytest.fixture(scope="module")
def small_suite(tmp_path_factory):
    entries = [e for e in load_suite() if e["occlusions"] or any(o["motion"] == "fall" for o in e["objects"])][:4]
    return write_suite(str(tmp_path_factory.mktemp("suite") / "prompts.jsonl"), entries), entries


@pytest.fixture(scope="module")
def report(small_suite, tmp_path_factory):
    path, entries = small_suite
    by_prompt = {e["prompt"]: e for e in entries}

    def perfect(prompt, frames, height, width, seed):
        return reference_clip(by_prompt[prompt])["video"]

    def shuffled(prompt, frames, height, width, seed):
        return shuffle_frames(perfect(prompt, frames, height, width, seed))

    out = str(tmp_path_factory.mktemp("report"))
    return run_eval("unused", out, prompts=path, generate_fns={"perfect": perfect, "shuffled": shuffled},
                    log=lambda *_: None)


def test_report_json_side_by_side(report):
    saved = json.load(open(report["json"]))
    assert list(saved["runs"]) == ["perfect", "shuffled", "real clips"]
    perfect, shuffled, real = (saved["runs"][name]["summary"] for name in saved["runs"])
    assert perfect == real  # the perfect generator is the real clips
    assert perfect["physics"]["pass_rate"] == 1.0 and perfect["permanence"]["pass_rate"] == 1.0
    assert shuffled["physics"]["pass_rate"] < perfect["physics"]["pass_rate"]
    assert shuffled["consistency"]["motion_jitter_px"] > 10 * perfect["consistency"]["motion_jitter_px"]
    assert len(saved["runs"]["perfect"]["clips"]) == 4 and "prompt_following" not in perfect  # no probe given


def test_report_html_is_self_contained(report):
    page = open(report["html"]).read()
    assert "src=\"http" not in page and "<script" not in page
    gifs = re.findall(r'data:image/gif;base64,([A-Za-z0-9+/=]+)', page)
    pngs = re.findall(r'data:image/png;base64,([A-Za-z0-9+/=]+)', page)
    assert len(gifs) == 4 and len(pngs) == 4
    assert base64.b64decode(gifs[0])[:6] == b"GIF89a" and base64.b64decode(pngs[0])[:4] == b"\x89PNG"
    assert "perfect" in page and "shuffled" in page and "real clips" in page


def test_bad_inputs_are_clear_errors(tmp_path, small_suite):
    args = argparse.Namespace(workdir=str(tmp_path), out=str(tmp_path / "out"), prompts=str(tmp_path / "none.jsonl"),
                              probe_workdir=None, vae_workdir=None, compare=None, seed=0, steps=None, guidance=None,
                              prompt_field="prompt")
    with pytest.raises(FileNotFoundError, match="prompt suite not found"):
        cli.run(args)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "prompt": "a red circle"}\n')
    with pytest.raises(ValueError, match="lacks"):
        load_suite(str(bad))
    args.prompts = small_suite[0]
    with pytest.raises(FileNotFoundError, match="not a training workdir"):
        cli.run(args)  # no DiT run in the workdir
    with pytest.raises(ValueError, match="expected"):
        run_eval("unused", str(tmp_path / "o"), prompts=small_suite[0], log=lambda *_: None,
                 generate_fns={"wrong": lambda p, f, h, w, s: np.zeros((f, h, w + 8, 3), np.uint8)})


def test_short_prompt_field_sends_the_short_prompts(small_suite):
    entries = small_suite[1]
    asked = []

    def record(prompt, frames, height, width, seed):
        asked.append(prompt)
        return np.zeros((frames, height, width, 3), np.uint8)

    generate_clips(record, entries, field="prompt_short")
    assert asked == [e["prompt_short"] for e in entries] and all(len(a) < len(e["prompt"]) for a, e in zip(asked, entries))
    with pytest.raises(ValueError, match="prompt field"):
        generate_clips(record, entries, field="caption")


class _StubPosterior:
    def __init__(self, mean):
        self.mean, self.source_shape = mean, None

    def mode(self):
        return self.mean


class StubVAE(nnx.Module):
    """Identity VAE, or one that mixes each pixel with its neighbours (a blurry reconstruction)."""

    def __init__(self, blur: bool):
        self.blur = blur

    def encode(self, video, *, policy=None):
        return _StubPosterior(video)

    def decode(self, latents, *, shape=None, clip=False):
        if self.blur:
            latents = 0.5 * latents + 0.25 * (jnp_roll(latents, 1) + jnp_roll(latents, -1))
        return latents


def jnp_roll(x, shift):
    import jax.numpy as jnp

    return jnp.roll(x, shift, axis=(2, 3))


def test_vae_metrics_rank_reconstructions(untrained_reader, small_suite):
    entries = [e for e in load_suite() if (e["frames"], e["height"], e["width"]) == (9, 48, 48)][:2]
    videos = [reference_clip(e)["video"] for e in entries]  # one shape: one compilation per VAE
    perfect = vae_metrics(StubVAE(False), videos, untrained_reader)
    blurry = vae_metrics(StubVAE(True), videos, untrained_reader)
    assert perfect["psnr_db"] > 90 and perfect["ssim"] == pytest.approx(1.0, abs=1e-5)
    assert perfect["frechet"] == pytest.approx(0.0, abs=1e-6)
    assert blurry["psnr_db"] < 40 and blurry["ssim"] < 0.99 and blurry["frechet"] > perfect["frechet"]
