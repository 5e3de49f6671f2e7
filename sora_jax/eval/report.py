"""The evaluation report: `report.json` and a self-contained `report.html` (plots and clips embedded
as base64 PNG and GIF, so the page is one file that opens anywhere).

A report holds one or more "runs" (the evaluated checkpoint first, then any `--compare` one), each
with its summary and per-clip results, plus the real-clip reference summary. Every table and plot
puts the runs side by side with the real clips, which show what a perfect model scores.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

# (label, path into a summary, higher is better)
SUMMARY_ROWS = (
    ("prompt following: accuracy", ("prompt_following", "accuracy"), True),
    ("Fréchet distance to the prompts' real clips (probe features)", ("frechet",), False),
    ("Fréchet distance, real clips of other seeds", ("frechet_other_real_clips",), False),
    ("physics: pass rate", ("physics", "pass_rate"), True),
    ("physics: mean residual (px)", ("physics", "mean_residual_px"), False),
    ("permanence: pass rate", ("permanence", "pass_rate"), True),
    ("identity flicker rate", ("consistency", "identity_flicker"), False),
    ("motion jitter (px/frame²)", ("consistency", "motion_jitter_px"), False),
    ("background flicker", ("consistency", "background_flicker"), False),
)


def lookup(summary: dict, path: tuple) -> float | None:
    """The value at `path` in a nested summary dict, None where absent."""
    for key in path:
        if not isinstance(summary, dict) or key not in summary:
            return None
        summary = summary[key]
    return summary


def write_json(report: dict, out_dir: str) -> str:
    """Writes `report.json` (NaN written as null) and returns its path."""
    path = os.path.join(out_dir, "report.json")
    with open(path, "w") as f:
        json.dump(_finite(report), f, indent=2)
    return path


def _finite(value):
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return _finite(value.item())
    return value


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def _gif(videos: list[np.ndarray], scale: int = 3) -> str:
    """Side-by-side animated GIF (base64) of clips of equal frame count, nearest-upscaled."""
    frames = []
    for t in range(len(videos[0])):
        row = np.concatenate([np.pad(v[t], ((2, 2), (2, 2), (0, 0)), constant_values=255) for v in videos], axis=1)
        frames.append(Image.fromarray(row).resize((row.shape[1] * scale, row.shape[0] * scale), Image.NEAREST))
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=125, loop=0)
    return base64.b64encode(buffer.getvalue()).decode()


def _bars(groups: dict[str, dict[str, float | None]], title: str) -> str:
    """Grouped bar chart: groups {series name: {category: value}}."""
    categories = sorted({c for values in groups.values() for c in values})
    figure, axis = plt.subplots(figsize=(7, 3))
    width = 0.8 / max(len(groups), 1)
    for i, (name, values) in enumerate(groups.items()):
        heights = [values.get(c) if values.get(c) is not None else 0.0 for c in categories]
        axis.bar(np.arange(len(categories)) + i * width, heights, width, label=name)
    axis.set_xticks(np.arange(len(categories)) + 0.4 - width / 2, categories)
    axis.set_ylim(0, 1.05)
    axis.set_title(title)
    axis.legend(fontsize=8)
    return _png(figure)


def _residual_histogram(runs: dict[str, dict]) -> str:
    figure, axis = plt.subplots(figsize=(7, 3))
    for name, run in runs.items():
        residuals = [f["residual_px"] for c in run["clips"] for f in c["physics"] if f["evaluable"]]
        if residuals:
            axis.hist(np.clip(residuals, 0, 10), bins=40, range=(0, 10), alpha=0.5, label=name)
    axis.set_xlabel("RMS residual of the prompted motion fit (px, clipped at 10)")
    axis.set_title("physics residuals")
    axis.legend(fontsize=8)
    return _png(figure)


def _trajectories(runs: dict[str, dict], entries: list[dict], count: int = 6) -> str:
    """Tracked centroid paths of the first `count` prompts, one panel each, every run overlaid."""
    figure, axes = plt.subplots(1, count, figsize=(3 * count, 3))
    for axis, entry in zip(np.atleast_1d(axes), entries[:count]):
        for name, run in runs.items():
            clip = next(c for c in run["clips"] if c["id"] == entry["id"])
            for colour, path in clip["trajectories"].items():
                path = np.array(path, dtype=float)
                axis.plot(path[:, 0], path[:, 1], "o-", ms=3, label=f"{name}: {colour}")
        axis.set_xlim(0, entry["width"])
        axis.set_ylim(entry["height"], 0)
        axis.set_title(entry["id"], fontsize=9)
        axis.legend(fontsize=6)
    return _png(figure)


def _summary_table(runs: dict[str, dict]) -> str:
    header = "".join(f"<th>{html.escape(name)}</th>" for name in runs)
    rows = []
    for label, path, higher in SUMMARY_ROWS:
        cells = []
        for run in runs.values():
            value = lookup(run["summary"], path)
            cells.append(f"<td>{'—' if value is None else f'{value:.4g}'}</td>")
        arrow = "↑" if higher else "↓"
        rows.append(f"<tr><td>{html.escape(label)} {arrow}</td>{''.join(cells)}</tr>")
    return f"<table><tr><th>metric</th>{header}</tr>{''.join(rows)}</table>"


def _extras(report: dict) -> str:
    parts = []
    for key in ("probe", "vae", "flow"):
        for name, run in report["runs"].items():
            if run.get(key):
                parts.append(f"<h3>{key}: {html.escape(name)}</h3><pre>{html.escape(json.dumps(_finite(run[key]), indent=1))}</pre>")
    return "".join(parts)


def write_html(report: dict, entries: list[dict], videos: dict[str, list[np.ndarray]], out_dir: str,
               max_clips: int = 12) -> str:
    """Writes `report.html`: summary table, plots and side-by-side sample clips (runs then the real clip)."""
    runs = report["runs"]
    attributes = {name: lookup(run["summary"], ("prompt_following", "per_attribute")) or {} for name, run in runs.items()}
    motions = {name: lookup(run["summary"], ("physics", "per_motion")) or {} for name, run in runs.items()}
    plots = [_bars(attributes, "prompt following by attribute"), _bars(motions, "physics pass rate by prompted motion"),
             _residual_histogram(runs), _trajectories(runs, entries)]
    images = "".join(f'<img src="data:image/png;base64,{p}"><br>' for p in plots)
    samples = []
    for i, entry in enumerate(entries[:max_clips]):
        gif = _gif([videos[name][i] for name in videos])
        samples.append(f'<div class="clip"><img src="data:image/gif;base64,{gif}"><p><b>{entry["id"]}</b> '
                       f'({" | ".join(videos)}): {html.escape(entry["prompt"])}</p></div>')
    trust = report.get("probe_trusted")
    warning = "" if trust else "<p class='warn'>The probe is below the required accuracy: probe-based metrics are not trusted.</p>"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>sora-jax eval</title><style>
body{{font-family:sans-serif;max-width:1100px;margin:auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}} .clip{{display:inline-block;width:520px;vertical-align:top}}
.warn{{color:#b00;font-weight:bold}} pre{{background:#f6f6f6;font-size:11px}}</style></head><body>
<h1>sora-jax eval</h1><p>suite {html.escape(str(report.get("suite")))}; {len(entries)} prompts</p>{warning}
{_summary_table(runs)}<h2>plots</h2>{images}<h2>samples</h2>{''.join(samples)}<h2>details</h2>{_extras(report)}
</body></html>"""
    path = os.path.join(out_dir, "report.html")
    with open(path, "w") as f:
        f.write(page)
    return path
