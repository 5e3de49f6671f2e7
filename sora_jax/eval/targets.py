"""What the probe predicts, read from a clip's ground-truth meta: one slot per palette colour.

Within a clip every object has its own colour (the world draws colours without replacement), so a
colour is a slot that names at most one object, and a clip with any number of objects has a fixed
target: for each of the 9 colours, `present` (is an object of that colour in the clip) and, when
present, its `shape` (5 classes), `motion` (5 classes) and `direction` (8 compass sectors of 45
degrees centred on right, down-right, down, ..., or "none"). Slots make multi-object clips and
prompts that name several objects uniform, and need no matching between predicted and prompted
objects: the prompt names the colour, the probe answers for that colour.

Direction is the world heading at the first frame (screen and world agree: the evaluation uses
still cameras): the velocity for linear and bounce, the drift for rotate ("none" when it spins in
place), "down" for fall (objects drop from rest) and "none" for static. The 45-degree sectors
match the captions' wording ("left to right", "diagonally down and to the right", ...), whose
boundaries sit at 22.6 degrees, and Shapes World headings are jittered at most 15 (linear) or 20
(bounce) degrees around a compass point, so no clip sits on a sector boundary.
"""
from __future__ import annotations

import json
import math

import numpy as np

from data_pipelines.shapes_world import MOTIONS, SHAPES
from sora_jax.eval.world import COLOUR_NAMES

DIRECTIONS = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right", "none")
ATTRIBUTES = ("present", "shape", "motion", "direction")
CLASS_COUNTS = {"shape": len(SHAPES), "motion": len(MOTIONS), "direction": len(DIRECTIONS)}
MIN_VISIBLE = 0.05  # an object never more than 5% visible is not "present" in the clip


def compass(velocity) -> str:
    """Direction name of a 2-D velocity (x right, y down); "none" when it is (almost) zero."""
    vx, vy = float(velocity[0]), float(velocity[1])
    if math.hypot(vx, vy) < 1e-6:
        return "none"
    sector = round(math.degrees(math.atan2(vy, vx)) / 45.0) % 8
    return DIRECTIONS[sector]


def object_direction(obj: dict, meta: dict) -> str:
    """The direction class of one meta object (see the module docstring)."""
    motion = obj["motion"]
    if motion == "static":
        return "none"
    if motion == "fall":
        return "down"
    camera = meta["camera"]["velocity"]
    velocity = (obj["velocities"][0][0] + camera[0], obj["velocities"][0][1] + camera[1])
    return compass(velocity)


def object_attributes(obj: dict, meta: dict) -> dict:
    """`{"colour", "shape", "motion", "direction"}` of one meta object (single frames are static)."""
    return {"colour": obj["colour"], "shape": obj["shape"], "motion": obj["motion"],
            "direction": object_direction(obj, meta)}


def clip_objects(meta) -> list[dict]:
    """Attributes of every object that is visible somewhere in the clip (meta dict or JSON text)."""
    meta = json.loads(meta) if isinstance(meta, str) else meta
    return [object_attributes(obj, meta) for obj in meta["objects"] if max(obj["visibility"]) >= MIN_VISIBLE]


def slot_targets(objects: list[dict]) -> dict:
    """Per-colour-slot arrays from object attributes: present (K,) float32; shape, motion, direction (K,) int32.

    Absent slots get class 0 in the class targets; losses and accuracies mask them with `present`.
    """
    count = len(COLOUR_NAMES)
    targets = {"present": np.zeros(count, np.float32)} | {name: np.zeros(count, np.int32) for name in CLASS_COUNTS}
    for obj in objects:
        slot = COLOUR_NAMES.index(obj["colour"])
        targets["present"][slot] = 1.0
        targets["shape"][slot] = SHAPES.index(obj["shape"])
        targets["motion"][slot] = MOTIONS.index(obj["motion"])
        targets["direction"][slot] = DIRECTIONS.index(obj["direction"])
    return targets


def decode_slots(present: np.ndarray, shape: np.ndarray, motion: np.ndarray, direction: np.ndarray) -> list[dict]:
    """Objects a probe predicted: for each slot with presence probability > 0.5, its argmax classes.

    Args are one clip's outputs: present (K,) probabilities and (K, classes) logits or probabilities.
    """
    objects = []
    for slot, probability in enumerate(present):
        if probability > 0.5:
            objects.append({"colour": COLOUR_NAMES[slot], "shape": SHAPES[int(np.argmax(shape[slot]))],
                            "motion": MOTIONS[int(np.argmax(motion[slot]))],
                            "direction": DIRECTIONS[int(np.argmax(direction[slot]))]})
    return objects


def attribute_hits(prompted: list[dict], predicted: list[dict]) -> dict[str, list[bool]]:
    """For each prompted object and attribute, whether the prediction agrees.

    `present` is whether the prompted colour was found; shape, motion and direction count as misses
    when it was not. Returns {attribute: [hit per prompted object]}.
    """
    by_colour = {obj["colour"]: obj for obj in predicted}
    hits = {name: [] for name in ATTRIBUTES}
    for obj in prompted:
        found = by_colour.get(obj["colour"])
        hits["present"].append(found is not None)
        for name in ("shape", "motion", "direction"):
            hits[name].append(found is not None and found[name] == obj[name])
    return hits
