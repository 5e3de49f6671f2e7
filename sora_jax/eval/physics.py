"""Physics: tracked trajectories fitted to the motion the prompt asked for.

Time is in frames and positions in px (screen = world: the suite's cameras are still). Each model
is fitted by least squares to the tracked centroids of the frames where the object is seen whole
(`Track.full`), and the RMS residual (px) says how well the motion obeys it:

- static: a constant position. linear and rotate: constant velocity (rotate may drift).
- bounce: per axis, free flight folded between two walls (elastic reflection), x(t) =
  lo + span * (1 - |1 - ((x0 - lo + v t) / span mod 2)|); the walls start at the frame edges minus
  the object's measured extent and may move 2 px (the extent is measured to a pixel).
- fall: released from rest at y0 under gravity g, bouncing on a floor with restitution e <= 1,
  solved event by event (as the world does), with a constant horizontal drift. Besides fitting, g
  must be within `GRAVITY_TOLERANCE` of the world's 3 frame heights per s^2 (`world_gravity`): a
  clip without gravity fits a "fall" with g near 0, a reversed one needs e > 1 or a start not at rest.

An object passes when its residual is at most `RESIDUAL_PX` (and, for fall, g is right). The
threshold is calibrated on real clips (docs/eval.md): real residuals come from centroid bias of
anti-aliased, rotating or slightly occluded shapes and stay under 0.5 px for the whole suite.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.optimize import least_squares

from data_pipelines.shapes_world.scene import GRAVITY_HEIGHTS_PER_S2, MAX_FLOOR_BOUNCES, REST_HEIGHT_PX
from sora_jax.eval.tracking import Track

RESIDUAL_PX = 1.0
GRAVITY_TOLERANCE = 0.3
WALL_SLACK_PX = 2.0
MIN_FRAMES = {"static": 3, "linear": 3, "rotate": 3, "bounce": 4, "fall": 4}


@dataclasses.dataclass
class PhysicsFit:
    """One object's fit: the model, its RMS residual (px), fitted parameters, pass/fail and why."""

    colour: str
    motion: str
    residual_px: float
    passed: bool
    frames_used: int
    params: dict
    reason: str = ""


def world_gravity(height: int, fps: float) -> float:
    """Shapes World gravity in px/frame^2 for a still clip `height` px tall at `fps`."""
    return GRAVITY_HEIGHTS_PER_S2 * height / fps**2


def _rms(residuals: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(residuals)))) if residuals.size else 0.0


def fold(start: float, velocity: float, low: float, high: float, times: np.ndarray) -> np.ndarray:
    """Positions (T,) of free flight from `start` at `velocity` reflected between walls low < high."""
    span = max(high - low, 1e-6)
    phase = np.mod((start - low + velocity * times) / span, 2.0)  # (T,)
    return low + span * (1.0 - np.abs(1.0 - phase))


def fall_positions(start: float, gravity: float, restitution: float, floor: float, times: np.ndarray) -> np.ndarray:
    """Heights (T,) of a drop from rest at `start` onto `floor` (y down), bouncing with `restitution`."""
    segment_starts, states = [0.0], [(min(start, floor), 0.0, gravity)]
    time, position, velocity = 0.0, min(start, floor), 0.0
    for _ in range(MAX_FLOOR_BOUNCES + 1):
        reach = math.sqrt(velocity * velocity + 2.0 * gravity * (floor - position))
        flight = (reach - velocity) / gravity
        if time + flight > times[-1]:
            break
        time, position, velocity = time + flight, floor, -restitution * reach
        rest = velocity * velocity / (2.0 * gravity) < REST_HEIGHT_PX
        segment_starts.append(time)
        states.append((floor, 0.0, 0.0) if rest else (floor, velocity, gravity))
        if rest:
            break
    index = np.searchsorted(np.array(segment_starts), times, side="right") - 1  # (T,)
    state = np.array(states)[index]  # (T, 3)
    elapsed = times - np.array(segment_starts)[index]  # (T,)
    return state[:, 0] + state[:, 1] * elapsed + 0.5 * state[:, 2] * elapsed**2


def _linear(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares line per axis: (coefficients (2, 2) as [slope, intercept] per axis, residuals (T, 2))."""
    coefficients = np.stack([np.polyfit(times, values[:, axis], 1) for axis in (0, 1)])  # (2, 2)
    fitted = coefficients[:, 0][None, :] * times[:, None] + coefficients[:, 1][None, :]  # (T, 2)
    return coefficients, values - fitted


def _fit_bounce_axis(times, values, low, high):
    """Best (start, velocity, low, high) of `fold` for one axis: a grid over start and velocity
    (the folded model has many local minima), refined by least squares."""
    span = max(high - low, 1.0)
    starts = np.linspace(low, high, 25)  # (S,)
    velocities = np.linspace(-span, span, 81)  # (V,) at most one wall-to-wall span per frame
    paths = fold(starts[:, None, None], velocities[None, :, None], low, high, times[None, None, :])  # (S, V, N)
    errors = np.square(paths - values).sum(axis=-1)  # (S, V)
    s, v = np.unravel_index(np.argmin(errors), errors.shape)
    bounds = ([low - WALL_SLACK_PX, -np.inf, low - WALL_SLACK_PX, high - WALL_SLACK_PX],
              [high + WALL_SLACK_PX, np.inf, low + WALL_SLACK_PX, high + WALL_SLACK_PX])
    guess = [starts[s], velocities[v], low, high]
    return least_squares(lambda p: fold(p[0], p[1], p[2], p[3], times) - values, guess, bounds=bounds)


def _fit_fall(times, values, floor, gravity):
    """Best (y0, g, e, floor) of `fall_positions` for the vertical axis: a grid over g and e from
    the first seen height, refined by least squares."""
    grid = [(g, e) for g in gravity * np.geomspace(0.05, 5.0, 24) for e in (0.3, 0.5, 0.7, 0.9)]
    # The release height that puts the first seen frame on the free-fall parabola of each g.
    starts = [min(values[0] - 0.5 * g * times[0] ** 2, floor - 0.01) for g, _ in grid]
    errors = [np.square(fall_positions(y0, g, e, floor, times) - values).sum() for y0, (g, e) in zip(starts, grid)]
    best = int(np.argmin(errors))
    (g, e), start = grid[best], starts[best]
    bounds = ([-np.inf, 1e-3 * gravity, 0.0, floor - WALL_SLACK_PX], [floor + WALL_SLACK_PX, 10 * gravity, 1.0, floor + WALL_SLACK_PX])
    return least_squares(lambda p: fall_positions(p[0], p[1], p[2], p[3], times) - values, [start, g, e, floor],
                         bounds=bounds)


def fit_motion(track: Track, motion: str, height: int, width: int, fps: float) -> PhysicsFit:
    """Fits `track` (one tracked object) to `motion`; see the module docstring for models and the verdict."""
    full = track.full
    times = np.flatnonzero(full).astype(np.float64)  # (N,)
    centres = track.centre[full]  # (N, 2)
    if len(times) < MIN_FRAMES[motion]:
        return PhysicsFit(track.colour, motion, math.nan, False, len(times), {}, "too few frames with the whole object")
    left, up, right, down = np.nanmedian(track.extents[full], axis=0)  # px
    if motion == "static":
        residual = centres - centres.mean(axis=0)
        params = {"position": centres.mean(axis=0).tolist()}
    elif motion in ("linear", "rotate"):
        coefficients, residual = _linear(times, centres)
        params = {"velocity": coefficients[:, 0].tolist()}
    elif motion == "bounce":
        fits = [_fit_bounce_axis(times, centres[:, 0], left, width - right),
                _fit_bounce_axis(times, centres[:, 1], up, height - down)]
        residual = np.stack([fit.fun for fit in fits], axis=1)  # (N, 2)
        params = {"velocity": [float(fit.x[1]) for fit in fits]}
    elif motion == "fall":
        gravity = world_gravity(height, fps)
        fit = _fit_fall(times, centres[:, 1], height - down, gravity)
        _, x_residual = _linear(times, np.stack([centres[:, 0], centres[:, 0]], axis=1))
        residual = np.stack([x_residual[:, 0], fit.fun], axis=1)  # (N, 2)
        params = {"gravity": float(fit.x[1]), "world_gravity": gravity, "restitution": float(fit.x[2])}
    else:
        raise ValueError(f"unknown motion {motion!r}")
    rms = _rms(np.linalg.norm(residual, axis=1))
    passed, reason = rms <= RESIDUAL_PX, "" if rms <= RESIDUAL_PX else f"residual {rms:.2f} px > {RESIDUAL_PX}"
    if motion == "fall" and passed and abs(params["gravity"] / params["world_gravity"] - 1) > GRAVITY_TOLERANCE:
        passed, reason = False, f"gravity {params['gravity']:.3f} px/frame^2, world {params['world_gravity']:.3f}"
    return PhysicsFit(track.colour, motion, rms, passed, len(times), params, reason)
