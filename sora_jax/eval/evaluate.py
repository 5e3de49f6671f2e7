"""`sora-jax eval`: generate the prompt suite with a checkpoint and write the report.

Stages: load the suite and its real reference clips; load the probe (its held-out accuracy decides
whether probe-based metrics are trusted); score the real clips (the ceiling); generate and score each
run (the checkpoint, then `--compare`); VAE reconstruction metrics (`--vae-workdir`); validation flow
loss at fixed timesteps of the DiT workdir; then `report.json` and `report.html`.
"""
from __future__ import annotations

import json
import os
from typing import Callable

import jax
import numpy as np
from flax import nnx

from sora_jax.eval import harness, report
from sora_jax.eval.frechet import frechet_distance
from sora_jax.eval.probe import ProbeReader
from sora_jax.eval.probe_task import ACCURACY_FILE, REQUIRED_ACCURACY, measure_probe
from sora_jax.eval.suite import DEFAULT_SUITE, load_suite, reference_clip
from sora_jax.eval.vae_metrics import make_reconstructor, reconstruction_quality


def load_probe(probe_workdir: str) -> tuple[ProbeReader, dict | None]:
    """The probe of a `sora-jax train --config experiments/probe.py:...` workdir and its held-out
    accuracy report (`probe_accuracy.json`, None if the run never wrote one)."""
    from sora_jax.train.restore import load_trained  # noqa: PLC0415 (heavy import, only when used)

    trained = load_trained(probe_workdir)
    if trained.config.task != "probe":
        raise ValueError(f"{probe_workdir} trained task {trained.config.task!r}, not a probe")
    path = os.path.join(probe_workdir, ACCURACY_FILE)
    held_out = json.load(open(path)) if os.path.isfile(path) else None
    return ProbeReader(trained.model), held_out


def generator_fn(workdir: str, step: int | None = None, **sampling) -> harness.GenerateFn:
    """`generate_fn(prompt, frames, height, width, seed)` from `sora_jax.generate.Generator` (lazy import)."""
    try:
        from sora_jax.generate import Generator  # noqa: PLC0415
    except ImportError as error:
        raise ValueError(f"generation is not available in this build (sora_jax.generate: {error})") from None
    generator = Generator.from_workdir(workdir, step=step)
    options = {k: v for k, v in sampling.items() if v is not None}

    def generate(prompt: str, frames: int, height: int, width: int, seed: int) -> np.ndarray:
        return generator.generate(prompt, frames, height, width, seed=seed, **options)

    return generate


def validation_flow_loss(workdir: str, batches: int = 2) -> dict | None:
    """Flow loss at the task's fixed timesteps (`DiTTask.validation_fn`) on `batches` held-out batches
    of packed rows of the run's validation split, averaged; None when the run is not a DiT."""
    from sora_jax.train.restore import load_trained  # noqa: PLC0415

    trained = load_trained(workdir)
    if trained.config.task != "dit":
        return None
    task = trained.task
    graphdef, state = nnx.split(trained.model)
    run = jax.jit(lambda state, batch: task.validation_fn(nnx.merge(graphdef, state), batch, jax.random.key(0)))
    stream = iter(task.build_input("validation", trained.config.global_batch_size, 0, 1))
    values = [jax.device_get(run(state, task.host_batch(next(stream)))) for _ in range(batches)]
    return {k: float(np.mean([v[k] for v in values])) for k in values[0]} | {"batches": batches, "step": trained.step}


def vae_metrics(vae, references: list[np.ndarray], reader: ProbeReader | None) -> dict:
    """PSNR, SSIM and (with a probe) the Fréchet distance of VAE reconstructions of the real clips."""
    reconstruct = make_reconstructor(vae)
    reconstructions = [reconstruct(video) for video in references]
    out = reconstruction_quality(references, reconstructions)
    if reader is not None:
        out["frechet"] = frechet_distance(reader.read(reconstructions)["features"], reader.read(references)["features"])
    return out


def score_run(entries, videos, reader, reference_features) -> dict:
    """Per-clip results and summary of one set of clips (features dropped: not JSON)."""
    scored = harness.score_clips(entries, videos, reader, reference_features)
    return {"summary": scored["summary"], "clips": scored["clips"]}


def _probe_section(reader, held_out, references, entries) -> dict:
    clips = [{"video": v, "meta": ref["meta"]} for v, ref in zip(references, entries)]
    on_suite = measure_probe(reader, clips)
    basis = held_out or on_suite
    return {"held_out": held_out, "suite_real": on_suite, "required": REQUIRED_ACCURACY,
            "trusted": bool(basis["accuracy"] >= REQUIRED_ACCURACY)}


def run_eval(workdir: str, out_dir: str, prompts: str | None = None, probe_workdir: str | None = None,
             vae_workdir: str | None = None, compare: str | None = None, seed: int = 0,
             generate_fns: dict[str, Callable] | None = None, flow_batches: int = 2, log=print,
             prompt_field: str = "prompt", **sampling) -> dict:
    """Runs the whole evaluation and writes the report; returns {"json", "html", "summary"}.

    `generate_fns` ({run name: generate_fn}) replaces generation from the workdirs (tests, other
    generators); otherwise `workdir` (and `compare`) are DiT workdirs generated through
    `sora_jax.generate`. `prompt_field` "prompt_short" prompts with the suite's short prompts instead
    of its detailed ones (a model trained on short captions; `generate --upsample-prompt` models).
    """
    entries = load_suite(prompts)
    os.makedirs(out_dir, exist_ok=True)
    clips = [reference_clip(e) for e in entries]
    references = [c["video"] for c in clips]
    reader, held_out = load_probe(probe_workdir) if probe_workdir else (None, None)
    if reader is None:
        log("sora-jax eval: no --probe-workdir: prompt following and Fréchet distance are not computed")
    reference_features = reader.read(references)["features"] if reader is not None else None
    result = {"suite": os.path.abspath(prompts or DEFAULT_SUITE), "workdir": workdir, "prompt_field": prompt_field,
              "runs": {}}
    if reader is not None:
        result["probe"] = _probe_section(reader, held_out, references, [{"meta": c["meta"]} for c in clips])
        result["probe_trusted"] = result["probe"]["trusted"]
    if generate_fns is None:
        generate_fns = {os.path.basename(os.path.normpath(workdir)) or "model": generator_fn(workdir, **sampling)}
        if compare:
            generate_fns[os.path.basename(os.path.normpath(compare)) + " (compare)"] = generator_fn(compare, **sampling)
    videos = {}
    for name, fn in generate_fns.items():
        log(f"sora-jax eval: generating {len(entries)} prompts for {name}")
        videos[name] = harness.generate_clips(fn, entries, seed, prompt_field)
        result["runs"][name] = score_run(entries, videos[name], reader, reference_features)
    result["runs"]["real clips"] = score_run(entries, references, reader, reference_features)
    if reader is not None:
        alternate = harness.alternate_real_clips(entries)
        # Real clips of other seeds: the estimator's spread at this sample size (not a paired comparison).
        result["runs"]["real clips"]["summary"]["frechet_other_real_clips"] = frechet_distance(
            reader.read(alternate)["features"], reference_features)
    videos["real clips"] = references
    _model_extras(result, workdir, compare, vae_workdir, references, reader, flow_batches, log)
    paths = {"json": report.write_json(result, out_dir), "html": report.write_html(result, entries, videos, out_dir)}
    return paths | {"summary": {name: run["summary"] for name, run in result["runs"].items()}}


def _model_extras(result, workdir, compare, vae_workdir, references, reader, flow_batches, log) -> None:
    """Validation flow loss of each DiT workdir and VAE metrics, attached to the runs they belong to."""
    names = list(result["runs"])
    for name, path in zip(names, [workdir, compare]):
        if path and os.path.isfile(os.path.join(path, "config.json")) and name != "real clips":
            result["runs"][name]["flow"] = validation_flow_loss(path, flow_batches)
    if vae_workdir:
        from sora_jax.train.restore import load_trained  # noqa: PLC0415

        log("sora-jax eval: VAE reconstructions of the real clips")
        result["runs"]["real clips"]["vae"] = vae_metrics(load_trained(vae_workdir).model.vae, references, reader)
