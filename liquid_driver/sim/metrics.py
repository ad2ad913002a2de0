"""Lane metrics of a car on a track: cross-track error, laps and off-track events."""

from __future__ import annotations

import dataclasses
import math
from liquid_driver.sim.track import Track, TrackProjection, wrap_angle

# Slack, m, for the first lap when the car starts just behind the start line.
LAP_START_TOLERANCE = 0.1


@dataclasses.dataclass(frozen=True)
class LaneState:
    """Lane metrics of the car's reference point (the rear-axle centre).

    Attributes:
        cross_track_error: Signed distance from the driving lane's centre, m,
            positive when the car is left of it.
        heading_error: Car yaw minus the lane direction, rad, in [-pi, pi).
        progress: Arc length of the car's projection on the centreline, m,
            in [0, track length).
        lap_count: Full loops completed forward across the start line.
        distance: Path length driven since reset, m, in either direction.
        off_track: Whether |cross_track_error| exceeds half a lane width.
        off_track_events: Number of times the car has left its lane.
    """

    cross_track_error: float
    heading_error: float
    progress: float
    lap_count: int
    distance: float
    off_track: bool
    off_track_events: int


class LaneTracker:
    """Accumulate lane metrics from successive car poses.

    Laps use the unwrapped progress ``u``: every update adds the signed
    along-track change, so driving backwards subtracts. A lap ends each time
    ``u`` first reaches a new multiple of the track length, counted only after
    a full loop since reset, so crossing the start line back and forth never
    counts.
    """

    def __init__(self, track: Track, lane: str):
        self.track = track
        self.lane = lane
        self.lane_offset = track.lane_offset(lane)
        self.half_lane = 0.5 * track.lane_width
        self.reset(0.0, 0.0, 0.0)

    def reset(self, x: float, y: float, yaw: float) -> None:
        """Start over from a pose, with a global projection and zeroed counters."""
        self._projection: TrackProjection = self.track.project_global(x, y)
        progress = self._projection.progress
        # Start in [-length/2, length/2) so a car just behind the line counts
        # its first crossing as the end of lap one.
        if progress >= 0.5 * self.track.length:
            progress -= self.track.length
        self._start = progress
        self._unwrapped = progress
        self._max_unwrapped = progress
        self._x = x
        self._y = y
        self._yaw = yaw
        self.distance = 0.0
        self.off_track_events = 0
        self.off_track = self._is_off_track()

    def update(self, x: float, y: float, yaw: float) -> None:
        """Advance the metrics to a new pose, m and rad."""
        previous = self._projection
        projection = self.track.project(x, y, previous.index)
        change = projection.progress - previous.progress
        half = 0.5 * self.track.length
        change = (change + half) % self.track.length - half  # Shortest way around the loop.
        self._unwrapped += change
        self._max_unwrapped = max(self._max_unwrapped, self._unwrapped)
        self.distance += math.hypot(x - self._x, y - self._y)
        self._projection = projection
        self._x = x
        self._y = y
        self._yaw = yaw
        off_track = self._is_off_track()
        if off_track and not self.off_track:
            self.off_track_events += 1
        self.off_track = off_track

    def _is_off_track(self) -> bool:
        return abs(self.cross_track_error) > self.half_lane

    @property
    def cross_track_error(self) -> float:
        """Signed distance from the lane centre, m, positive to the left."""
        return self._projection.lateral - self.lane_offset

    @property
    def lap_count(self) -> int:
        """Full forward loops completed across the start line."""
        length = self.track.length
        first = math.ceil((self._start + length - LAP_START_TOLERANCE) / length)
        first = max(first, 1)
        reached = math.floor(self._max_unwrapped / length)
        return max(0, reached - first + 1)

    def state(self) -> LaneState:
        """Return the current :class:`LaneState`."""
        return LaneState(
            cross_track_error=self.cross_track_error,
            heading_error=wrap_angle(self._yaw - self._projection.heading),
            progress=self._projection.progress,
            lap_count=self.lap_count,
            distance=self.distance,
            off_track=self.off_track,
            off_track_events=self.off_track_events,
        )
