"""Conversions between twist commands and Ackermann steering.

All functions use the kinematic bicycle model with the reference point at the
centre of the rear axle: ``yaw_rate = speed * tan(steering) / wheelbase``.
``steering`` is the angle of a virtual front wheel on the car's centre line;
the two real front wheels turn by the Ackermann angles of
:func:`ackermann_wheel_angles`.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

# Below this speed, m/s, a yaw rate does not determine a steering angle.
STANDSTILL_SPEED = 1e-3


def _require_finite(**values: float) -> None:
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")


def _check_geometry(wheelbase_m: float, max_steering_rad: Optional[float]) -> None:
    _require_finite(wheelbase_m=wheelbase_m)
    if wheelbase_m <= 0.0:
        raise ValueError(f"wheelbase_m must be > 0 m, got {wheelbase_m}")
    if max_steering_rad is not None:
        _require_finite(max_steering_rad=max_steering_rad)
        if not 0.0 < max_steering_rad < 0.5 * math.pi:
            raise ValueError(
                f"max_steering_rad must be in (0, pi/2) rad, got {max_steering_rad}"
            )


def clamp_steering(steering_rad: float, max_steering_rad: float) -> float:
    """Clamp a steering angle to [-max_steering_rad, max_steering_rad]."""
    return min(max(steering_rad, -max_steering_rad), max_steering_rad)


def steering_from_twist(
    speed_mps: float,
    yaw_rate_radps: float,
    wheelbase_m: float,
    max_steering_rad: float,
) -> float:
    """Convert a forward speed and yaw rate into a bicycle steering angle.

    ``steering = atan(wheelbase * yaw_rate / speed)``, clamped to the steering
    limit. For a negative speed (reversing) the same formula holds, so a
    positive yaw rate while reversing gives a negative (right) steering angle.
    Below :data:`STANDSTILL_SPEED` the car cannot turn, and the result is 0.

    Args:
        speed_mps: Forward speed of the rear axle, m/s.
        yaw_rate_radps: Yaw rate, rad/s, positive counter-clockwise.
        wheelbase_m: Distance between the axles, m.
        max_steering_rad: Steering limit, rad, in (0, pi/2).

    Returns:
        Steering angle, rad, positive to the left.

    Raises:
        ValueError: If an input is NaN or infinite, or the geometry is invalid.
    """
    _require_finite(speed_mps=speed_mps, yaw_rate_radps=yaw_rate_radps)
    _check_geometry(wheelbase_m, max_steering_rad)
    if abs(speed_mps) < STANDSTILL_SPEED:
        return 0.0
    steering = math.atan(wheelbase_m * yaw_rate_radps / speed_mps)
    return clamp_steering(steering, max_steering_rad)


def yaw_rate_from_steering(
    speed_mps: float,
    steering_rad: float,
    wheelbase_m: float,
    max_steering_rad: Optional[float] = None,
) -> float:
    """Convert a forward speed and bicycle steering angle into a yaw rate.

    The inverse of :func:`steering_from_twist` for steering angles within the
    limit: ``yaw_rate = speed * tan(steering) / wheelbase``.

    Args:
        speed_mps: Forward speed of the rear axle, m/s; may be negative.
        steering_rad: Steering angle, rad, positive to the left.
        wheelbase_m: Distance between the axles, m.
        max_steering_rad: Steering limit, rad; the angle is clamped to it
            first. None applies no limit but still requires |angle| < pi/2.

    Returns:
        Yaw rate, rad/s, positive counter-clockwise.

    Raises:
        ValueError: If an input is NaN or infinite, or the geometry is invalid.
    """
    _require_finite(speed_mps=speed_mps, steering_rad=steering_rad)
    _check_geometry(wheelbase_m, max_steering_rad)
    if max_steering_rad is not None:
        steering_rad = clamp_steering(steering_rad, max_steering_rad)
    elif abs(steering_rad) >= 0.5 * math.pi:
        raise ValueError(f"steering_rad must be in (-pi/2, pi/2) rad, got {steering_rad}")
    return speed_mps * math.tan(steering_rad) / wheelbase_m


def curvature_from_steering(steering_rad: float, wheelbase_m: float) -> float:
    """Return the path curvature of the rear axle, 1/m, for a steering angle."""
    _require_finite(steering_rad=steering_rad)
    _check_geometry(wheelbase_m, None)
    return math.tan(steering_rad) / wheelbase_m


def ackermann_wheel_angles(
    steering_rad: float, wheelbase_m: float, track_width_m: float
) -> Tuple[float, float]:
    """Split a bicycle steering angle into left and right front wheel angles.

    Both front wheels point at the same turning centre on the rear-axle line,
    so the inner wheel turns more than the outer one.

    Returns:
        ``(left, right)`` wheel angles, rad, positive to the left.
    """
    if steering_rad == 0.0:
        return 0.0, 0.0
    radius = wheelbase_m / math.tan(steering_rad)  # Signed; positive turns left.
    left = math.atan(wheelbase_m / (radius - 0.5 * track_width_m))
    right = math.atan(wheelbase_m / (radius + 0.5 * track_width_m))
    return left, right


def rear_wheel_speeds(
    speed_mps: float, steering_rad: float, wheelbase_m: float, track_width_m: float
) -> Tuple[float, float]:
    """Return the left and right rear wheel ground speeds, m/s, of a turn.

    The outer wheel travels a longer arc; this electronic differential keeps
    the two driven wheels from scrubbing.
    """
    curvature = math.tan(steering_rad) / wheelbase_m
    half_track = 0.5 * track_width_m
    return speed_mps * (1.0 - curvature * half_track), speed_mps * (1.0 + curvature * half_track)
