"""Deliberately corrupted Shapes World clips: the negative controls each metric must catch.

Corruptions that change the world (colours, gravity, deletion) re-render the scene from its seed
with one thing changed, so everything else stays exact; the others edit the frames.

| corruption | what changes | the metric meant to catch it |
|---|---|---|
| colours_swapped | each object gets another palette colour (a cycle through colours absent from the clip) | prompt following (presence/shape by colour) |
| motion_reversed | frames in reverse order | prompt following (direction), physics (falls) |
| gravity_removed | falling objects float at their release height (drift kept) | physics (gravity fit) |
| object_deleted | the hidden object of the first returning occlusion (else the first moving object) vanishes from mid-clip on | object permanence, identity flicker |
| frames_shuffled | frames in a fixed random order | temporal consistency (motion jitter), physics |
"""
from __future__ import annotations

import json

import numpy as np

from data_pipelines.shapes_world.render import render_scene
from data_pipelines.shapes_world.scene import sample_scene
from sora_jax.eval.world import COLOUR_NAMES

CORRUPTIONS = ("colours_swapped", "motion_reversed", "gravity_removed", "object_deleted", "frames_shuffled")
_FAR_AWAY = -1e5  # px: an object moved here is off every frame


def _scene_of(meta: dict, max_objects: int = 3):
    return sample_scene(int(meta["seed"]), int(meta["frames"]), int(meta["height"]), int(meta["width"]),
                        float(meta["fps"]), max_objects)


def _check_scene(scene, meta: dict) -> None:
    """The re-sampled scene must be the clip's (same objects), or the corruption would be of another clip."""
    if [(o.colour, o.shape) for o in scene.objects] != [(o["colour"], o["shape"]) for o in meta["objects"]]:
        raise ValueError(f"clip seed {meta['seed']} does not re-create its scene (max_objects differs?)")


def swap_colours(meta: dict) -> np.ndarray:
    """Re-render with each object's colour replaced by the next colour not used in the clip."""
    scene = _scene_of(meta)
    _check_scene(scene, meta)
    unused = [name for name in COLOUR_NAMES if name not in {o.colour for o in scene.objects}]
    for index, obj in enumerate(scene.objects):
        obj.colour = unused[index % len(unused)]
    return render_scene(scene)[0]


def remove_gravity(meta: dict) -> np.ndarray:
    """Re-render with every falling object held at its release height (its sideways drift kept)."""
    scene = _scene_of(meta)
    _check_scene(scene, meta)
    for obj in scene.objects:
        if obj.motion == "fall":
            obj.world_positions = obj.world_positions.copy()
            obj.world_positions[:, 1] = obj.world_positions[0, 1]
    return render_scene(scene)[0]


def deletion_target(meta: dict, occlusions: list[dict] | None = None) -> tuple[str, int]:
    """(colour, first frame) of the object `delete_object` removes: the hidden object of the first
    returning occlusion from its first hidden frame, else the first moving object from mid-clip."""
    if occlusions:
        return occlusions[0]["occluded"], int(occlusions[0]["frames"][0])
    moving = [o for o in meta["objects"] if o["motion"] != "static"] or meta["objects"]
    return moving[0]["colour"], int(meta["frames"]) // 2


def delete_object(meta: dict, occlusions: list[dict] | None = None) -> np.ndarray:
    """Re-render with one object (see `deletion_target`) moved off-frame from a mid-clip frame on."""
    colour, start = deletion_target(meta, occlusions)
    scene = _scene_of(meta)
    _check_scene(scene, meta)
    for obj in scene.objects:
        if obj.colour == colour:
            obj.world_positions = obj.world_positions.copy()
            obj.world_positions[start:] = _FAR_AWAY
    return render_scene(scene)[0]


def shuffle_frames(video: np.ndarray, seed: int = 0) -> np.ndarray:
    """Frames in a fixed random order that moves every frame (a derangement) when T > 1."""
    frames = len(video)
    rng = np.random.default_rng(seed)
    order = np.arange(frames)
    while frames > 1 and np.any(order == np.arange(frames)):
        order = rng.permutation(frames)
    return video[order]


def corrupt(name: str, clip: dict, occlusions: list[dict] | None = None) -> np.ndarray:
    """The corrupted video `(T, H, W, 3)` of a real clip (`video` and `meta`) for corruption `name`."""
    meta = clip.get("meta_dict") or json.loads(clip["meta"])
    if name == "colours_swapped":
        return swap_colours(meta)
    if name == "motion_reversed":
        return clip["video"][::-1].copy()
    if name == "gravity_removed":
        return remove_gravity(meta)
    if name == "object_deleted":
        return delete_object(meta, occlusions)
    if name == "frames_shuffled":
        return shuffle_frames(clip["video"])
    raise ValueError(f"unknown corruption {name!r}; known: {list(CORRUPTIONS)}")
