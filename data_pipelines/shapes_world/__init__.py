"""Shapes World: the project's embedded procedural video dataset, with exact ground truth.

`generate_clip(seed, frames, height, width, fps=8.0)` samples a scene of 1 to `max_objects`
shapes (static, linear, bounce, fall or rotate motion; optional camera pan; a "pass_behind"
scenario that makes one object cross behind a nearer one), renders it with anti-aliasing in
vectorised numpy, measures each object's visibility on the rendered coverages, and captions it
from that ground truth alone. The vocabularies are exported for probes and evaluation.

Units in `meta`: positions in screen pixels (x right, y down, pixel (i, j) centred at
(j + 0.5, i + 0.5)); velocities in px/frame of the screen position (world velocity = velocity +
camera velocity); angles in rad, positive = clockwise on screen; gravity in px/frame^2;
angular_velocity in rad/frame; frame indices from 0. A single frame is an image: every object
is "static" and the camera does not pan.
"""
import json
import math
import numbers

import numpy as np

from .captions import MOTION_VERBS, captions_from_meta
from .render import occlusion_events, render_scene
from .scene import BACKGROUND_COLOURS, BACKGROUNDS, COLOURS, MAX_OBJECTS, MOTIONS, SHAPES, SIZES, sample_scene

__all__ = [
    "BACKGROUNDS",
    "BACKGROUND_COLOURS",
    "COLOURS",
    "MOTIONS",
    "MOTION_VERBS",
    "SHAPES",
    "SIZES",
    "captions_from_meta",
    "generate_clip",
]

MIN_SIDE = 16
_DECIMALS = 4


def generate_clip(seed, frames, height, width, *, fps=8.0, max_objects=3):
    """Generate one Shapes World clip, fully determined by its arguments.

    Returns {"video": uint8 (frames, height, width, 3), "caption_short": str, "caption": str,
    "meta": JSON text}, where meta holds the complete ground truth (objects, per-frame positions,
    velocities, angles, visibility, bounces, depth order, occlusion events, camera offsets).
    Raises ValueError for frames < 1, a side < 16, a negative seed, fps <= 0 or max_objects
    outside 1..6, and TypeError for non-integer seed, frames, sides or max_objects.
    """
    _check_int("seed", seed, 0)
    _check_int("frames", frames, 1)
    _check_int("height", height, MIN_SIDE)
    _check_int("width", width, MIN_SIDE)
    _check_int("max_objects", max_objects, 1)
    if max_objects > MAX_OBJECTS:
        raise ValueError(f"max_objects must be at most {MAX_OBJECTS}, got {max_objects}")
    if not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a finite number > 0, got {fps!r}")
    scene = sample_scene(int(seed), int(frames), int(height), int(width), float(fps), int(max_objects))
    video, stats = render_scene(scene)
    meta = scene_meta(scene, stats)
    caption_short, caption = captions_from_meta(meta)
    return {"video": video, "caption_short": caption_short, "caption": caption, "meta": json.dumps(meta)}


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def _rounded(values):
    # Adding 0.0 turns -0.0 into 0.0 so equal values always serialise identically.
    return (np.round(values, _DECIMALS) + 0.0).tolist()


def scene_meta(scene, stats):
    """The ground-truth dict of a rendered scene (what `meta` serialises)."""
    fps = scene.fps
    camera_velocity = scene.camera_velocity / fps  # (2,) px/frame
    direction = None
    if camera_velocity.any():
        axis = int(np.argmax(np.abs(camera_velocity)))
        direction = (("left", "right"), ("up", "down"))[axis][int(camera_velocity[axis] > 0)]
    return {
        "seed": scene.seed,
        "frames": scene.frames,
        "height": scene.height,
        "width": scene.width,
        "fps": fps,
        "scenario": scene.scenario,
        "background": dict(scene.background),
        "camera": {
            "pan": direction is not None,
            "direction": direction,
            "velocity": _rounded(camera_velocity),
            "offsets": _rounded(scene.camera_offsets),
        },
        "world_box": _rounded(np.array(scene.world_box)),
        "objects": [_object_meta(obj, scene, stats) for obj in scene.objects],
        "depth_order": scene.depth_order,
        "occlusions": occlusion_events(stats, scene.depth_order),
    }


def _object_meta(obj, scene, stats):
    fps = scene.fps
    entry = {
        "id": obj.id,
        "shape": obj.shape,
        "colour": obj.colour,
        "rgb": list(COLOURS[obj.colour]),
        "size": obj.size,
        "radius": round(obj.radius, _DECIMALS),
        "extents": _rounded(np.array(obj.extents)),
        "motion": obj.motion,
        "depth": obj.depth,
        "positions": _rounded(obj.world_positions - scene.camera_offsets),  # (T, 2)
        "velocities": _rounded((obj.world_velocities - scene.camera_velocity) / fps),  # (T, 2)
        "angles": _rounded(obj.angles),
        "visibility": _rounded(stats.visibility[obj.id]),
        "in_frame": _rounded(stats.in_frame[obj.id]),
        "bounces": [frame for frame, _ in obj.bounces],
        "bounce_walls": [wall for _, wall in obj.bounces],
    }
    if obj.motion == "fall":
        entry.update(gravity=round(obj.gravity / fps**2, 6), restitution=round(obj.restitution, _DECIMALS),
                     rest_frame=obj.rest_frame)
    if obj.motion == "rotate":
        entry["angular_velocity"] = round(obj.angular_velocity / fps, 6)
    return entry
