"""MuJoCo simulation of the car on a track, with a forward camera.

Typical use, one control period at a time::

    sim = Simulator.from_layout("oval", seed=0)
    sim.reset()
    sim.set_command(speed=1.0, steering=0.1)
    sim.step(0.05)
    image = sim.render()  # (120, 160, 3) uint8 RGB
    print(sim.pose, sim.lane_state())

The car's reference point is the centre of the rear axle, at wheel-centre
height: :attr:`Simulator.pose`, :attr:`Simulator.velocity` and the lane
metrics all refer to it, as does the kinematic bicycle model of
:mod:`liquid_driver.sim.commands`. It is also the origin of the chassis body.

Physics runs at ``SimConfig.timestep``; :meth:`Simulator.step` advances a
whole number of those steps and updates the lane metrics after each one.
Rendering is optional: the OpenGL context is only created by the first
:meth:`Simulator.render` call, so physics-only use needs no display or GPU.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Optional, Tuple

import mujoco
import numpy as np

from liquid_driver.sim import gl
from liquid_driver.sim.commands import ackermann_wheel_angles, clamp_steering, rear_wheel_speeds
from liquid_driver.sim.config import SimConfig
from liquid_driver.sim.layouts import make_track
from liquid_driver.sim.metrics import LaneState, LaneTracker
from liquid_driver.sim.scene import (
    CAMERA_NAME,
    DRIVE_ACTUATORS,
    FREE_JOINT,
    GROUND_GEOM,
    ROAD_MESHES,
    STEER_ACTUATORS,
    build_mjcf,
)
from liquid_driver.sim.style import VisualStyle, relight, visual_style
from liquid_driver.sim.track import Track

logger = logging.getLogger(__name__)

# MuJoCo warnings that mean the state blew up; MuJoCo resets mjData on each.
DIVERGENCE_WARNINGS = (
    mujoco.mjtWarning.mjWARN_BADQACC,
    mujoco.mjtWarning.mjWARN_BADQVEL,
    mujoco.mjtWarning.mjWARN_BADQPOS,
)
_DIVERGED_MESSAGE = (
    "physics diverged at t={time:.3f} s with MuJoCo warning {warning}; call reset() to continue, "
    "and if it repeats lower SimConfig.timestep (now {timestep} s)"
)


class SimulationDiverged(RuntimeError):
    """Raised when MuJoCo reports an unstable or non-finite state.

    Attributes:
        warning: Name of the MuJoCo warning, for example ``"mjWARN_BADQACC"``.
        time: Simulated time of the failed step, s.
    """

    def __init__(self, message: str, warning: str, time: float):
        super().__init__(message)
        self.warning = warning
        self.time = time


@dataclasses.dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole model of the forward camera, for ``sensor_msgs/CameraInfo``.

    Pixel coordinates follow OpenCV: the centre of the top-left pixel is
    (0, 0), so the principal point of the centred MuJoCo camera is
    ((width - 1) / 2, (height - 1) / 2). There is no lens distortion.

    Attributes:
        width: Image width, pixels.
        height: Image height, pixels.
        fx: Focal length along x, pixels.
        fy: Focal length along y, pixels.
        cx: Principal point x, pixels.
        cy: Principal point y, pixels.
        position: Lens position (forward, left, up) from the rear-axle centre
            on the ground, m.
        pitch: Downward tilt of the optical axis, rad.
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    position: Tuple[float, float, float]
    pitch: float

    @property
    def matrix(self) -> np.ndarray:
        """Intrinsic matrix K, shape (3, 3)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


def camera_intrinsics(config: SimConfig) -> CameraIntrinsics:
    """Compute the intrinsics of the forward camera from a config."""
    # MuJoCo's fovy spans the full image height and its pixels are square.
    fy = 0.5 * config.camera_height / math.tan(0.5 * math.radians(config.camera_fovy_deg))
    return CameraIntrinsics(
        width=config.camera_width,
        height=config.camera_height,
        fx=fy,
        fy=fy,
        cx=0.5 * (config.camera_width - 1),
        cy=0.5 * (config.camera_height - 1),
        position=(config.camera_forward, 0.0, config.camera_mount_height),
        pitch=config.camera_pitch,
    )


def _require_finite(**values: float) -> None:
    for name, value in values.items():
        if not isinstance(value, (int, float, np.floating, np.integer)) or isinstance(value, bool):
            raise TypeError(f"{name} must be a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")


def _stop_flat_geoms_casting_shadows(model: mujoco.MjModel) -> None:
    """Keep the ground, the road and its markings from shadowing one another.

    These layers lie 2 mm apart, so with shadow mapping the markings would
    throw dark fringes onto the road beside them, a texel wide or more.
    """
    if not hasattr(model, "geom_castshadow"):
        # NOTE: MuJoCo before 4.0 has no per-geom castshadow, so there the
        # fringes stay: thin dark strips on the far side of the lines from the sun.
        return
    for name in (GROUND_GEOM, *ROAD_MESHES):
        model.geom_castshadow[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)] = False


class Simulator:
    """A car on a track in MuJoCo: commands in, poses, metrics and images out.

    Args:
        track: Track to drive on.
        seed: Visual seed for colours, lighting and scenery (0 is neutral).
        config: Car, camera and physics settings.
        lighting: Lighting preset from :data:`~liquid_driver.sim.style.LIGHTING_PRESETS`
            in place of the seed's own; "default" keeps the seed's lighting.

    Raises:
        ValueError: If ``seed`` or ``lighting`` is invalid.
    """

    def __init__(
        self, track: Track, seed: int = 0, config: Optional[SimConfig] = None, lighting: str = "default"
    ):
        self.config = config if config is not None else SimConfig()
        self.track = track
        self.seed = seed
        self.lighting = lighting
        self.style: VisualStyle = relight(visual_style(seed, track), lighting)
        self.mjcf = build_mjcf(track, self.config, self.style)
        self.model = mujoco.MjModel.from_xml_string(self.mjcf)
        if self.style.shadows:
            _stop_flat_geoms_casting_shadows(self.model)
        self.data = mujoco.MjData(self.model)
        self.camera = camera_intrinsics(self.config)

        model = self.model
        root = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, FREE_JOINT)
        self._qpos_address = int(model.jnt_qposadr[root])
        self._qvel_address = int(model.jnt_dofadr[root])
        self._steer_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in STEER_ACTUATORS]
        self._drive_ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in DRIVE_ACTUATORS]
        self._renderer: Optional[mujoco.Renderer] = None
        self._tracker = LaneTracker(track, self.config.lane)
        self._diverged: Optional[SimulationDiverged] = None
        self._warning_counts = np.zeros(len(DIVERGENCE_WARNINGS), dtype=int)
        self.command: Tuple[float, float] = (0.0, 0.0)
        self.reset()
        logger.debug(
            "built simulator for track %r (%.1f m, seed %d, lighting %s): %d geoms, timestep %s s",
            track.name, track.length, seed, lighting, model.ngeom, self.config.timestep,
        )

    @classmethod
    def from_layout(
        cls,
        layout: str,
        seed: int = 0,
        config: Optional[SimConfig] = None,
        lighting: str = "default",
        **track_kwargs,
    ) -> "Simulator":
        """Build a simulator on a named layout or ``"random:<int>"``.

        ``track_kwargs`` go to :meth:`Track.from_points`, for example ``lane_width``.
        """
        return cls(make_track(layout, **track_kwargs), seed=seed, config=config, lighting=lighting)

    # ------------------------------------------------------------------
    # State

    @property
    def wheelbase(self) -> float:
        """Axle-to-axle distance, m."""
        return self.config.wheelbase

    @property
    def time(self) -> float:
        """Simulated time since the last reset, s."""
        return float(self.data.time)

    @property
    def pose(self) -> Tuple[float, float, float]:
        """``(x, y, yaw)`` of the rear-axle centre in the world frame, m and rad."""
        qpos = self.data.qpos
        a = self._qpos_address
        w, qx, qy, qz = qpos[a + 3], qpos[a + 4], qpos[a + 5], qpos[a + 6]
        yaw = math.atan2(2.0 * (w * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        return float(qpos[a]), float(qpos[a + 1]), yaw

    @property
    def velocity(self) -> Tuple[float, float, float]:
        """``(vx, vy, yaw_rate)`` of the rear-axle centre in the car frame, m/s and rad/s."""
        a = self._qpos_address
        v = self._qvel_address
        rotation = np.zeros(9)
        mujoco.mju_quat2Mat(rotation, self.data.qpos[a + 3 : a + 7])
        # A free joint's linear velocity is in the world frame, its angular
        # velocity in the body frame.
        local = rotation.reshape(3, 3).T @ self.data.qvel[v : v + 3]  # (3,)
        return float(local[0]), float(local[1]), float(self.data.qvel[v + 5])

    @property
    def steering_angles(self) -> Tuple[float, float]:
        """Measured ``(left, right)`` front wheel steering angles, rad."""
        left, right = (self.data.actuator_length[i] for i in self._steer_ids)
        return float(left), float(right)

    def lane_state(self) -> LaneState:
        """Return the lane metrics after the last physics step."""
        return self._tracker.state()

    # ------------------------------------------------------------------
    # Control

    def reset(self, progress: float = 0.0, lateral_offset: float = 0.0, heading_offset: float = 0.0) -> None:
        """Place the car at rest on its lane and restart time and metrics.

        Args:
            progress: Arc length along the centreline, m; wraps around.
            lateral_offset: Offset from the driving lane's centre, m, positive left.
            heading_offset: Yaw relative to the lane direction, rad, positive left.
        """
        _require_finite(progress=progress, lateral_offset=lateral_offset, heading_offset=heading_offset)
        lateral = self.track.lane_offset(self.config.lane) + lateral_offset
        x, y, heading = self.track.pose_at(progress, lateral)
        yaw = heading + heading_offset

        mujoco.mj_resetData(self.model, self.data)
        a = self._qpos_address
        self.data.qpos[a : a + 3] = (x, y, self.config.wheel_radius)
        self.data.qpos[a + 3 : a + 7] = (math.cos(0.5 * yaw), 0.0, 0.0, math.sin(0.5 * yaw))
        self.set_command(0.0, 0.0)
        mujoco.mj_forward(self.model, self.data)
        self._warning_counts[:] = [self.data.warning[w].number for w in DIVERGENCE_WARNINGS]
        self._diverged = None
        self._tracker.reset(*self.pose)

    def set_command(self, speed: float, steering: float) -> Tuple[float, float]:
        """Set the target speed and bicycle steering angle, clamped to the car's limits.

        Args:
            speed: Target forward speed of the rear axle, m/s; negative reverses.
            steering: Bicycle steering angle, rad, positive to the left.

        Returns:
            The applied ``(speed, steering)`` after clamping.

        Raises:
            ValueError: If either value is NaN or infinite.
        """
        _require_finite(speed=speed, steering=steering)
        config = self.config
        speed = min(max(float(speed), -config.max_reverse_speed), config.max_speed)
        steering = clamp_steering(float(steering), config.max_steering)
        left, right = ackermann_wheel_angles(steering, config.wheelbase, config.track_width)
        left_speed, right_speed = rear_wheel_speeds(speed, steering, config.wheelbase, config.track_width)
        ctrl = self.data.ctrl
        ctrl[self._steer_ids[0]] = left
        ctrl[self._steer_ids[1]] = right
        ctrl[self._drive_ids[0]] = left_speed / config.wheel_radius
        ctrl[self._drive_ids[1]] = right_speed / config.wheel_radius
        self.command = (speed, steering)
        return self.command

    def step(self, duration: float) -> int:
        """Advance the physics by ``duration`` seconds, rounded to whole steps.

        Returns:
            The number of physics steps taken.

        Raises:
            ValueError: If ``duration`` is negative or not finite.
            SimulationDiverged: If MuJoCo reported an unstable state; the
                simulator then needs :meth:`reset`.
        """
        _require_finite(duration=duration)
        if duration < 0.0:
            raise ValueError(f"duration must be >= 0 s, got {duration}")
        if self._diverged is not None:
            raise self._diverged
        steps = int(round(duration / self.config.timestep))
        model, data = self.model, self.data
        warning_stats = [data.warning[w] for w in DIVERGENCE_WARNINGS]
        counts = self._warning_counts
        tracker = self._tracker
        for _ in range(steps):
            time = data.time
            mujoco.mj_step(model, data)
            for k, stat in enumerate(warning_stats):
                if stat.number != counts[k]:
                    # MuJoCo has already reset mjData, so report the step's start time.
                    self._raise_diverged(k, time)
            tracker.update(*self.pose)
        return steps

    def _raise_diverged(self, k: int, time: float) -> None:
        warning = DIVERGENCE_WARNINGS[k].name
        self._warning_counts[k] = self.data.warning[DIVERGENCE_WARNINGS[k]].number
        message = _DIVERGED_MESSAGE.format(time=time, warning=warning, timestep=self.config.timestep)
        logger.error(message)
        self._diverged = SimulationDiverged(message, warning, time)
        raise self._diverged

    # ------------------------------------------------------------------
    # Rendering

    def render(self) -> np.ndarray:
        """Render the forward camera.

        Returns:
            RGB image, shape (camera_height, camera_width, 3), dtype uint8.

        Raises:
            gl.RenderingUnavailableError: If no OpenGL backend can start.
        """
        if self._renderer is None:
            self._renderer = self._make_renderer()
        # mj_step leaves body poses one step behind qpos; refresh them and the camera.
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_camlight(self.model, self.data)
        self._renderer.update_scene(self.data, camera=CAMERA_NAME)
        return self._renderer.render()

    def _make_renderer(self) -> mujoco.Renderer:
        try:
            renderer = mujoco.Renderer(self.model, self.config.camera_height, self.config.camera_width)
        except Exception as error:  # MuJoCo raises several types for a missing GL.
            raise gl.RenderingUnavailableError(gl.rendering_unavailable_message(error)) from error
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_FOG] = self.style.fog
        # The model has a shadow map only when the style has shadows on.
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = self.style.shadows
        renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        return renderer

    def close(self) -> None:
        """Free the renderer and its OpenGL context; safe to call twice."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> "Simulator":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
