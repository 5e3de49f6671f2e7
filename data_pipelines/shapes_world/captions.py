"""Captions for Shapes World clips, derived only from the clip's ground-truth meta.

`captions_from_meta` reads nothing but the meta dict (the parsed `meta` JSON), so every claim a
caption makes can be checked against that ground truth. Frame numbers count from 0, as in meta.
Motion is described in the world (a still object stays still even while the camera pans past).
"""
import math

# The verb every detailed caption uses for each motion type (in clips of more than one frame).
MOTION_VERBS = {"static": "stays still", "linear": "moves", "bounce": "bounces", "fall": "falls", "rotate": "spins"}
# World speed, in frame lengths (the longer side) per second, below which motion is "slow" and
# above which it is "quick".
_SLOW, _QUICK = 0.12, 0.45
_COUNT_WORDS = {1: "once", 2: "twice", 3: "three times"}
_MAX_LISTED_BOUNCES = 4


def captions_from_meta(meta):
    """Return (caption_short, caption) for a clip, computed from its meta dict alone.

    The short caption lists the objects ("a red circle and a blue star"). The detailed one names
    each object's size, colour and shape and the background, then describes each object's motion
    with its direction and the frames of its bounces, entering or leaving the frame, which object
    passes behind which and when, and the camera pan. A single frame gets placement only.
    """
    objects = meta["objects"]
    short = _join([f"{_article(obj['colour'])} {obj['colour']} {obj['shape']}" for obj in objects])
    listing = _join([f"a {obj['size']} {obj['colour']} {obj['shape']}" for obj in objects])
    sentences = [f"{listing[0].upper()}{listing[1:]} {_background_phrase(meta['background'])}."]
    for obj in objects:
        sentences.append(_object_sentence(obj, meta))
    names = {obj["id"]: _name(obj) for obj in objects}
    for event in meta["occlusions"]:
        sentences.append(_occlusion_sentence(event, names, objects, meta))
    if meta["frames"] > 1:
        camera = meta["camera"]
        sentences.append(f"The camera pans {camera['direction']}." if camera["pan"] else "The camera does not move.")
    return short, " ".join(sentences)


def _name(obj):
    return f"the {obj['colour']} {obj['shape']}"


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


def _join(items):
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _background_phrase(background):
    colours = background["colours"]
    if background["kind"] == "solid":
        return f"on a plain {colours[0]} background"
    if background["kind"] == "gradient":
        return f"on a {colours[0]} to {colours[1]} {background['direction']} gradient"
    if background["pattern"] == "checker":
        return f"on a {colours[0]} and {colours[1]} checkerboard"
    return f"on {colours[0]} and {colours[1]} {background['orientation']} stripes"


def placement(position, meta):
    """Where a screen position lies on a 3 x 3 grid of the frame."""
    column = min(max(int(3 * position[0] / meta["width"]), 0), 2)
    row = min(max(int(3 * position[1] / meta["height"]), 0), 2)
    vertical, horizontal = ("top", "", "bottom")[row], ("left", "", "right")[column]
    if vertical and horizontal:
        return f"in the {vertical} {horizontal}"
    if vertical:
        return f"at the {vertical}"
    return f"on the {horizontal}" if horizontal else "in the centre"


def _world_velocity(obj, meta, frame):
    """World velocity in px/frame: the screen velocity plus the camera's."""
    camera = meta["camera"]["velocity"]
    return (obj["velocities"][frame][0] + camera[0], obj["velocities"][frame][1] + camera[1])


def _direction_phrase(velocity):
    """Compass wording of a 2-D velocity (y points down)."""
    vx, vy = velocity
    horizontal = "left to right" if vx > 0 else "right to left"
    vertical = "downward" if vy > 0 else "upward"
    if abs(vx) >= 2.4 * abs(vy):  # within ~22.5 degrees of horizontal
        return horizontal
    if abs(vy) >= 2.4 * abs(vx):
        return vertical
    return f"diagonally {'down' if vy > 0 else 'up'} and to the {'right' if vx > 0 else 'left'}"


def _speed_adverb(velocity, meta):
    speed = math.hypot(*velocity) * meta["fps"] / max(meta["width"], meta["height"])
    return "slowly " if speed < _SLOW else "quickly " if speed > _QUICK else ""


def _object_sentence(obj, meta):
    if meta["frames"] == 1:
        return f"{_name(obj).capitalize()} is {placement(obj['positions'][0], meta)}."
    motion = obj["motion"]
    velocity = _world_velocity(obj, meta, 0)
    if motion == "static":
        phrase = f"stays still {placement(obj['positions'][0], meta)}"
    elif motion == "linear":
        phrase = f"moves {_speed_adverb(velocity, meta)}{_direction_phrase(velocity)}"
    elif motion == "bounce":
        phrase = _bounce_phrase(obj, velocity, meta)
    elif motion == "fall":
        phrase = _fall_phrase(obj, velocity)
    else:
        turn = "clockwise" if obj["angular_velocity"] > 0 else "counterclockwise"
        drift = f"while drifting {_direction_phrase(velocity)}" if any(velocity) else "in place"
        phrase = f"spins {turn} {drift}"
    edges = _frame_edge_events(obj)
    return f"{_name(obj).capitalize()} {phrase}" + (f"; it {_join(edges)}." if edges else ".")


def _bounce_phrase(obj, velocity, meta):
    heading = f"moves {_speed_adverb(velocity, meta)}{_direction_phrase(velocity)}"
    hits = list(zip(obj["bounce_walls"], obj["bounces"]))
    if not hits:
        return f"{heading} but the clip ends before it bounces"
    listed = [f"the {wall} wall at frame {frame}" for wall, frame in hits[:_MAX_LISTED_BOUNCES]]
    extra = len(hits) - len(listed)
    if extra:
        listed.append(f"{extra} more {'wall' if extra == 1 else 'walls'}")
    return f"{heading} and bounces off {_join(listed)}"


def _fall_phrase(obj, velocity):
    drift = f", drifting {'right' if velocity[0] > 0 else 'left'}," if abs(velocity[0]) > 0.05 else ""
    bounces = obj["bounces"]
    if bounces:
        count = _COUNT_WORDS.get(len(bounces), f"{len(bounces)} times")
        frames = _join([str(frame) for frame in bounces])
        phrase = f"falls{drift} and bounces {count} on the floor (at frame{'s' if len(bounces) > 1 else ''} {frames})"
    else:
        phrase = f"falls{drift} toward the floor"
    if obj["rest_frame"] is not None:
        phrase += f", coming to rest on the floor at frame {obj['rest_frame']}"
    return phrase


def _frame_edge_events(obj):
    """'enters the frame at frame k' / 'leaves the frame at frame k' from the in-frame fraction."""
    events = []
    inside = [fraction > 0.0 for fraction in obj["in_frame"]]
    for frame in range(1, len(inside)):
        if inside[frame] != inside[frame - 1]:
            events.append(f"{'enters' if inside[frame] else 'leaves'} the frame at frame {frame}")
    return events


def _frame_span(first, last, frames):
    if first == last:
        return f"at frame {first}"
    if first == 0 and last == frames - 1:
        return "throughout the clip"
    return f"from frame {first} to {last}"


def _occlusion_sentence(event, names, objects, meta):
    occluded, occluder = names[event["occluded"]], names[event["occluder"]]
    hidden = "completely" if event["min_visibility"] < 0.02 else "partly"
    if meta["frames"] == 1:
        return f"{occluded.capitalize()} is {hidden} hidden behind {occluder}."
    first, last = event["frames"]
    span = _frame_span(first, last, meta["frames"])
    obj = objects[event["occluded"]]
    moving = any(any(_world_velocity(obj, meta, frame)) for frame in range(first, last + 1))
    if moving:
        vanish = ", disappearing completely" if hidden == "completely" else ""
        return f"{occluded.capitalize()} passes behind {occluder} {span}{vanish}."
    return f"{occluded.capitalize()} is {hidden} hidden behind {occluder} {span}."
