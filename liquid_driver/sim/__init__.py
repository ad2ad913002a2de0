"""Embedded MuJoCo simulator: tracks, an Ackermann car, its camera and an expert driver.

Importing this package picks MuJoCo's offscreen OpenGL backend before
``mujoco`` is imported (see :mod:`liquid_driver.sim.gl`): an explicit
``MUJOCO_GL`` is kept, otherwise EGL is used if it renders and OSMesa if not.
"""

from liquid_driver.sim import gl as _gl

_gl.select_backend()

# pylint: disable=wrong-import-position
from liquid_driver.sim.commands import steering_from_twist, yaw_rate_from_steering  # noqa: E402
from liquid_driver.sim.config import SimConfig  # noqa: E402
from liquid_driver.sim.expert import ExpertCommand, ExpertConfig, ExpertDriver  # noqa: E402
from liquid_driver.sim.gl import RenderingUnavailableError  # noqa: E402
from liquid_driver.sim.layouts import LAYOUT_NAMES, make_track  # noqa: E402
from liquid_driver.sim.metrics import LaneState  # noqa: E402
from liquid_driver.sim.simulator import CameraIntrinsics, SimulationDiverged, Simulator  # noqa: E402
from liquid_driver.sim.track import Track, TrackGeometryError  # noqa: E402

__all__ = [
    "CameraIntrinsics",
    "ExpertCommand",
    "ExpertConfig",
    "ExpertDriver",
    "LAYOUT_NAMES",
    "LaneState",
    "RenderingUnavailableError",
    "SimConfig",
    "SimulationDiverged",
    "Simulator",
    "Track",
    "TrackGeometryError",
    "make_track",
    "steering_from_twist",
    "yaw_rate_from_steering",
]
