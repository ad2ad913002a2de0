"""Named track layouts and seeded random layouts.

``make_track(name)`` builds one of :data:`LAYOUT_NAMES` or ``"random:<seed>"``.
Every layout keeps both lane centres on a radius of at least
:data:`~liquid_driver.sim.track.DEFAULT_MIN_LANE_RADIUS` and has a lap of
roughly 20 to 35 m.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Dict, Sequence, Tuple

import numpy as np

from liquid_driver.sim.track import Track, TrackGeometryError

logger = logging.getLogger(__name__)

RANDOM_PREFIX = "random:"
# Appended to any layout name, drives the same road the other way round
# (clockwise), so right-hand bends dominate instead of left-hand ones.
REVERSE_SUFFIX = ":reverse"
# Attempts at drawing a valid random layout before giving up on a seed.
RANDOM_MAX_ATTEMPTS = 200

# Curvature steps between pieces are smoothed over this arc length, m, so the
# curvature changes linearly (a clothoid) and a car can follow it.
_CURVATURE_BLEND = 0.6
# Arc-length step of the dense points handed to the spline, m.
_PIECE_SPACING = 0.1

# A piece is (length in m, signed curvature in 1/m); positive turns left.
Piece = Tuple[float, float]


def _straight(length: float) -> Piece:
    return (length, 0.0)


def _arc(radius: float, angle_deg: float) -> Piece:
    """Return an arc piece turning ``angle_deg`` (left if positive) on ``radius`` m."""
    return (radius * math.radians(abs(angle_deg)), math.copysign(1.0 / radius, angle_deg))


def _trace_pieces(pieces: Sequence[Piece], repeats: int) -> np.ndarray:
    """Integrate a curvature profile into centreline points.

    The pieces are repeated ``repeats`` times and must turn left by one full
    circle in total. When one repetition turns by 2 pi / repeats, the loop
    closes by rotational symmetry. Any gap left by rounding is spread
    linearly along the loop.

    Returns:
        Points of shape (K, 2), m, about ``_PIECE_SPACING`` apart.
    """
    lengths = np.array([piece[0] for piece in pieces] * repeats)
    curvatures = np.array([piece[1] for piece in pieces] * repeats)
    total = float(np.sum(lengths))
    # A whole number of steps per repetition samples every repetition alike.
    count = repeats * int(math.ceil(total / (_PIECE_SPACING * repeats)))
    ds = total / count
    s = (np.arange(count) + 0.5) * ds  # (K,) midpoints of the integration steps
    ends = np.cumsum(lengths)
    step_curvature = curvatures[np.minimum(np.searchsorted(ends, s), len(curvatures) - 1)]

    # Moving average over the blend length, wrapped around the closed loop.
    width = max(1, int(round(_CURVATURE_BLEND / ds)))
    kernel = np.ones(width) / width
    padded = np.concatenate([step_curvature[-width:], step_curvature, step_curvature[:width]])
    curvature = np.convolve(padded, kernel, mode="same")[width:-width]  # (K,)
    # Piece ends fall between integration steps, so rescale the curvature to
    # turn by exactly one full circle and leave no kink where the loop closes.
    curvature *= 2.0 * math.pi / float(np.sum(curvature * ds))

    heading = np.concatenate([[0.0], np.cumsum(curvature * ds)])  # (K + 1,)
    # Blending bends the start of the first piece, so align its middle with +x.
    heading -= np.interp(0.5 * lengths[0], np.arange(count + 1) * ds, heading)
    mid_heading = 0.5 * (heading[:-1] + heading[1:])
    steps = np.stack([np.cos(mid_heading), np.sin(mid_heading)], axis=1) * ds  # (K, 2)
    points = np.concatenate([[[0.0, 0.0]], np.cumsum(steps, axis=0)])  # (K + 1, 2)
    gap = points[-1] - points[0]
    points = points - np.outer(np.linspace(0.0, 1.0, count + 1), gap)
    return points[:-1]


def _polar(radius: Callable[[np.ndarray], np.ndarray], count: int = 64) -> np.ndarray:
    angle = np.linspace(0.0, 2.0 * math.pi, count, endpoint=False)
    r = radius(angle)
    return np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1)  # (count, 2)


def _oval() -> np.ndarray:
    """Two 5 m straights joined by half circles of 2.2 m centreline radius."""
    return _trace_pieces([_straight(5.0), _arc(2.2, 180.0)], repeats=2)


def _curvy() -> np.ndarray:
    """Smooth loop whose radius swings with three and two lobes per turn."""
    return _polar(lambda a: 4.2 + 0.7 * np.sin(3.0 * a) + 0.4 * np.cos(2.0 * a + 0.5))


def _tight() -> np.ndarray:
    """Hairpins and an S-bend at a 1.45 m centreline radius (1.15 m inner lane)."""
    half = [
        _straight(2.5),
        _arc(1.45, 90.0),
        _straight(0.8),
        _arc(1.45, 90.0),
        _arc(1.45, -90.0),
        _arc(1.45, 90.0),
        _straight(0.6),
    ]
    return _trace_pieces(half, repeats=2)


def _chicane() -> np.ndarray:
    """Oval whose straights each carry an S-shaped chicane."""
    half = [
        _straight(1.5),
        _arc(2.0, -35.0),
        _arc(2.0, 70.0),
        _arc(2.0, -35.0),
        _straight(1.5),
        _arc(2.3, 180.0),
    ]
    return _trace_pieces(half, repeats=2)


def _kidney() -> np.ndarray:
    """Bean shape with one concave side that turns right."""
    return 1.05 * np.array(
        [
            (0.0, -3.0), (3.0, -2.6), (5.0, -1.0), (4.8, 1.6), (3.0, 2.4), (1.2, 1.4),
            (0.0, 1.2), (-1.2, 1.4), (-3.0, 2.4), (-4.8, 1.6), (-5.0, -1.0), (-3.0, -2.6),
        ]
    )


_LAYOUTS: Dict[str, Callable[[], np.ndarray]] = {
    "oval": _oval,
    "curvy": _curvy,
    "tight": _tight,
    "chicane": _chicane,
    "kidney": _kidney,
}
LAYOUT_NAMES: Tuple[str, ...] = tuple(_LAYOUTS)


def random_control_points(rng: np.random.Generator) -> np.ndarray:
    """Draw control points of a star-shaped loop around the origin.

    Angles are spread evenly with jitter and radii are drawn between 2.5 m and
    6 m, then smoothed around the loop so neighbours do not alternate wildly.

    Returns:
        Points of shape (n, 2), m, counter-clockwise, 7 <= n <= 12.
    """
    count = int(rng.integers(7, 13))
    spacing = 2.0 * math.pi / count
    angle = np.arange(count) * spacing + rng.uniform(-0.3, 0.3, count) * spacing
    angle = np.sort(np.mod(angle + rng.uniform(0.0, 2.0 * math.pi), 2.0 * math.pi))
    radius = rng.uniform(2.5, 6.0, count)
    radius = 0.5 * radius + 0.25 * (np.roll(radius, 1) + np.roll(radius, -1))
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def make_random_track(seed: int, **track_kwargs) -> Track:
    """Build a valid random layout from an integer seed.

    Candidates are drawn from one seeded generator until one passes the
    minimum-radius and self-overlap checks of :class:`Track`, so a seed always
    gives the same layout.

    Raises:
        TrackGeometryError: If no candidate out of ``RANDOM_MAX_ATTEMPTS`` is
            valid, which can happen with a large ``lane_width`` or
            ``min_lane_radius`` in ``track_kwargs``.
    """
    rng = np.random.default_rng(seed)
    last_error = None
    for attempt in range(RANDOM_MAX_ATTEMPTS):
        points = random_control_points(rng)
        try:
            track = Track.from_points(points, f"{RANDOM_PREFIX}{seed}", **track_kwargs)
        except TrackGeometryError as error:
            last_error = error
            continue
        logger.debug("random layout %d accepted after %d rejected candidates", seed, attempt)
        return track
    raise TrackGeometryError(
        f"no valid random layout for seed {seed} in {RANDOM_MAX_ATTEMPTS} attempts "
        f"(last problem: {last_error}); try another seed or the default track settings"
    )


def make_track(name: str, **track_kwargs) -> Track:
    """Build a named layout or ``"random:<int>"``.

    Args:
        name: One of :data:`LAYOUT_NAMES`, or ``"random:"`` followed by an
            integer seed, for example ``"random:7"``. A ``":reverse"`` suffix
            (``"curvy:reverse"``, ``"random:7:reverse"``) gives the same road
            driven clockwise.
        **track_kwargs: Passed to :meth:`Track.from_points`, for example
            ``lane_width`` in m.

    Raises:
        ValueError: If the name is unknown or the seed is not an integer.
        TrackGeometryError: If ``track_kwargs`` make the layout invalid.
    """
    if not isinstance(name, str):
        raise TypeError(f"layout name must be a str, got {type(name).__name__}")
    if name.endswith(REVERSE_SUFFIX):
        forward = make_track(name[: -len(REVERSE_SUFFIX)], **track_kwargs)
        # The dense centreline reversed is the same road with the driving
        # direction, and so the left and right lanes, swapped.
        return Track.from_points(forward.points[::-1], name, **track_kwargs)
    if name.startswith(RANDOM_PREFIX):
        text = name[len(RANDOM_PREFIX) :]
        try:
            seed = int(text)
        except ValueError:
            raise ValueError(
                f"invalid random layout {name!r}: the seed after {RANDOM_PREFIX!r} must be an "
                "integer, for example 'random:7'"
            ) from None
        if seed < 0:
            raise ValueError(f"invalid random layout {name!r}: the seed must be >= 0")
        return make_random_track(seed, **track_kwargs)
    if name not in _LAYOUTS:
        raise ValueError(
            f"unknown layout {name!r}; valid layouts are {', '.join(LAYOUT_NAMES)} "
            f"or '{RANDOM_PREFIX}<int>', each optionally followed by '{REVERSE_SUFFIX}'"
        )
    return Track.from_points(_LAYOUTS[name](), name, **track_kwargs)


def layout_points(name: str) -> np.ndarray:
    """Return the points a named layout's spline passes through, shape (n, 2), m."""
    if name not in _LAYOUTS:
        raise ValueError(f"unknown layout {name!r}; valid layouts are {', '.join(LAYOUT_NAMES)}")
    return _LAYOUTS[name]()

