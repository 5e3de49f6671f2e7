"""The versioned prompt suite: prompts with the attributes they ask for, drawn from Shapes World.

Each line of `prompts_v1.jsonl` is one prompt with everything needed to score a clip generated for
it: `id`, `prompt` (the detailed caption of a real still-camera Shapes World clip, the style the
model trains on), `prompt_short`, the clip shape `frames`, `height`, `width`, `fps`, the `objects`
it asks for (colour, shape, motion, direction; `sora_jax.eval.targets`), the `occlusions` it
implies (an object at most half visible behind another, seen again before the end) and the `seed`
that regenerates the real clip it was written from (`reference_clip`), so every generated clip has
a real counterpart for the Fréchet distance and the real-clip baselines.

v1 (`build_suite(version=1)`): 24 prompts, 9 and 17 frames at 48 x 48 and 48 x 64, chosen in seed
order to cover every motion type at least 4 times and 6 returning occlusions. A new suite gets a
new version and file; a version's file never changes.
"""
from __future__ import annotations

import json
import os

from data_pipelines.shapes_world import MOTIONS, generate_clip
from sora_jax.eval.probe_data import SEED_BASES, still_clip
from sora_jax.eval.targets import clip_objects

SUITE_VERSION = 1
DEFAULT_SUITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"prompts_v{SUITE_VERSION}.jsonl")
SUITE_SHAPES = ((9, 48, 48), (9, 48, 64), (17, 48, 64), (17, 48, 48))
SUITE_SIZE, MOTION_QUOTA, OCCLUSION_QUOTA = 24, 4, 6
HIDDEN_VISIBILITY = 0.5
REQUIRED_FIELDS = ("id", "prompt", "frames", "height", "width", "fps", "objects", "occlusions", "seed")


def returning_occlusions(meta: dict) -> list[dict]:
    """Occlusions that hide an object to at most half and end before the clip does, by colour."""
    colours = {obj["id"]: obj["colour"] for obj in meta["objects"]}
    return [{"occluded": colours[e["occluded"]], "occluder": colours[e["occluder"]], "frames": list(e["frames"])}
            for e in meta["occlusions"]
            if e["min_visibility"] <= HIDDEN_VISIBILITY and e["frames"][1] < meta["frames"] - 1]


def suite_entry(index: int, clip: dict) -> dict:
    """One suite line from a still-camera clip (with `meta_dict`)."""
    meta = clip["meta_dict"]
    return {"id": f"v{SUITE_VERSION}-{index:03d}", "prompt": clip["caption"], "prompt_short": clip["caption_short"],
            "frames": meta["frames"], "height": meta["height"], "width": meta["width"], "fps": meta["fps"],
            "objects": clip_objects(meta), "occlusions": returning_occlusions(meta), "seed": meta["seed"]}


def build_suite(size: int = SUITE_SIZE) -> list[dict]:
    """The v1 selection (module docstring): deterministic, seeds from the probe's "suite" range."""
    counts, occlusions, entries, index = dict.fromkeys(MOTIONS, 0), 0, [], 0
    while len(entries) < size:
        shape = SUITE_SHAPES[index % len(SUITE_SHAPES)]
        clip = still_clip(SEED_BASES["suite"] + index, *shape)
        index += 1
        entry = suite_entry(len(entries), clip)
        needs_motion = any(counts[obj["motion"]] < MOTION_QUOTA for obj in entry["objects"])
        needs_occlusion = entry["occlusions"] and occlusions < OCCLUSION_QUOTA
        quotas_full = all(v >= MOTION_QUOTA for v in counts.values()) and occlusions >= OCCLUSION_QUOTA
        if needs_motion or needs_occlusion or quotas_full:
            entries.append(entry)
            occlusions += bool(entry["occlusions"])
            for obj in entry["objects"]:
                counts[obj["motion"]] += 1
    return entries


def write_suite(path: str, entries: list[dict]) -> str:
    """Writes entries as JSON lines."""
    with open(path, "w") as f:
        for entry in entries:
            f.write(json.dumps(entry) + "\n")
    return path


def load_suite(path: str | None = None) -> list[dict]:
    """Reads a suite file (default: the current version); FileNotFoundError / ValueError on bad input."""
    path = path or DEFAULT_SUITE
    if not os.path.isfile(path):
        raise FileNotFoundError(f"prompt suite not found: {path}")
    entries = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not JSON ({error.msg})") from None
            missing = [name for name in REQUIRED_FIELDS if name not in entry]
            if missing:
                raise ValueError(f"{path}:{number}: prompt entry lacks {missing}")
            entries.append(entry)
    if not entries:
        raise ValueError(f"{path}: no prompts")
    return entries


def reference_clip(entry: dict) -> dict:
    """The real Shapes World clip a suite entry was written from (video, captions, meta, meta_dict)."""
    clip = generate_clip(int(entry["seed"]), int(entry["frames"]), int(entry["height"]), int(entry["width"]),
                         fps=float(entry["fps"]))
    return clip | {"meta_dict": json.loads(clip["meta"])}
