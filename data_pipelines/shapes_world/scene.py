"""Shapes World scenes: sampling a scene from a seed and simulating it in continuous time.

Coordinates are pixels with x to the right and y down. Pixel (row i, column j) covers the square
[j, j + 1) x [i, i + 1), so its centre is (j + 0.5, i + 0.5) and the frame spans [0, W] x [0, H].
Time is continuous: frame k is the instant t_k = k / fps. Motions are solved in closed form (or
event by event for floor bounces) in px and seconds, then sampled at the frame instants, so a
clip at a higher fps shows the same physics sampled more finely.

The world is a box. With a still camera it is exactly the frame; a panning camera moves at a
constant velocity and the world box grows to the region it sweeps, so walls and the floor are
the edges of everything the clip ever shows. Screen position = world position - camera offset.

The seed fixes the scene's content (background, number of objects, their shapes, colours, sizes,
motion types and depth order) independently of the clip's size, length and fps; those only set
how the content is laid out and sampled. Two exceptions keep the ground truth honest: a single
frame (an image) makes every object "static" (motion is unobservable, the camera does not pan),
and the "pass_behind" scenario needs at least 3 frames.
"""
import math
from dataclasses import dataclass, field

import numpy as np

SHAPES = ("circle", "square", "triangle", "star", "hexagon")
COLOURS = {
    "red": (220, 40, 40),
    "green": (50, 190, 70),
    "blue": (40, 90, 230),
    "yellow": (245, 215, 40),
    "purple": (150, 70, 210),
    "orange": (245, 140, 30),
    "white": (245, 245, 245),
    "cyan": (40, 215, 225),
    "pink": (245, 120, 190),
}
BACKGROUND_COLOURS = {
    "black": (12, 12, 12),
    "dark grey": (64, 64, 64),
    "light grey": (196, 196, 196),
    "dark blue": (22, 32, 88),
    "dark green": (24, 72, 40),
    "brown": (96, 64, 36),
    "beige": (226, 212, 184),
}
BACKGROUNDS = ("solid", "gradient", "texture")
GRADIENT_DIRECTIONS = ("vertical", "horizontal", "diagonal")
TEXTURE_PATTERNS = ("checker", "stripes")
STRIPE_ORIENTATIONS = ("vertical", "horizontal", "diagonal")
# Nominal radius as a fraction of min(H, W); the drawn circumradius is this times the shape's
# radius_scale, so a "large star" and a "large circle" look about equally big.
SIZES = {"small": 0.08, "medium": 0.12, "large": 0.17}
MOTIONS = ("static", "linear", "bounce", "fall", "rotate")
MOTION_WEIGHTS = {"static": 0.2, "linear": 0.25, "bounce": 0.2, "fall": 0.15, "rotate": 0.2}
MAX_OBJECTS = 6
# An object colour must differ from every background colour of its clip by this RGB distance.
MIN_CONTRAST = 110.0
GRAVITY_HEIGHTS_PER_S2 = 3.0  # gravity in frame heights per second squared
REST_HEIGHT_PX = 0.25  # a rebound lower than this ends the bouncing: the object rests
MAX_FLOOR_BOUNCES = 12
PAN_PROBABILITY = 0.25
PASS_BEHIND_PROBABILITY = 0.6
_UNIFORMS_PER_OBJECT = 16
_UNIFORMS_PER_SCENE = 16


@dataclass(frozen=True)
class ShapeGeometry:
    """Regular n-fold outline: the boundary in one half-sector is the segment from the outer
    vertex (radius 1, angle 0) to the point (radius `second_radius`, angle pi / folds)."""

    folds: int  # rotational symmetry order; 0 for the circle
    base_angle: float  # direction of the first outer vertex at object angle 0 (rad, y down)
    second_radius: float  # polygons: the apothem cos(pi / n); star: the inner vertex radius
    radius_scale: float  # circumradius / nominal radius


SHAPE_GEOMETRY = {
    "circle": ShapeGeometry(0, 0.0, 1.0, 1.0),
    "square": ShapeGeometry(4, math.pi / 4, math.cos(math.pi / 4), 1.15),
    "triangle": ShapeGeometry(3, -math.pi / 2, math.cos(math.pi / 3), 1.35),
    "star": ShapeGeometry(5, -math.pi / 2, 0.45, 1.35),
    "hexagon": ShapeGeometry(6, 0.0, math.cos(math.pi / 6), 1.05),
}


@dataclass
class SceneObject:
    """One object's identity and simulated world trajectory (float64, px and seconds)."""

    id: int
    shape: str
    colour: str
    size: str
    radius: float  # circumradius, px
    motion: str
    depth: int = 0  # 0 = nearest the camera
    angle0: float = 0.0
    extents: tuple = (0.0, 0.0, 0.0, 0.0)  # reach left, up, right, down from the centre, px
    world_positions: np.ndarray = None  # (T, 2) px
    world_velocities: np.ndarray = None  # (T, 2) px/s
    angles: np.ndarray = None  # (T,) rad
    bounces: list = field(default_factory=list)  # [(frame, wall)] in time order
    gravity: float = 0.0  # px/s^2, fall only
    restitution: float = 0.0  # fall only
    rest_frame: int = None  # fall only: first frame resting on the floor
    angular_velocity: float = 0.0  # rad/s, rotate only


@dataclass
class Scene:
    """A sampled and simulated clip: everything the renderer and the ground truth need."""

    seed: int
    frames: int
    height: int
    width: int
    fps: float
    scenario: str
    background: dict
    camera_velocity: np.ndarray  # (2,) px/s
    camera_offsets: np.ndarray  # (T, 2) px
    world_box: tuple  # (x0, y0, x1, y1) px
    objects: list

    @property
    def depth_order(self):
        return [obj.id for obj in sorted(self.objects, key=lambda obj: obj.depth)]


def shape_extents(shape, radius, angle):
    """Reach (left, up, right, down) in px of a shape of circumradius `radius` turned by `angle`."""
    geometry = SHAPE_GEOMETRY[shape]
    if geometry.folds == 0:
        return (radius, radius, radius, radius)
    vertex_angles = geometry.base_angle + angle + 2 * math.pi * np.arange(geometry.folds) / geometry.folds
    xs, ys = radius * np.cos(vertex_angles), radius * np.sin(vertex_angles)  # (n,)
    return (float(-xs.min()), float(-ys.min()), float(xs.max()), float(ys.max()))


def _pick(u, options):
    return options[min(int(u * len(options)), len(options) - 1)]


def _pick_weighted(u, weights):
    total = sum(weights.values())
    cumulative = 0.0
    for name, weight in weights.items():
        cumulative += weight / total
        if u < cumulative:
            return name
    return name


def _compass_direction(u, jitter_degrees):
    """One of 8 compass directions (chosen by u's first digit) with a jitter from its remainder."""
    sector = min(int(u * 8), 7)
    jitter = (u * 8 - sector) * 2 - 1
    angle = sector * math.pi / 4 + math.radians(jitter_degrees) * jitter
    return np.array([math.cos(angle), math.sin(angle)])  # (2,)


def _contrasting_colours(background_colours):
    backgrounds = [np.array(BACKGROUND_COLOURS[name], float) for name in background_colours]
    return [
        name for name, rgb in COLOURS.items()
        if all(np.linalg.norm(np.array(rgb, float) - bg) >= MIN_CONTRAST for bg in backgrounds)
    ]


def _sample_background(u, height, width):
    kind = _pick(u[0], BACKGROUNDS)
    first = _pick(u[1], tuple(BACKGROUND_COLOURS))
    others = [name for name in BACKGROUND_COLOURS if name != first]
    second = _pick(u[2], others)
    if kind == "solid":
        return {"kind": "solid", "colours": [first]}
    if kind == "gradient":
        return {"kind": "gradient", "colours": [first, second], "direction": _pick(u[3], GRADIENT_DIRECTIONS)}
    pattern = _pick(u[3], TEXTURE_PATTERNS)
    period = max(4.0, (0.2 + 0.2 * u[4]) * min(height, width))
    texture = {"kind": "texture", "colours": [first, second], "pattern": pattern, "period": round(period, 3)}
    if pattern == "stripes":
        texture["orientation"] = _pick((u[4] * 7) % 1.0, STRIPE_ORIENTATIONS)
    return texture


def _sample_camera(u, frames, height, width, fps):
    """Constant-velocity pan (px/s) and the per-frame offsets it produces (px)."""
    velocity = np.zeros(2)
    if frames > 1 and u[6] < PAN_PROBABILITY:
        direction = _pick(u[7], ("right", "right", "right", "left", "left", "left", "down", "up"))
        axis = 0 if direction in ("right", "left") else 1
        extent = width if axis == 0 else height
        velocity[axis] = (0.08 + 0.12 * u[8]) * extent * (1 if direction in ("right", "down") else -1)
    times = np.arange(frames) / fps  # (T,)
    offsets = times[:, None] * velocity[None, :]  # (T, 2)
    return velocity, offsets


def _fold_axis(start, velocity, low, high, times):
    """Free flight between two walls, solved by unfolding the reflections.

    Returns positions (T,), velocities (T,) and wall hits [(time, 'low'|'high')] up to times[-1].
    """
    span = high - low
    phase = (start - low + velocity * times) / span  # (T,) in wall-to-wall spans
    folded = np.mod(phase, 2.0)  # (T,)
    positions = low + span * (1.0 - np.abs(1.0 - folded))  # (T,)
    velocities = np.where(folded < 1.0, velocity, -velocity)  # (T,)
    hits = []
    if velocity != 0.0:
        first_phase, last_phase = (start - low) / span, phase[-1]
        # Walls sit at integer phases: even ones at `low`, odd ones at `high`.
        if velocity > 0:
            crossings = range(math.floor(first_phase) + 1, math.floor(last_phase) + 1)
        else:
            crossings = range(math.ceil(first_phase) - 1, math.ceil(last_phase) - 1, -1)
        for wall_phase in crossings:
            time = (wall_phase - first_phase) * span / velocity
            hits.append((time, "low" if wall_phase % 2 == 0 else "high"))
    return positions, velocities, hits


def _fall_axis(start, floor, gravity, restitution, times):
    """Drop from rest under constant gravity onto a floor, bouncing with restitution < 1.

    Event by event: each flight ends exactly at its floor impact; a rebound too low to see ends
    the bouncing. Returns positions (T,), velocities (T,), impact times and the rest time or None.
    """
    segment_starts, segment_states = [], []  # per flight: start time, (position, velocity, accel)
    time, position, velocity = 0.0, start, 0.0
    impacts, rest_time = [], None
    while True:
        segment_starts.append(time)
        segment_states.append((position, velocity, gravity))
        reach = math.sqrt(velocity * velocity + 2.0 * gravity * (floor - position))
        flight = (reach - velocity) / gravity
        if time + flight > times[-1]:
            break
        time += flight
        velocity = -restitution * reach
        position = floor
        if velocity * velocity / (2.0 * gravity) < REST_HEIGHT_PX or len(impacts) >= MAX_FLOOR_BOUNCES:
            rest_time = time
            segment_starts.append(time)
            segment_states.append((floor, 0.0, 0.0))
            break
        impacts.append(time)
    segment = np.searchsorted(np.array(segment_starts), times, side="right") - 1  # (T,)
    states = np.array(segment_states)[segment]  # (T, 3)
    elapsed = times - np.array(segment_starts)[segment]  # (T,)
    positions = states[:, 0] + states[:, 1] * elapsed + 0.5 * states[:, 2] * elapsed**2  # (T,)
    velocities = states[:, 1] + states[:, 2] * elapsed  # (T,)
    return positions, velocities, impacts, rest_time


def _frame_of(time, fps):
    """First frame whose instant is at or after an event (the first frame showing its effect)."""
    return int(math.ceil(time * fps - 1e-9))


def _centre_box(view, extents):
    """Range of centre positions (x_lo, y_lo, x_hi, y_hi) that keep a shape inside `view`."""
    left, up, right, down = extents
    return (view[0] + left, view[1] + up, view[2] - right, view[3] - down)


def _linear_path(direction, speed, duration, box, u_x, u_y):
    """Start point and velocity of a straight path that stays inside `box` for the whole clip."""
    reach = [box[2] - box[0], box[3] - box[1]]
    limits = [reach[axis] / abs(direction[axis]) for axis in (0, 1) if abs(direction[axis]) > 1e-9]
    travel = min(speed * duration, 0.95 * min(limits))
    start = np.empty(2)
    for axis, u in ((0, u_x), (1, u_y)):
        shift = travel * direction[axis]
        low, high = box[axis] - min(shift, 0.0), box[axis + 2] - max(shift, 0.0)
        start[axis] = low + u * (high - low)
    return start, direction * (travel / duration if duration > 0 else 0.0)


def _place(u_candidates, box, placed):
    """Best of a few candidate centres: the one farthest (edge to edge) from objects placed so far."""
    best, best_gap = None, -math.inf
    for u_x, u_y, radius in u_candidates:
        centre = np.array([box[0] + u_x * (box[2] - box[0]), box[1] + u_y * (box[3] - box[1])])
        gaps = [np.linalg.norm(centre - other) - radius - other_radius for other, other_radius in placed]
        gap = min(gaps, default=0.0)
        if gap > best_gap:
            best, best_gap = centre, gap
    return best


def _simulate(obj, u, scene_params, placed):
    """Fill obj's world trajectory for its motion type; `u` is the object's uniform block."""
    times, fps, view, world = (scene_params[key] for key in ("times", "fps", "view", "world"))
    duration = times[-1]
    frames = len(times)
    size_scale = max(view[2] - view[0], view[3] - view[1])
    obj.extents = shape_extents(obj.shape, obj.radius, obj.angle0)
    circle_reach = (obj.radius,) * 4
    velocity = np.zeros(2)
    start = None
    obj.angles = np.full(frames, obj.angle0)
    if obj.motion in ("static", "rotate"):
        box = _centre_box(view, circle_reach if obj.motion == "rotate" else obj.extents)
        candidates = [(u[5], u[6], obj.radius), (u[11], u[12], obj.radius), (u[13], u[14], obj.radius)]
        start = _place(candidates, box, placed)
    if obj.motion == "rotate":
        folds = SHAPE_GEOMETRY[obj.shape].folds
        # Cap the spin at 0.3 of a symmetry period per frame so it never looks like reverse spin.
        spin = min((0.5 + u[9]) * math.pi, 0.3 * (2 * math.pi / folds) * fps)
        obj.angular_velocity = spin if u[10] < 0.5 else -spin
        obj.angles = obj.angle0 + obj.angular_velocity * times  # (T,)
        if (u[10] * 2) % 1.0 >= 0.5:  # the second digit of u[10]: half of each spin sense drifts
            box = _centre_box(view, circle_reach)
            start, velocity = _linear_path(
                _compass_direction(u[7], 15), (0.05 + 0.1 * u[8]) * size_scale, duration, box, u[5], u[6])
    if obj.motion == "linear":
        box = _centre_box(view, obj.extents)
        start, velocity = _linear_path(
            _compass_direction(u[7], 15), (0.2 + 0.3 * u[8]) * size_scale, duration, box, u[5], u[6])
    if start is not None:
        obj.world_positions = start[None, :] + times[:, None] * velocity[None, :]  # (T, 2)
        obj.world_velocities = np.repeat(velocity[None, :], frames, axis=0)  # (T, 2)
    if obj.motion == "bounce":
        _simulate_bounce(obj, u, times, fps, view, world, size_scale)
    if obj.motion == "fall":
        _simulate_fall(obj, u, times, fps, view, world)
    placed.append((obj.world_positions[0], obj.radius))


def _simulate_bounce(obj, u, times, fps, view, world, size_scale):
    """Straight flight with elastic reflections off the world's walls, using the shape's extents."""
    duration = times[-1]
    diagonal = min(int(u[7] * 4), 3)  # diagonal headings reach both pairs of walls
    angle = (2 * diagonal + 1) * math.pi / 4 + math.radians(20) * ((u[7] * 4 - diagonal) * 2 - 1)
    direction = np.array([math.cos(angle), math.sin(angle)])
    start_box = _centre_box(view, obj.extents)
    start = np.array([start_box[0] + (0.05 + 0.9 * u[5]) * (start_box[2] - start_box[0]),
                      start_box[1] + (0.05 + 0.9 * u[6]) * (start_box[3] - start_box[1])])
    wall_box = _centre_box(world, obj.extents)
    speed = (0.6 + 0.6 * u[8]) * size_scale
    if duration > 0:
        # Guarantee a wall hit within the first 80% of the clip so "bounce" is always visible.
        to_wall = [((wall_box[axis + 2] if direction[axis] > 0 else wall_box[axis]) - start[axis]) / direction[axis]
                   for axis in (0, 1) if abs(direction[axis]) > 1e-9]
        speed = max(speed, min(to_wall) / (0.8 * duration))
    velocity = speed * direction
    x, vx, x_hits = _fold_axis(start[0], velocity[0], wall_box[0], wall_box[2], times)
    y, vy, y_hits = _fold_axis(start[1], velocity[1], wall_box[1], wall_box[3], times)
    obj.world_positions = np.stack([x, y], axis=1)  # (T, 2)
    obj.world_velocities = np.stack([vx, vy], axis=1)  # (T, 2)
    walls = {(0, "low"): "left", (0, "high"): "right", (1, "low"): "top", (1, "high"): "bottom"}
    events = [(time, walls[(0, side)]) for time, side in x_hits] + [(time, walls[(1, side)]) for time, side in y_hits]
    obj.bounces = [(_frame_of(time, fps), wall) for time, wall in sorted(events)]


def _simulate_fall(obj, u, times, fps, view, world):
    """Drop from rest in the upper part of the view, drifting sideways, bouncing on the floor."""
    duration = times[-1]
    box = _centre_box(view, obj.extents)
    drift = (u[8] - 0.5) * 0.2 * (view[2] - view[0])  # px/s
    if duration > 0:
        drift = float(np.clip(drift, -(box[2] - box[0]) * 0.9 / duration, (box[2] - box[0]) * 0.9 / duration))
    x_low, x_high = box[0] - min(drift * duration, 0.0), box[2] - max(drift * duration, 0.0)
    x = x_low + u[5] * (x_high - x_low) + drift * times  # (T,)
    y_start = box[1] + 0.35 * u[6] * (box[3] - box[1])
    floor = world[3] - obj.extents[3]
    obj.gravity = GRAVITY_HEIGHTS_PER_S2 * (view[3] - view[1])
    obj.restitution = 0.5 + 0.3 * u[9]
    y, vy, impacts, rest_time = _fall_axis(y_start, floor, obj.gravity, obj.restitution, times)
    obj.world_positions = np.stack([x, y], axis=1)  # (T, 2)
    obj.world_velocities = np.stack([np.full_like(x, drift), vy], axis=1)  # (T, 2)
    obj.bounces = [(_frame_of(time, fps), "floor") for time in impacts]
    obj.rest_frame = None if rest_time is None else _frame_of(rest_time, fps)


def _pass_behind(occluder, passer, u_scene, u_occluder, scene_params):
    """Put `passer` on a straight path that crosses right behind `occluder`'s centre mid-clip."""
    times, view = scene_params["times"], scene_params["view"]
    frames, duration = len(times), times[-1]
    axis = 0 if view[2] - view[0] >= view[3] - view[1] else 1  # pass along the longer side...
    if u_scene[10] < 0.25:
        axis = 1 - axis  # ...mostly
    other = 1 - axis
    occluder_box = _centre_box(view, occluder.extents)
    passer_box = _centre_box(view, passer.extents)
    centre = np.empty(2)
    along = 0.35 + 0.3 * u_occluder[5]
    centre[axis] = occluder_box[axis] + along * (occluder_box[axis + 2] - occluder_box[axis])
    low = max(occluder_box[other], passer_box[other])
    high = min(occluder_box[other + 2], passer_box[other + 2])
    centre[other] = low + u_occluder[6] * (high - low) if high > low else 0.5 * (view[other] + view[other + 2])
    occluder.world_positions = np.repeat(centre[None, :], frames, axis=0)  # (T, 2)
    occluder.world_velocities = np.zeros((frames, 2))  # (T, 2)
    crossing_frame = min(max(round((0.3 + 0.4 * u_scene[12]) * (frames - 1)), 1), frames - 2)
    crossing_time = times[crossing_frame]
    sign = 1.0 if u_scene[11] < 0.5 else -1.0
    room_before = (centre[axis] - passer_box[axis]) if sign > 0 else (passer_box[axis + 2] - centre[axis])
    room_after = (passer_box[axis + 2] - centre[axis]) if sign > 0 else (centre[axis] - passer_box[axis])
    speed = max(0.0, min(room_before / crossing_time, room_after / (duration - crossing_time)))
    speed *= 0.8 + 0.2 * u_scene[15]
    # A small sideways offset (under 0.15 of the occluder's radius) keeps the crossing natural
    # while the passer's centre still goes behind the occluder's solid middle.
    offset = (2 * u_scene[13] - 1) * 0.15 * occluder.radius
    path = np.empty((frames, 2))
    path[:, axis] = centre[axis] + sign * speed * (times - crossing_time)  # (T,)
    path[:, other] = np.clip(centre[other] + offset, passer_box[other], passer_box[other + 2])
    velocity = np.zeros(2)
    velocity[axis] = sign * speed
    passer.world_positions = path
    passer.world_velocities = np.repeat(velocity[None, :], frames, axis=0)  # (T, 2)


def sample_scene(seed, frames, height, width, fps=8.0, max_objects=3):
    """Sample a Shapes World scene from `seed` and simulate it for `frames` frames at `fps`.

    Draws every random number from one `np.random.default_rng(seed)` in a fixed order (a scene
    block, then one block per possible object), so the result is a pure function of the arguments
    and an object's content does not depend on how many objects precede it. Returns a `Scene`
    whose objects carry world trajectories; `render_scene` draws it and `scene_meta` describes it.
    """
    rng = np.random.default_rng(seed)
    u_scene = rng.random(_UNIFORMS_PER_SCENE)  # (16,)
    u_objects = rng.random((max_objects, _UNIFORMS_PER_OBJECT))  # (max_objects, 16)
    times = np.arange(frames) / fps  # (T,)
    background = _sample_background(u_scene, height, width)
    camera_velocity, camera_offsets = _sample_camera(u_scene, frames, height, width, fps)
    world = (min(0.0, camera_offsets[-1, 0]), min(0.0, camera_offsets[-1, 1]),
             width + max(0.0, camera_offsets[-1, 0]), height + max(0.0, camera_offsets[-1, 1]))
    middle = camera_offsets[-1] / 2  # objects are laid out in the view at mid-clip
    view = (middle[0], middle[1], middle[0] + width, middle[1] + height)
    count = 1 + min(int(u_scene[5] * max_objects), max_objects - 1)
    scenario = "pass_behind" if count >= 2 and frames >= 3 and u_scene[9] < PASS_BEHIND_PROBABILITY else "free"
    objects = _sample_objects(u_objects[:count], background, min(height, width), frames, scenario)
    scene_params = {"times": times, "fps": fps, "view": view, "world": world}
    placed = []
    if scenario == "pass_behind":
        for obj in objects[:2]:
            obj.extents = shape_extents(obj.shape, obj.radius, obj.angle0)
            obj.angles = np.full(frames, obj.angle0)
        _pass_behind(objects[0], objects[1], u_scene, u_objects[0], scene_params)
        placed.append((objects[0].world_positions[0], objects[0].radius))
    for obj, u in zip(objects, u_objects):
        if scenario != "pass_behind" or obj.id >= 2:
            _simulate(obj, u, scene_params, placed)
    return Scene(seed, frames, height, width, fps, scenario, background, camera_velocity, camera_offsets,
                 world, objects)


def _sample_objects(u_objects, background, min_side, frames, scenario):
    """Identities, sizes, motion types and depths; distinct colours keep captions unambiguous."""
    available = _contrasting_colours(background["colours"])
    objects = []
    for index, u in enumerate(u_objects):
        shape = _pick(u[0], SHAPES)
        colour = _pick(u[1], available)
        available.remove(colour)
        size = _pick(u[2], tuple(SIZES))
        weights = {name: w for name, w in MOTION_WEIGHTS.items() if not (shape == "circle" and name == "rotate")}
        motion = "static" if frames == 1 else _pick_weighted(u[3], weights)
        objects.append(SceneObject(index, shape, colour, size, 0.0, motion, angle0=float(u[4] * 2 * math.pi)))
    if scenario == "pass_behind":
        occluder, passer = objects[0], objects[1]
        if list(SIZES).index(occluder.size) < list(SIZES).index(passer.size):
            occluder.size, passer.size = passer.size, occluder.size
        occluder.motion, passer.motion = "static", "linear"
    for obj in objects:
        obj.radius = SIZES[obj.size] * min_side * SHAPE_GEOMETRY[obj.shape].radius_scale
    ranks = np.argsort(np.argsort(u_objects[:, 15], kind="stable"), kind="stable")  # (n,)
    for obj, rank in zip(objects, ranks):
        obj.depth = int(rank)
    if scenario == "pass_behind" and objects[0].depth > objects[1].depth:
        objects[0].depth, objects[1].depth = objects[1].depth, objects[0].depth
    return objects
