"""Configuration of the simulated car, its camera and the physics."""

from __future__ import annotations

import dataclasses
import math

from liquid_driver.sim.track import LANES

# Offscreen framebuffer limit; larger cameras need a larger <global offwidth>.
MAX_CAMERA_PIXELS = 4096


@dataclasses.dataclass(frozen=True)
class SimConfig:
    """Settings of :class:`~liquid_driver.sim.simulator.Simulator`.

    Lengths are in m, angles in rad (the camera's vertical field of view is in
    degrees, as in MJCF), times in s.
    """

    # Camera image size, pixels. 160x120 keeps rendering and the CNN cheap.
    camera_width: int = 160
    camera_height: int = 120
    # Vertical field of view, degrees. 75 shows both lane lines from 0.1 m ahead.
    camera_fovy_deg: float = 75.0
    # Lens height above the ground, m, about a 1:10 car's roof line.
    camera_mount_height: float = 0.15
    # Downward tilt, rad, so the horizon sits in the upper third of the image.
    camera_pitch: float = 0.35
    # Lens position ahead of the rear axle, m (just behind the front bumper).
    camera_forward: float = 0.31

    # Physics step, s. 2 ms resolves the steering servo and the tyre contacts.
    timestep: float = 0.002
    # Axle-to-axle distance, m, of a typical 1:10 touring car.
    wheelbase: float = 0.26
    # Distance between the left and right wheel centres, m.
    track_width: float = 0.20
    wheel_radius: float = 0.033
    wheel_width: float = 0.025
    # Limit of the bicycle steering angle, rad; the inner wheel turns further.
    max_steering: float = 0.4
    # Forward and reverse speed limits, m/s.
    max_speed: float = 3.0
    max_reverse_speed: float = 1.0
    chassis_mass: float = 1.4  # kg, without the four 0.05 kg wheels
    # Tyre-road sliding friction coefficient (rubber on a smooth floor).
    tyre_friction: float = 1.0
    # Steering servo stiffness, N m/rad. With the 0.02 kg m^2 joint armature
    # it settles in about 0.15 s and stays within about 1 % of its target in a 1 m/s turn.
    steering_kp: float = 20.0
    # Drive motor gain, N m per rad/s of wheel speed error, and torque limit, N m.
    drive_kv: float = 0.05
    drive_max_torque: float = 0.4

    # Lane the car drives in: "right" or "left" of the track direction.
    lane: str = "right"

    def __post_init__(self) -> None:
        for name in ("camera_width", "camera_height"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= MAX_CAMERA_PIXELS:
                raise ValueError(
                    f"{name} must be an int in [1, {MAX_CAMERA_PIXELS}] pixels, got {value!r}"
                )
        if not (math.isfinite(self.camera_fovy_deg) and 1.0 <= self.camera_fovy_deg <= 170.0):
            raise ValueError(f"camera_fovy_deg must be in [1, 170] degrees, got {self.camera_fovy_deg}")
        if not (math.isfinite(self.camera_pitch) and abs(self.camera_pitch) < 0.5 * math.pi):
            raise ValueError(f"camera_pitch must be in (-pi/2, pi/2) rad, got {self.camera_pitch}")
        if not (math.isfinite(self.camera_forward)):
            raise ValueError(f"camera_forward must be finite, got {self.camera_forward}")
        positive = (
            "camera_mount_height", "timestep", "wheelbase", "track_width", "wheel_radius",
            "wheel_width", "max_speed", "chassis_mass", "tyre_friction", "steering_kp",
            "drive_kv", "drive_max_torque",
        )
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be positive and finite, got {value}")
        if not (math.isfinite(self.max_reverse_speed) and self.max_reverse_speed >= 0.0):
            raise ValueError(f"max_reverse_speed must be >= 0 m/s, got {self.max_reverse_speed}")
        if self.timestep > 0.01:
            raise ValueError(
                f"timestep {self.timestep} s is too coarse for the tyre contacts; use <= 0.01 s"
            )
        if not 0.0 < self.max_steering < 0.5 * math.pi - 0.2:
            raise ValueError(f"max_steering must be in (0, pi/2 - 0.2) rad, got {self.max_steering}")
        if self.track_width >= 2.0 * self.wheelbase / math.tan(self.max_steering):
            raise ValueError(
                f"track_width {self.track_width} m is too wide for a {self.max_steering} rad "
                "steering limit: the inner wheel would pass the turning centre"
            )
        if self.lane not in LANES:
            raise ValueError(f"lane must be one of {LANES}, got {self.lane!r}")
