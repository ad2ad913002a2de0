"""Closed two-lane tracks built from a centreline.

A :class:`Track` stores its centreline resampled at a uniform arc-length step,
with the heading, left normal and signed curvature at every sample. The road
has two lanes of ``lane_width`` metres, one on each side of the centreline,
and a shoulder beyond each solid edge line. Vehicles drive in the order of the
centreline points; the right-hand lane is the lane on the right of that
direction.

Conventions (world frame, z up):
    * ``progress`` is the arc length along the centreline from its first point,
      in metres, in ``[0, length)``.
    * ``lateral`` offsets are positive to the left of the driving direction.
    * ``curvature`` is in 1/m and positive for left turns.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple

import numpy as np

# Geometry defaults, in metres, for a 1:10-scale road.
DEFAULT_LANE_WIDTH = 0.6  # One lane; the car is 0.2 m wide at the wheels.
DEFAULT_SHOULDER_WIDTH = 0.15  # Road surface beyond each solid edge line.
DEFAULT_RESOLUTION = 0.05  # Arc-length step between centreline samples.
DEFAULT_MIN_LANE_RADIUS = 1.0  # The car turns on a 0.62 m radius at full lock.
DEFAULT_CLEARANCE = 0.3  # Minimum gap between two road parts that pass close.

LANES = ("right", "left")

# Samples of the spline per output sample when measuring arc length.
_ARC_LENGTH_OVERSAMPLING = 8
# Upper bound on centreline samples, which keeps the O(N^2) self-overlap check
# under a second; 20000 samples at the default resolution is a 1 km track.
MAX_SAMPLES = 20000
# Sample pairs compared at once by the self-overlap check, to bound memory.
_OVERLAP_PAIRS_PER_CHUNK = 1_000_000


class TrackGeometryError(ValueError):
    """Raised when a centreline does not give a valid closed road."""


@dataclasses.dataclass(frozen=True)
class TrackProjection:
    """Closest point of the centreline to a query point.

    Attributes:
        index: Index of the centreline segment that contains the closest point.
        progress: Arc length of the closest point along the centreline, m.
        lateral: Signed offset of the query point from the centreline, m,
            positive to the left of the driving direction.
        heading: Centreline heading at the closest point, rad, in [-pi, pi].
        distance: Unsigned distance from the query point to the centreline, m.
    """

    index: int
    progress: float
    lateral: float
    heading: float
    distance: float


def wrap_angle(angle: float) -> float:
    """Wrap an angle in radians to [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


class _PeriodicSpline:
    """Closed C2 cubic spline through 2D points, parameterised by chord length."""

    def __init__(self, points: np.ndarray):
        self.points = points  # (n, 2)
        closing = np.roll(points, -1, axis=0) - points  # (n, 2)
        self.h = np.linalg.norm(closing, axis=1)  # (n,) chord of each interval
        self.knots = np.concatenate([[0.0], np.cumsum(self.h)])  # (n + 1,)
        self.period = float(self.knots[-1])
        self.second = self._solve_second_derivatives(points, self.h)  # (n, 2)

    @staticmethod
    def _solve_second_derivatives(points: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Solve the cyclic tridiagonal system for the knot second derivatives."""
        n = len(points)
        h_prev = np.roll(h, 1)
        slope = (np.roll(points, -1, axis=0) - points) / h[:, None]  # (n, 2)
        rhs = 6.0 * (slope - np.roll(slope, 1, axis=0))  # (n, 2)
        lower = h_prev  # Coefficient of M[i - 1] in row i.
        diagonal = 2.0 * (h_prev + h)
        upper = h  # Coefficient of M[i + 1] in row i.

        # Sherman-Morrison: split off the two corner entries of the cyclic
        # matrix as a rank-one update u v^T of a plain tridiagonal matrix.
        gamma = -diagonal[0]
        reduced_diagonal = diagonal.copy()
        reduced_diagonal[0] -= gamma
        reduced_diagonal[-1] -= lower[0] * upper[-1] / gamma
        u = np.zeros(n)
        u[0] = gamma
        u[-1] = upper[-1]
        y = _solve_tridiagonal(lower, reduced_diagonal, upper, rhs)
        z = _solve_tridiagonal(lower, reduced_diagonal, upper, u[:, None])
        v_y = y[0] + lower[0] / gamma * y[-1]  # v = (1, 0, ..., lower[0] / gamma)
        v_z = z[0, 0] + lower[0] / gamma * z[-1, 0]
        return y - np.outer(z[:, 0], v_y / (1.0 + v_z))

    def evaluate(self, u: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Evaluate position, first and second derivative at parameters ``u``.

        Args:
            u: Parameters, shape (k,), wrapped into one period.

        Returns:
            Three arrays of shape (k, 2).
        """
        u = np.mod(u, self.period)
        i = np.clip(np.searchsorted(self.knots, u, side="right") - 1, 0, len(self.h) - 1)
        j = (i + 1) % len(self.h)
        h = self.h[i][:, None]  # (k, 1)
        a = (self.knots[i + 1][:, None] - u[:, None]) / h  # Weight of knot i.
        b = 1.0 - a  # Weight of knot i + 1.
        p0, p1 = self.points[i], self.points[j]
        m0, m1 = self.second[i], self.second[j]
        position = a * p0 + b * p1 + ((a**3 - a) * m0 + (b**3 - b) * m1) * h**2 / 6.0
        first = (p1 - p0) / h + ((1.0 - 3.0 * a**2) * m0 + (3.0 * b**2 - 1.0) * m1) * h / 6.0
        second = a * m0 + b * m1
        return position, first, second


def _solve_tridiagonal(
    lower: np.ndarray, diagonal: np.ndarray, upper: np.ndarray, rhs: np.ndarray
) -> np.ndarray:
    """Solve a tridiagonal system with the Thomas algorithm.

    Row i reads ``lower[i] x[i-1] + diagonal[i] x[i] + upper[i] x[i+1] = rhs[i]``;
    ``lower[0]`` and ``upper[-1]`` are ignored. ``rhs`` has shape (n, k).
    """
    n = len(diagonal)
    c = np.zeros(n)
    d = np.zeros_like(rhs, dtype=float)
    c[0] = upper[0] / diagonal[0]
    d[0] = rhs[0] / diagonal[0]
    for i in range(1, n):
        denominator = diagonal[i] - lower[i] * c[i - 1]
        c[i] = upper[i] / denominator
        d[i] = (rhs[i] - lower[i] * d[i - 1]) / denominator
    x = np.zeros_like(d)
    x[-1] = d[-1]
    for i in range(n - 2, -1, -1):
        x[i] = d[i] - c[i] * x[i + 1]
    return x


def _clean_control_points(points: np.ndarray, min_spacing: float) -> np.ndarray:
    """Validate control points and drop repeated ones, including a closing copy."""
    if points.ndim != 2 or points.shape[1] != 2:
        raise TrackGeometryError(
            f"centreline points must have shape (n, 2), got {points.shape}; "
            "pass one (x, y) row per point in metres"
        )
    if not np.all(np.isfinite(points)):
        raise TrackGeometryError("centreline points contain NaN or infinite values")
    keep = [0]
    for i in range(1, len(points)):
        if np.linalg.norm(points[i] - points[keep[-1]]) > min_spacing:
            keep.append(i)
    while len(keep) > 1 and np.linalg.norm(points[keep[-1]] - points[keep[0]]) <= min_spacing:
        keep.pop()  # The caller repeated the first point to close the loop.
    cleaned = points[keep]
    if len(cleaned) < 4:
        raise TrackGeometryError(
            f"a closed centreline needs at least 4 distinct points, got {len(cleaned)}"
        )
    return cleaned


class Track:
    """Closed two-lane road around a uniformly resampled centreline.

    Build one with :meth:`from_points` or :func:`make_track`; the constructor
    takes already resampled arrays and validates them.

    Attributes:
        name: Layout name, for logs and plots.
        points: Centreline samples, shape (N, 2), m, uniform arc-length step.
        progress: Arc length of each sample from the first one, shape (N,), m.
        heading: Driving direction at each sample, shape (N,), rad.
        normal: Unit left normal at each sample, shape (N, 2).
        curvature: Signed curvature at each sample, shape (N,), 1/m.
        length: Length of the closed centreline, m.
        lane_width: Width of one lane, m.
        shoulder_width: Road surface beyond each edge line, m.
    """

    def __init__(
        self,
        name: str,
        points: np.ndarray,
        heading: np.ndarray,
        curvature: np.ndarray,
        *,
        lane_width: float = DEFAULT_LANE_WIDTH,
        shoulder_width: float = DEFAULT_SHOULDER_WIDTH,
        min_lane_radius: float = DEFAULT_MIN_LANE_RADIUS,
        clearance: float = DEFAULT_CLEARANCE,
    ):
        points = np.array(points, dtype=float)  # A copy, frozen below.
        if points.ndim != 2 or points.shape[1] != 2 or not 8 <= len(points) <= MAX_SAMPLES:
            raise TrackGeometryError(
                f"resampled centreline must have shape (N, 2) with 8 <= N <= {MAX_SAMPLES}, "
                f"got {points.shape}; adjust the resolution"
            )
        heading = np.array(heading, dtype=float)
        curvature = np.array(curvature, dtype=float)
        if heading.shape != (len(points),) or curvature.shape != (len(points),):
            raise TrackGeometryError(
                f"heading {heading.shape} and curvature {curvature.shape} must both have shape "
                f"({len(points)},), one value per centreline point"
            )
        for label, value in (("lane_width", lane_width), ("min_lane_radius", min_lane_radius)):
            if not (math.isfinite(value) and value > 0.0):
                raise TrackGeometryError(f"{label} must be a positive length in m, got {value}")
        for label, value in (("shoulder_width", shoulder_width), ("clearance", clearance)):
            if not (math.isfinite(value) and value >= 0.0):
                raise TrackGeometryError(f"{label} must be >= 0 m, got {value}")

        self.name = name
        self.points = points
        self.heading = heading
        self.curvature = curvature
        self.normal = np.stack([-np.sin(self.heading), np.cos(self.heading)], axis=1)
        segment = np.roll(points, -1, axis=0) - points  # (N, 2) from i to i + 1
        self.segment_length = np.linalg.norm(segment, axis=1)  # (N,)
        self.progress = np.concatenate([[0.0], np.cumsum(self.segment_length)[:-1]])
        self.length = float(np.sum(self.segment_length))
        self.lane_width = float(lane_width)
        self.shoulder_width = float(shoulder_width)
        self.min_lane_radius = float(min_lane_radius)
        self.clearance = float(clearance)
        for array in (self.points, self.heading, self.curvature, self.normal, self.progress, self.segment_length):
            array.setflags(write=False)

        # Plain Python copies for the per-step local projection, which is
        # faster than NumPy on a handful of segments.
        self._x = points[:, 0].tolist()
        self._y = points[:, 1].tolist()
        self._dx = segment[:, 0].tolist()
        self._dy = segment[:, 1].tolist()
        self._length_squared = (self.segment_length**2).tolist()
        self._progress = self.progress.tolist()
        self._heading = self.heading.tolist()

        self._check_radius()
        self._check_overlap()

    def __repr__(self) -> str:
        return (
            f"Track({self.name!r}, length={self.length:.2f} m, samples={len(self.points)}, "
            f"lane_width={self.lane_width} m)"
        )

    # ------------------------------------------------------------------
    # Construction

    @classmethod
    def from_points(
        cls,
        points: Sequence[Sequence[float]],
        name: str = "custom",
        *,
        lane_width: float = DEFAULT_LANE_WIDTH,
        shoulder_width: float = DEFAULT_SHOULDER_WIDTH,
        resolution: float = DEFAULT_RESOLUTION,
        min_lane_radius: float = DEFAULT_MIN_LANE_RADIUS,
        clearance: float = DEFAULT_CLEARANCE,
    ) -> "Track":
        """Build a track from centreline points through a closed cubic spline.

        Args:
            points: Centreline points, shape (n, 2), m, in driving order. The
                loop closes by itself; repeating the first point is allowed.
            name: Layout name.
            lane_width: Width of one lane, m.
            shoulder_width: Road surface beyond each edge line, m.
            resolution: Target arc-length step between samples, m.
            min_lane_radius: Smallest radius allowed for either lane centre, m.
            clearance: Smallest gap allowed between road parts that are not
                neighbours along the track, m.

        Raises:
            TrackGeometryError: If the points are malformed, a lane centre
                turns tighter than ``min_lane_radius``, or the road overlaps
                itself. The message names the place along the track.
        """
        if not (math.isfinite(resolution) and resolution > 0.0):
            raise TrackGeometryError(f"resolution must be a positive length in m, got {resolution}")
        control = _clean_control_points(np.asarray(points, dtype=float), 1e-6)
        spline = _PeriodicSpline(control)
        # The chord-length period is a lower bound on the arc length.
        if spline.period / resolution > MAX_SAMPLES:
            raise TrackGeometryError(
                f"a centreline of at least {spline.period:.1f} m at resolution {resolution} m needs "
                f"more than {MAX_SAMPLES} samples; raise the resolution or shrink the points"
            )

        # Arc length of the spline from a dense polyline, then the parameter
        # of each uniformly spaced output sample by interpolation.
        dense_count = max(
            len(control) * _ARC_LENGTH_OVERSAMPLING,
            int(math.ceil(spline.period / resolution)) * _ARC_LENGTH_OVERSAMPLING,
        )
        u_dense = np.linspace(0.0, spline.period, dense_count + 1)
        dense, _, _ = spline.evaluate(u_dense)
        arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
        sample_count = max(8, int(round(arc[-1] / resolution)))
        if sample_count > MAX_SAMPLES:
            raise TrackGeometryError(
                f"a {arc[-1]:.1f} m centreline at resolution {resolution} m needs {sample_count} "
                f"samples, more than {MAX_SAMPLES}; raise the resolution or shrink the points"
            )
        arc_targets = np.linspace(0.0, arc[-1], sample_count, endpoint=False)
        u_samples = np.interp(arc_targets, arc, u_dense)

        position, first, second = spline.evaluate(u_samples)
        speed = np.linalg.norm(first, axis=1)  # (N,) |dr/du|
        heading = np.arctan2(first[:, 1], first[:, 0])
        curvature = (first[:, 0] * second[:, 1] - first[:, 1] * second[:, 0]) / speed**3
        return cls(
            name,
            position,
            heading,
            curvature,
            lane_width=lane_width,
            shoulder_width=shoulder_width,
            min_lane_radius=min_lane_radius,
            clearance=clearance,
        )

    # ------------------------------------------------------------------
    # Validation

    @property
    def road_half_width(self) -> float:
        """Distance from the centreline to the outer edge of the road, m."""
        return self.lane_width + self.shoulder_width

    @property
    def min_centreline_radius(self) -> float:
        """Smallest turning radius of the centreline, m (inf for no curvature)."""
        peak = float(np.max(np.abs(self.curvature)))
        return math.inf if peak == 0.0 else 1.0 / peak

    @property
    def min_lane_centre_radius(self) -> float:
        """Smallest turning radius of either lane centre, m."""
        return self.min_centreline_radius - 0.5 * self.lane_width

    def _check_radius(self) -> None:
        radius = self.min_lane_centre_radius
        if radius < self.min_lane_radius:
            where = float(self.progress[int(np.argmax(np.abs(self.curvature)))])
            raise TrackGeometryError(
                f"track {self.name!r}: a lane centre turns on a {radius:.2f} m radius at "
                f"progress {where:.2f} m, below the minimum {self.min_lane_radius:.2f} m; "
                "scale the centreline points up or lower min_lane_radius"
            )

    def _check_overlap(self) -> None:
        """Raise if two parts of the road touch or pass closer than the clearance.

        Samples closer than ``window`` along the track are neighbours and are
        skipped. Up to half a turn of the tightest circle, an arc whose
        curvature stays within that circle's has a chord at least as long as
        the circle's arc of equal length. So samples further apart than
        ``window`` are one road width apart unless the road folds back.
        Samples more than half that turn apart must also keep the clearance.
        """
        half_width = self.road_half_width
        radius = self.min_centreline_radius
        if radius <= half_width:
            raise TrackGeometryError(
                f"track {self.name!r}: the inner road edge folds over itself because the "
                f"centreline radius {radius:.2f} m is not above the road half width "
                f"{half_width:.2f} m; widen the turns"
            )
        window = 2.0 * radius * math.asin(half_width / radius) if math.isfinite(radius) else 2.0 * half_width
        near_limit = 2.0 * half_width  # Roads touch below this centre spacing.
        far_limit = near_limit + self.clearance
        far_window = math.pi * radius if math.isfinite(radius) else far_limit

        chunk = max(1, _OVERLAP_PAIRS_PER_CHUNK // len(self.points))
        for start in range(0, len(self.points), chunk):
            block = self.points[start : start + chunk]  # (b, 2)
            distance = np.linalg.norm(block[:, None, :] - self.points[None, :, :], axis=2)  # (b, N)
            separation = np.abs(self.progress[start : start + chunk, None] - self.progress[None, :])
            separation = np.minimum(separation, self.length - separation)  # (b, N) along track
            limit = np.where(separation >= far_window, far_limit, near_limit)
            bad = (separation >= window) & (distance < limit)
            if np.any(bad):
                i, j = np.unravel_index(int(np.argmax(bad)), bad.shape)
                raise TrackGeometryError(
                    f"track {self.name!r}: the road overlaps itself or passes within "
                    f"{self.clearance:.2f} m of itself between progress "
                    f"{self.progress[start + i]:.2f} m and {self.progress[j]:.2f} m "
                    f"(centres {distance[i, j]:.2f} m apart, minimum {float(limit[i, j]):.2f} m); "
                    "move those parts of the centreline apart"
                )

    # ------------------------------------------------------------------
    # Lanes and queries

    def lane_offset(self, lane: str) -> float:
        """Return the lateral offset of a lane centre from the centreline, m."""
        if lane == "right":
            return -0.5 * self.lane_width
        if lane == "left":
            return 0.5 * self.lane_width
        raise ValueError(f"lane must be one of {LANES}, got {lane!r}")

    def lane_centre(self, lane: str) -> np.ndarray:
        """Return the centre line of a lane, shape (N, 2), m."""
        return self.points + self.lane_offset(lane) * self.normal

    def lane_length(self, lane: str) -> float:
        """Return the length of a lane centre, m.

        It differs from :attr:`length` by the lane offset times the total
        turning of 2 pi. The right lane of a counter-clockwise loop is the
        outer one, longer by pi times the lane width (1.9 m by default), so a
        lap there takes longer than ``length / speed``.
        """
        line = self.lane_centre(lane)
        return float(np.sum(np.linalg.norm(np.roll(line, -1, axis=0) - line, axis=1)))

    def offset_line(self, lateral: float) -> np.ndarray:
        """Return the line at a lateral offset from the centreline, shape (N, 2), m."""
        return self.points + lateral * self.normal

    def index_at(self, progress: float) -> Tuple[int, float]:
        """Return the segment index and fraction along it for a progress in m."""
        s = float(progress) % self.length
        i = int(np.searchsorted(self.progress, s, side="right") - 1)
        i = min(max(i, 0), len(self.points) - 1)
        fraction = (s - self._progress[i]) / self.segment_length[i]
        return i, min(max(fraction, 0.0), 1.0)

    def pose_at(self, progress: float, lateral: float = 0.0) -> Tuple[float, float, float]:
        """Return the point and heading at a progress and lateral offset.

        Args:
            progress: Arc length along the centreline, m; wraps around.
            lateral: Offset to the left of the centreline, m.

        Returns:
            ``(x, y, heading)`` in m and rad.
        """
        i, t = self.index_at(progress)
        j = (i + 1) % len(self.points)
        point = (1.0 - t) * self.points[i] + t * self.points[j]
        heading = self._interpolate_heading(i, t)
        normal = np.array([-math.sin(heading), math.cos(heading)])
        x, y = point + lateral * normal
        return float(x), float(y), heading

    def curvature_at(self, progress: float) -> float:
        """Return the centreline curvature at a progress, 1/m."""
        i, t = self.index_at(progress)
        j = (i + 1) % len(self.points)
        return float((1.0 - t) * self.curvature[i] + t * self.curvature[j])

    def _interpolate_heading(self, i: int, t: float) -> float:
        j = (i + 1) % len(self._heading)
        turn = wrap_angle(self._heading[j] - self._heading[i])
        return wrap_angle(self._heading[i] + t * turn)

    def _project_segment(self, i: int, x: float, y: float) -> Tuple[float, float]:
        """Return (squared distance, fraction) of the closest point on segment i."""
        px = x - self._x[i]
        py = y - self._y[i]
        dx = self._dx[i]
        dy = self._dy[i]
        t = (px * dx + py * dy) / self._length_squared[i]
        t = min(max(t, 0.0), 1.0)
        ex = px - t * dx
        ey = py - t * dy
        return ex * ex + ey * ey, t

    def _projection(self, i: int, t: float, x: float, y: float) -> TrackProjection:
        px = x - self._x[i]
        py = y - self._y[i]
        dx = self._dx[i]
        dy = self._dy[i]
        cross = dx * py - dy * px  # Positive when the point is left of the segment.
        ex = px - t * dx
        ey = py - t * dy
        distance = math.hypot(ex, ey)
        lateral = math.copysign(distance, cross) if distance > 0.0 else 0.0
        progress = (self._progress[i] + t * self.segment_length[i]) % self.length
        return TrackProjection(
            index=i,
            progress=float(progress),
            lateral=float(lateral),
            heading=self._interpolate_heading(i, t),
            distance=float(distance),
        )

    def project_global(self, x: float, y: float) -> TrackProjection:
        """Project a point onto the whole centreline, with no prior index."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"cannot project a non-finite point ({x}, {y}) onto the track")
        offset = np.array([x, y]) - self.points  # (N, 2)
        segment = np.roll(self.points, -1, axis=0) - self.points  # (N, 2)
        t = np.clip(np.sum(offset * segment, axis=1) / self.segment_length**2, 0.0, 1.0)  # (N,)
        error = offset - t[:, None] * segment  # (N, 2)
        i = int(np.argmin(np.einsum("ij,ij->i", error, error)))
        return self._projection(i, float(t[i]), x, y)

    def project(self, x: float, y: float, hint: Optional[int] = None) -> TrackProjection:
        """Project a point onto the centreline, searching near a previous index.

        With ``hint`` (the ``index`` of the last projection), the search walks
        along the centreline from there while the distance decreases. It thus
        follows a car moving either way and stays on its part of the track
        where another part passes nearby. When the local result is off the
        road, for example after a teleport, the closer of it and a global
        search is returned.

        Args:
            x: Query point x, m.
            y: Query point y, m.
            hint: Segment index of the previous projection, or None.

        Raises:
            ValueError: If ``x`` or ``y`` is not finite.
        """
        if hint is None:
            return self.project_global(x, y)
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ValueError(f"cannot project a non-finite point ({x}, {y}) onto the track")
        n = len(self._x)
        i = int(hint) % n
        best, t = self._project_segment(i, x, y)
        for step in (1, -1):
            moved = False
            for _ in range(n):
                j = (i + step) % n
                candidate, t_candidate = self._project_segment(j, x, y)
                if candidate >= best:
                    break
                i, best, t, moved = j, candidate, t_candidate, True
            if moved:
                break
        local = self._projection(i, t, x, y)
        if local.distance <= self.road_half_width:
            return local
        candidate = self.project_global(x, y)
        return candidate if candidate.distance < local.distance else local
