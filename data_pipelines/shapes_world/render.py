"""Vectorised anti-aliased rendering of a Shapes World scene, all frames at once.

Every shape is a signed distance field in pixels; its coverage of a pixel is
clip(0.5 - sdf(pixel centre), 0, 1), a box-filter approximation that integrates to the shape's
area and gives edges intermediate values. Polygons and the star use one exact SDF: fold the
point into the shape's fundamental half-sector (the dihedral symmetry makes the nearest edge
lie there) and measure the distance to the single edge segment in it.

Work per object is confined to a (T, B, B) window that follows the object frame by frame
(B ~ its diameter + 3 px), not the full (T, H, W) frame. Windows are read from and written to the
canvas through flat pixel indices, so no per-frame Python loop is needed; window pixels outside
the frame all point at one spare "discard" pixel past the end of the canvas. Objects are
composited back to front with "over"; the same coverages give each object's visible fraction,
used as ground truth.
"""
from dataclasses import dataclass

import numpy as np

from .scene import BACKGROUND_COLOURS, COLOURS, SHAPE_GEOMETRY

# Colours carry +0.5 so the final float -> uint8 cast (which truncates) rounds to nearest.
# Blending is a convex combination, so the offset survives compositing unchanged.
_ROUNDING = np.float32(0.5)
# A pair counts as an occlusion in a frame when the nearer object covers at least this much of
# the farther one: half a pixel and 2% of its area, so anti-aliased fringes touching are ignored.
OCCLUSION_MIN_PX = 0.5
OCCLUSION_MIN_FRACTION = 0.02


@dataclass
class RenderStats:
    """Ground truth measured on the rendered coverages, one row per object id."""

    area: np.ndarray  # (n, T) coverage of the whole object, frame edges ignored, px
    in_frame: np.ndarray  # (n, T) fraction of that area inside the frame
    visibility: np.ndarray  # (n, T) fraction of that area inside the frame and not covered
    overlap: np.ndarray  # (n, n, T) [i, j]: area of object j covered by nearer object i, px


@dataclass
class _Footprint:
    coverage: np.ndarray  # (T, B, B) coverage, frame edges ignored
    inside: np.ndarray  # (T, B, B) coverage with pixels outside the frame zeroed
    in_frame: np.ndarray  # (T, B, B) bool, the window pixel lies inside the frame
    x_origin: np.ndarray  # (T,) int column of the window's left edge
    y_origin: np.ndarray  # (T,) int row of the window's top edge


def render_scene(scene):
    """Render every frame of `scene` and measure its per-object visibility.

    Returns (video, stats): video is uint8 (T, H, W, 3); stats is a `RenderStats` whose
    visibility is the visible coverage over the object's full (un-clipped, unoccluded) coverage,
    so both occlusion and leaving the frame lower it.
    """
    frames, height, width = scene.frames, scene.height, scene.width
    footprints = [
        _footprint(obj, obj.world_positions - scene.camera_offsets, height, width) for obj in scene.objects
    ]
    discard = frames * height * width  # index of the spare pixel that absorbs off-frame writes
    # Channel planes rather than interleaved RGB: numpy broadcasting over a trailing axis of 3
    # runs 3-element inner loops, several times slower than whole-plane loops.
    planes = np.empty((3, discard + 1), np.float32)  # (3, T * H * W + 1)
    planes[:, discard] = 0.0  # keep the spare pixel finite so blending it never warns
    _paint_background(planes[:, :discard].reshape(3, frames, height, width), scene)
    indices = [_flat_indices(footprint, height, width, discard) for footprint in footprints]
    for obj_id in reversed(scene.depth_order):
        alpha = footprints[obj_id].inside  # (T, B, B)
        keep = 1.0 - alpha  # (T, B, B)
        for plane, value in zip(planes, COLOURS[scene.objects[obj_id].colour]):
            region = plane[indices[obj_id]]  # (T, B, B)
            region *= keep
            region += alpha * (value + _ROUNDING)
            plane[indices[obj_id]] = region
    video = np.empty((frames, height, width, 3), np.uint8)  # (T, H, W, 3)
    for channel, plane in enumerate(planes):
        np.copyto(video[..., channel], plane[:discard].reshape(frames, height, width), casting="unsafe")
    stats = _measure(footprints, indices, scene.depth_order, discard + 1)
    return video, stats


def object_ids(scene, threshold: float = 0.5) -> np.ndarray:
    """Which object each pixel shows: `(T, H, W)` int32 ids, -1 for background.

    A pixel belongs to the nearest object that covers at least `threshold` of it, so anti-aliased
    fringes stay background and occluded parts belong to the occluder (dense ground truth)."""
    frames, height, width = scene.frames, scene.height, scene.width
    discard = frames * height * width
    ids = np.full(discard + 1, -1, np.int32)  # (T * H * W + 1,)
    for obj_id in reversed(scene.depth_order):  # back to front: nearer objects overwrite
        obj = scene.objects[obj_id]
        footprint = _footprint(obj, obj.world_positions - scene.camera_offsets, height, width)
        indices = _flat_indices(footprint, height, width, discard)  # (T, B, B)
        ids[indices[footprint.inside >= threshold]] = obj_id
    return ids[:discard].reshape(frames, height, width)


def _footprint(obj, positions, height, width):
    """Coverage of one object in a window that follows its centre through all frames."""
    reach = obj.radius + 1.0  # one extra pixel holds the anti-aliased fringe
    box = int(np.ceil(2 * reach)) + 1
    x_origin = np.floor(positions[:, 0] - reach).astype(np.int64)  # (T,)
    y_origin = np.floor(positions[:, 1] - reach).astype(np.int64)  # (T,)
    steps = np.arange(box, dtype=np.float32) + np.float32(0.5)  # (B,) pixel centres in the window
    dx = ((x_origin - positions[:, 0]).astype(np.float32)[:, None] + steps)[:, None, :]  # (T, 1, B)
    dy = ((y_origin - positions[:, 1]).astype(np.float32)[:, None] + steps)[:, :, None]  # (T, B, 1)
    geometry = SHAPE_GEOMETRY[obj.shape]
    if geometry.folds == 0:
        coverage = _circle_coverage(dx, dy, obj.radius)
    else:
        coverage = _polygon_coverage(dx, dy, obj.angles, geometry, obj.radius)
    columns = x_origin[:, None] + np.arange(box)  # (T, B) frame column of each window column
    rows = y_origin[:, None] + np.arange(box)  # (T, B) frame row of each window row
    column_inside = (columns >= 0) & (columns < width)  # (T, B)
    row_inside = (rows >= 0) & (rows < height)  # (T, B)
    in_frame = row_inside[:, :, None] & column_inside[:, None, :]  # (T, B, B)
    return _Footprint(coverage, coverage * in_frame, in_frame, x_origin, y_origin)


def _circle_coverage(dx, dy, radius):
    coverage = np.sqrt(dx * dx + dy * dy)  # (T, B, B) distance to the centre
    np.subtract(np.float32(radius + 0.5), coverage, out=coverage)
    return np.clip(coverage, 0.0, 1.0, out=coverage)


def _polygon_coverage(dx, dy, angles, geometry, radius):
    """Exact polygon / star coverage by folding into the half-sector that holds one edge."""
    folds = geometry.folds
    sector = 2 * np.pi / folds
    distance = np.sqrt(dx * dx + dy * dy)  # (T, B, B)
    turn = np.arctan2(dy, dx)  # (T, B, B) polar angle of each pixel centre
    # The outline repeats every sector, so only the orientation modulo one sector matters; taking
    # it in float64 keeps float32 precise however far an object has spun.
    turn -= np.mod(geometry.base_angle + angles, sector).astype(np.float32)[:, None, None]
    # Angle measured from the nearest outer vertex, in [-sector/2, sector/2].
    turn *= np.float32(1 / sector)
    turn -= np.rint(turn)
    turn *= np.float32(sector)
    along = distance * np.cos(turn)  # (T, B, B) folded point, x
    across = distance * np.abs(np.sin(turn))  # (T, B, B) folded point, y in [0, ...)
    # The edge runs from the outer vertex (radius, 0) to the point at angle sector / 2.
    edge_x = radius * (geometry.second_radius * np.cos(sector / 2) - 1.0)
    edge_y = radius * geometry.second_radius * np.sin(sector / 2)
    along -= np.float32(radius)  # now relative to the outer vertex
    edge_scale = np.float32(1.0 / (edge_x * edge_x + edge_y * edge_y))
    share = along * np.float32(edge_x * edge_scale) + across * np.float32(edge_y * edge_scale)  # (T, B, B)
    np.clip(share, 0.0, 1.0, out=share)
    # Positive on the centre's side of the edge line: inside.
    side = across * np.float32(edge_x) - along * np.float32(edge_y)  # (T, B, B)
    along -= share * np.float32(edge_x)
    across -= share * np.float32(edge_y)
    gap = np.sqrt(along * along + across * across)  # (T, B, B) unsigned distance to the edge
    coverage = np.copysign(gap, side, out=gap)  # -sdf
    coverage += np.float32(0.5)
    return np.clip(coverage, 0.0, 1.0, out=coverage)


def _flat_indices(footprint, height, width, discard):
    """Flat canvas pixel index of every window pixel, (T, B, B); off-frame pixels get `discard`.

    Sending them all to one spare pixel keeps every in-frame index unique within a frame, so a
    gather-blend-scatter round trip never loses a write to a duplicate.
    """
    frames, box = footprint.coverage.shape[:2]
    steps = np.arange(box)  # (B,)
    rows = (np.arange(frames)[:, None] * height + footprint.y_origin[:, None] + steps) * width  # (T, B)
    columns = footprint.x_origin[:, None] + steps  # (T, B)
    return np.where(footprint.in_frame, rows[:, :, None] + columns[:, None, :], discard)  # (T, B, B)


def _measure(footprints, indices, depth_order, pixel_count):
    """Area, in-frame fraction, visibility and pairwise overlap from the coverage windows."""
    count = len(footprints)
    frames = footprints[0].coverage.shape[0]
    area = np.array([fp.coverage.sum(axis=(1, 2), dtype=np.float64) for fp in footprints])  # (n, T)
    in_frame_area = np.array([fp.inside.sum(axis=(1, 2), dtype=np.float64) for fp in footprints])  # (n, T)
    visible_area = in_frame_area.copy()  # (n, T)
    overlap = np.zeros((count, count, frames))  # (n, n, T)
    if count > 1:
        # Each object's in-frame coverage scattered into its own full-canvas plane, so a farther
        # object can look up what every nearer one covers inside its window. The discard pixel
        # only ever receives zeros.
        planes = np.zeros((count, pixel_count), np.float32)  # (n, T * H * W + 1)
        for obj_id, footprint in enumerate(footprints):
            planes[obj_id][indices[obj_id]] = footprint.inside
        for rank, obj_id in enumerate(depth_order):
            inside = footprints[obj_id].inside
            transmitted = np.ones_like(inside)  # (T, B, B)
            for nearer_id in depth_order[:rank]:
                nearer = planes[nearer_id][indices[obj_id]]  # (T, B, B)
                overlap[nearer_id, obj_id] = (inside * nearer).sum(axis=(1, 2), dtype=np.float64)
                transmitted *= 1.0 - nearer
            if rank > 0:
                visible_area[obj_id] = (inside * transmitted).sum(axis=(1, 2), dtype=np.float64)
    return RenderStats(area, in_frame_area / area, np.clip(visible_area / area, 0.0, 1.0), overlap)


def occlusion_events(stats, depth_order):
    """Runs of consecutive frames in which a nearer object covers a farther one.

    Returns [{"occluder", "occluded", "frames": [first, last], "min_visibility"}] sorted by first
    frame, where min_visibility is the occluded object's lowest visibility during the run.
    """
    events = []
    for rank, occluded in enumerate(depth_order):
        threshold = np.maximum(OCCLUSION_MIN_PX, OCCLUSION_MIN_FRACTION * stats.area[occluded])  # (T,)
        for occluder in depth_order[:rank]:
            covered = stats.overlap[occluder, occluded] >= threshold  # (T,)
            edges = np.diff(np.concatenate([[0], covered.astype(np.int8), [0]]))  # (T + 1,)
            for first, stop in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
                events.append({
                    "occluder": int(occluder),
                    "occluded": int(occluded),
                    "frames": [int(first), int(stop - 1)],
                    "min_visibility": round(float(stats.visibility[occluded, first:stop].min()), 4),
                })
    return sorted(events, key=lambda event: (event["frames"][0], event["occluder"], event["occluded"]))


def _paint_background(planes, scene):
    """Write the background into channel planes (3, T, H, W); it lives in world coordinates, so
    a panning camera shifts it together with the objects."""
    background = scene.background
    low, high = (np.asarray(BACKGROUND_COLOURS[name], np.float32) + _ROUNDING for name in
                 (background["colours"] * 2)[:2])
    if background["kind"] == "solid":
        for plane, value in zip(planes, low):
            plane.fill(value)
        return
    frames, height, width = planes.shape[1:]
    offsets = scene.camera_offsets
    x_world = ((np.arange(width) + 0.5)[None, :] + offsets[:, :1]).astype(np.float32)  # (T, W)
    y_world = ((np.arange(height) + 0.5)[None, :] + offsets[:, 1:]).astype(np.float32)  # (T, H)
    if background["kind"] == "gradient":
        mix = _gradient_mix(background["direction"], x_world, y_world, scene.world_box)
    else:
        mix = _texture_mix(background, x_world, y_world)
    for plane, base, change in zip(planes, low, high - low):
        np.multiply(mix, change, out=plane)  # mix broadcasts from (T, H, 1), (T, 1, W) or (T, H, W)
        plane += base


def _gradient_mix(direction, x_world, y_world, world_box):
    """Share of the second colour, 0 at the world's top/left edge and 1 at the opposite one."""
    x_span, y_span = world_box[2] - world_box[0], world_box[3] - world_box[1]
    x_share = ((x_world - np.float32(world_box[0])) / np.float32(x_span))[:, None, :]  # (T, 1, W)
    y_share = ((y_world - np.float32(world_box[1])) / np.float32(y_span))[:, :, None]  # (T, H, 1)
    if direction == "horizontal":
        return x_share
    if direction == "vertical":
        return y_share
    # Weighting by span makes the diagonal run from the world's top-left to bottom-right corner.
    x_weight, y_weight = np.float32(x_span / (x_span + y_span)), np.float32(y_span / (x_span + y_span))
    return x_share * x_weight + y_share * y_weight  # (T, H, W)


def _texture_mix(background, x_world, y_world):
    """Anti-aliased checkerboard or stripes: share of the second colour per pixel."""
    period = np.float32(background["period"])
    x_band = _band(x_world, period)[:, None, :]  # (T, 1, W)
    y_band = _band(y_world, period)[:, :, None]  # (T, H, 1)
    if background["pattern"] == "checker":
        # Exclusive or of the two band patterns, exact wherever at most one of them is fractional.
        return x_band + y_band * (1 - 2 * x_band)  # (T, H, W)
    orientation = background["orientation"]
    if orientation == "vertical":
        return x_band
    if orientation == "horizontal":
        return y_band
    diagonal = (x_world[:, None, :] + y_world[:, :, None]) * np.float32(np.sqrt(0.5))  # (T, H, W)
    return _band(diagonal, period)


def _band(coordinate, period):
    """Coverage of the bands [k P - P/4, k P + P/4) at the given pixel coordinates."""
    phase = np.mod(coordinate / period, np.float32(1.0))
    distance = (np.float32(0.25) - np.abs(phase - np.float32(0.5))) * period  # px from a band edge, + inside the gap
    return np.clip(np.float32(0.5) - distance, 0.0, 1.0)
