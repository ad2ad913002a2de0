"""Pure-pursuit expert that drives the lane centre, with optional seeded perturbations.

The expert reads the ground-truth pose of the rear-axle centre. It aims at the
point of the driving lane's centre ``lookahead`` metres further along the
track and steers the circular arc through it. Measuring the lookahead along
the track, not as a straight-line distance, makes that arc coincide with the
lane on a curve of constant radius, so the expert does not cut corners.

With ``recovery=True`` it now and then aims at a line shifted sideways inside
the lane for a short distance (a deliberate drift, flagged as ``perturbing``)
and then steers back. Training can drop the flagged frames and keep the
corrections.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np

from liquid_driver.sim.commands import clamp_steering, yaw_rate_from_steering
from liquid_driver.sim.track import LANES, Track, TrackProjection

# Arc length, m, over which the curvature ahead limits the speed, beyond the lookahead.
_SPEED_PREVIEW = 1.0
# Curvature samples taken over that preview.
_PREVIEW_SAMPLES = 8


@dataclasses.dataclass(frozen=True)
class ExpertConfig:
    """Settings of :class:`ExpertDriver`; lengths in m, angles in rad."""

    # Cruise speed, m/s.
    speed: float = 1.0
    # Distance along the track to the aim point, m; shorter tracks the lane
    # more tightly, longer steers more smoothly.
    lookahead: float = 0.5
    # Extra lookahead per unit speed, s (lookahead grows to lookahead + lookahead_time * speed).
    lookahead_time: float = 0.2
    # Lateral acceleration limit, m/s^2, that slows the car before curves; None keeps the speed fixed.
    max_lateral_accel: Optional[float] = None
    # Lowest speed when slowing for curves, m/s.
    min_speed: float = 0.3
    # Standard deviation of Gaussian noise added to every steering command, rad.
    noise_std: float = 0.0
    # Whether to make deliberate drifts and recover from them.
    recovery: bool = False
    # Mean track distance between the end of one drift and the start of the next, m.
    recovery_interval: float = 6.0
    # Track distance covered while drifting, m, drawn uniformly from this range.
    recovery_length: Tuple[float, float] = (0.6, 1.4)
    # Sideways shift of the aim line while drifting, m, drawn uniformly; the sign is random.
    recovery_offset: Tuple[float, float] = (0.08, 0.16)
    # A drift ends early once the car is this far from the lane centre, m.
    recovery_abort_error: float = 0.2
    # Seed of the noise and drift generator.
    seed: int = 0
    # Car geometry; keep equal to the simulator's SimConfig.
    wheelbase: float = 0.26
    max_steering: float = 0.4
    lane: str = "right"

    def __post_init__(self) -> None:
        positive = ("speed", "lookahead", "min_speed", "recovery_interval", "recovery_abort_error", "wheelbase")
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"ExpertConfig.{name} must be positive and finite, got {value}")
        for name in ("lookahead_time", "noise_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"ExpertConfig.{name} must be >= 0, got {value}")
        if self.max_lateral_accel is not None and not (
            math.isfinite(self.max_lateral_accel) and self.max_lateral_accel > 0.0
        ):
            raise ValueError(
                f"ExpertConfig.max_lateral_accel must be positive m/s^2 or None, got {self.max_lateral_accel}"
            )
        for name in ("recovery_length", "recovery_offset"):
            low, high = getattr(self, name)
            if not (math.isfinite(low) and math.isfinite(high) and 0.0 < low <= high):
                raise ValueError(f"ExpertConfig.{name} must be a range 0 < low <= high in m, got {(low, high)}")
        if not 0.0 < self.max_steering < 0.5 * math.pi:
            raise ValueError(f"ExpertConfig.max_steering must be in (0, pi/2) rad, got {self.max_steering}")
        if self.lane not in LANES:
            raise ValueError(f"ExpertConfig.lane must be one of {LANES}, got {self.lane!r}")


@dataclasses.dataclass(frozen=True)
class ExpertCommand:
    """One command of the expert, as executed (noise included).

    Attributes:
        speed: Forward speed, m/s.
        steering: Bicycle steering angle, rad, positive left.
        yaw_rate: Yaw rate of the bicycle model at that speed and steering, rad/s.
        perturbing: True while the expert drifts on purpose; such frames are
            not examples of good driving.
    """

    speed: float
    steering: float
    yaw_rate: float
    perturbing: bool

    @property
    def curvature(self) -> float:
        """Path curvature of the command, 1/m (yaw rate over speed, 0 at standstill)."""
        return self.yaw_rate / self.speed if self.speed != 0.0 else 0.0


class ExpertDriver:
    """Pure-pursuit driver for the lane centre of a track.

    Args:
        track: Track to drive.
        config: Expert settings; defaults to ``ExpertConfig()``.
    """

    def __init__(self, track: Track, config: Optional[ExpertConfig] = None):
        self.track = track
        self.config = config if config is not None else ExpertConfig()
        self.lane_offset = track.lane_offset(self.config.lane)
        self.reset()

    def reset(self) -> None:
        """Forget the last position and restart the random generator from the seed."""
        self._rng = np.random.default_rng(self.config.seed)
        self._projection: Optional[TrackProjection] = None
        self._drift_offset = 0.0
        self._drift_left = 0.0  # Track distance left in the current drift, m.
        self._until_drift = self._draw_gap()  # Track distance until the next drift, m.

    @property
    def perturbing(self) -> bool:
        """Whether the expert is drifting on purpose."""
        return self._drift_left > 0.0

    def _draw_gap(self) -> float:
        return float(self._rng.exponential(self.config.recovery_interval))

    def _advance_recovery(self, travelled: float, cross_track_error: float) -> None:
        """Start, continue or end a drift after ``travelled`` m of forward progress."""
        config = self.config
        if not config.recovery:
            return
        if self._drift_left > 0.0:
            self._drift_left -= travelled
            if self._drift_left <= 0.0 or abs(cross_track_error) > config.recovery_abort_error:
                self._drift_left = 0.0
                self._drift_offset = 0.0
                self._until_drift = self._draw_gap()
            return
        self._until_drift -= travelled
        if self._until_drift <= 0.0:
            self._drift_left = float(self._rng.uniform(*config.recovery_length))
            magnitude = float(self._rng.uniform(*config.recovery_offset))
            self._drift_offset = magnitude if self._rng.random() < 0.5 else -magnitude

    def _target_speed(self, progress: float, lookahead: float) -> float:
        config = self.config
        if config.max_lateral_accel is None:
            return config.speed
        preview = np.linspace(progress, progress + lookahead + _SPEED_PREVIEW, _PREVIEW_SAMPLES)
        peak = max(abs(self.track.curvature_at(float(s))) for s in preview)
        if peak <= 0.0:
            return config.speed
        return max(config.min_speed, min(config.speed, math.sqrt(config.max_lateral_accel / peak)))

    def command(self, x: float, y: float, yaw: float, speed: float) -> ExpertCommand:
        """Compute the next command from the car's ground-truth state.

        Args:
            x: Rear-axle centre x, m.
            y: Rear-axle centre y, m.
            yaw: Heading, rad.
            speed: Current forward speed, m/s (sets the lookahead growth).

        Returns:
            The command to execute, with its perturbation flag.

        Raises:
            ValueError: If an input is NaN or infinite.
        """
        for name, value in (("x", x), ("y", y), ("yaw", yaw), ("speed", speed)):
            if not math.isfinite(value):
                raise ValueError(f"expert input {name} must be finite, got {value}")
        config = self.config
        previous = self._projection
        projection = self.track.project(x, y, previous.index if previous is not None else None)
        self._projection = projection
        if previous is not None:
            half = 0.5 * self.track.length
            travelled = (projection.progress - previous.progress + half) % self.track.length - half
            self._advance_recovery(max(travelled, 0.0), projection.lateral - self.lane_offset)
        perturbing = self.perturbing

        lookahead = config.lookahead + config.lookahead_time * abs(speed)
        aim_x, aim_y, _ = self.track.pose_at(projection.progress + lookahead, self.lane_offset + self._drift_offset)
        # Aim point in the car frame.
        dx, dy = aim_x - x, aim_y - y
        forward = math.cos(yaw) * dx + math.sin(yaw) * dy
        left = -math.sin(yaw) * dx + math.cos(yaw) * dy
        distance_squared = max(forward * forward + left * left, 1e-9)
        curvature = 2.0 * left / distance_squared  # Arc through the aim point, 1/m.
        steering = math.atan(config.wheelbase * curvature)
        if config.noise_std > 0.0:
            steering += float(self._rng.normal(0.0, config.noise_std))
        steering = clamp_steering(steering, config.max_steering)

        target_speed = self._target_speed(projection.progress, lookahead)
        yaw_rate = yaw_rate_from_steering(target_speed, steering, config.wheelbase)
        return ExpertCommand(speed=target_speed, steering=steering, yaw_rate=yaw_rate, perturbing=perturbing)
