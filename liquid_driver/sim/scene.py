"""MJCF scene of a track and an Ackermann car.

The road surface and its markings are visual-only mesh geoms a few
millimetres above a ground plane, which is the only surface the tyres touch.
There is one mesh for the road, one for each solid edge line and one for all
dashes of the centre line, so a scene has a handful of geoms however long the
track is.
Colours, lighting and scenery come from a :class:`~liquid_driver.sim.style.VisualStyle`.
"""

from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import numpy as np

from liquid_driver.sim.commands import ackermann_wheel_angles
from liquid_driver.sim.config import SimConfig
from liquid_driver.sim.style import VisualStyle
from liquid_driver.sim.track import Track

# Heights of the visual layers above the ground plane, m. The gap keeps the
# depth test stable at the camera's 0.01 m near plane.
ROAD_HEIGHT = 0.002
LINE_HEIGHT = 0.004
# Marking widths and dash pattern, m.
EDGE_LINE_WIDTH = 0.05
CENTRE_LINE_WIDTH = 0.04
DASH_LENGTH = 0.25
DASH_GAP = 0.25

# Names used by the simulator and the tests.
CHASSIS_BODY = "chassis"
CHASSIS_GEOM = "chassis"
CAMERA_NAME = "forward_camera"
GROUND_GEOM = "ground"
FREE_JOINT = "root"
STEER_JOINTS = ("front_left_steer", "front_right_steer")
REAR_WHEEL_JOINTS = ("rear_left_wheel", "rear_right_wheel")
STEER_ACTUATORS = ("front_left_steer", "front_right_steer")
DRIVE_ACTUATORS = ("rear_left_drive", "rear_right_drive")
ROAD_MESHES = ("road", "left_edge_line", "right_edge_line", "centre_line")

# Collision bits: tyres and chassis touch the ground but never each other.
GROUND_CONTYPE, GROUND_CONAFFINITY = 1, 2 | 4
WHEEL_CONTYPE, WHEEL_CONAFFINITY = 2, 1
CHASSIS_CONTYPE, CHASSIS_CONAFFINITY = 4, 1

WHEEL_MASS = 0.05  # kg
KNUCKLE_MASS = 0.02  # kg
STEER_ARMATURE = 0.02  # kg m^2, servo gear inertia seen at the steering joint
WHEEL_ARMATURE = 1e-5  # kg m^2, motor and gear inertia seen at a wheel
WHEEL_DAMPING = 1e-4  # N m s/rad, bearing drag

# Ground plane margin around the track, m, so the horizon shows ground.
GROUND_MARGIN = 20.0

# Shadow mapping of a sun with VisualStyle.shadows. MuJoCo renders a directional
# light's shadow map as an orthographic view from the light's position, SHADOW_CLIP
# m to each side, so the sun follows the car at SHADOW_LIGHT_DISTANCE m towards the
# sun. The camera images ground up to about 6 m ahead, where it meets the horizon.
SHADOW_CLIP = 6.0  # m, half width of the area that receives shadows
SHADOW_LIGHT_DISTANCE = 20.0  # m, beyond the shadow of any scenery object
# Texels per side: 6 mm each, about a camera pixel at 1 m ahead. On the ground a
# texel stretches by 1 / sin(sun elevation) towards the sun, so a low sun gives
# stepped shadow edges. 4096 smooths them, but a 160x120 frame then took 17-25 ms
# instead of 13-14 ms with Mesa llvmpipe on 2 shared CPU cores (4 ms without shadows).
SHADOW_MAP_SIZE = 2048


# ----------------------------------------------------------------------
# Road meshes


def strip_mesh(left: np.ndarray, right: np.ndarray, height: float, closed: bool) -> Tuple[np.ndarray, np.ndarray]:
    """Triangulate the band between two polylines at a fixed height.

    ``left`` lies to the left of the driving direction, so every triangle
    winds counter-clockwise seen from above and its normal points up.

    Args:
        left: Left border, shape (K, 2), m.
        right: Right border, shape (K, 2), m.
        height: z of all vertices, m.
        closed: Whether to join the last pair back to the first.

    Returns:
        ``(vertices, faces)`` of shapes (2K, 3) and (2(K-1) or 2K, 3).
    """
    count = len(left)
    vertices = np.zeros((2 * count, 3))
    vertices[0::2, :2] = right  # Even vertices on the right border.
    vertices[1::2, :2] = left  # Odd vertices on the left border.
    vertices[:, 2] = height
    quads = count if closed else count - 1
    i = np.arange(quads)
    j = (i + 1) % count
    right_i, left_i, right_j, left_j = 2 * i, 2 * i + 1, 2 * j, 2 * j + 1
    faces = np.concatenate(
        [np.stack([right_i, right_j, left_j], axis=1), np.stack([right_i, left_j, left_i], axis=1)]
    )  # (2 * quads, 3)
    return vertices, faces


def road_meshes(track: Track) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Build the road and marking meshes, keyed by :data:`ROAD_MESHES` name."""
    meshes = {}
    half = track.road_half_width
    meshes["road"] = strip_mesh(track.offset_line(half), track.offset_line(-half), ROAD_HEIGHT, closed=True)
    for name, side in (("left_edge_line", 1.0), ("right_edge_line", -1.0)):
        centre = side * track.lane_width
        meshes[name] = strip_mesh(
            track.offset_line(centre + 0.5 * EDGE_LINE_WIDTH),
            track.offset_line(centre - 0.5 * EDGE_LINE_WIDTH),
            LINE_HEIGHT,
            closed=True,
        )

    # Dashes: one open strip per dash, sampled every 0.05 m along the track.
    period = DASH_LENGTH + DASH_GAP
    dash_count = max(1, int(round(track.length / period)))
    period = track.length / dash_count  # Whole dashes around the loop.
    vertex_blocks, face_blocks, offset = [], [], 0
    for k in range(dash_count):
        start = k * period
        stop = start + DASH_LENGTH * period / (DASH_LENGTH + DASH_GAP)
        samples = np.linspace(start, stop, max(2, int(math.ceil((stop - start) / 0.05)) + 1))
        dash_left = np.array([_offset_point(track, s, 0.5 * CENTRE_LINE_WIDTH) for s in samples])
        dash_right = np.array([_offset_point(track, s, -0.5 * CENTRE_LINE_WIDTH) for s in samples])
        vertices, faces = strip_mesh(dash_left, dash_right, LINE_HEIGHT, closed=False)
        vertex_blocks.append(vertices)
        face_blocks.append(faces + offset)
        offset += len(vertices)
    meshes["centre_line"] = (np.concatenate(vertex_blocks), np.concatenate(face_blocks))
    return meshes


def _offset_point(track: Track, progress: float, lateral: float) -> Tuple[float, float]:
    x, y, _ = track.pose_at(progress, lateral)
    return x, y


# ----------------------------------------------------------------------
# MJCF


def _fmt(values: Sequence[float]) -> str:
    return " ".join(f"{float(v):.5g}" for v in values)


def _mesh_xml(name: str, vertices: np.ndarray, faces: np.ndarray) -> str:
    vertex_text = " ".join(f"{v:.4f}" for v in vertices.ravel())
    face_text = " ".join(str(int(f)) for f in faces.ravel())
    # inertia="shell" lets MuJoCo accept a flat mesh, which has no volume.
    return f'    <mesh name="{name}" inertia="shell" vertex="{vertex_text}" face="{face_text}"/>\n'


def steering_joint_limit(config: SimConfig) -> float:
    """Return the range of each front steering joint, rad: the inner wheel at full lock plus 0.05."""
    inner, _ = ackermann_wheel_angles(config.max_steering, config.wheelbase, config.track_width)
    return inner + 0.05


def _car_xml(config: SimConfig, style: VisualStyle) -> str:
    """Return the chassis body with its camera, wheels and steering knuckles."""
    r = config.wheel_radius
    half_track = 0.5 * config.track_width
    half_wheel = 0.5 * config.wheel_width
    # The box reaches 0.06 m behind the rear axle and 0.08 m past the front one.
    chassis_half = (0.5 * (config.wheelbase + 0.14), half_track - half_wheel - 0.015, 0.025)
    chassis_centre_x = 0.5 * config.wheelbase + 0.01
    steer_limit = steering_joint_limit(config)
    pitch = config.camera_pitch
    # Image right is the car's right (-y), and image up tilts back by the pitch.
    camera_axes = _fmt((0.0, -1.0, 0.0, math.sin(pitch), 0.0, math.cos(pitch)))
    wheel_geom = (
        f'type="cylinder" size="{r} {half_wheel}" zaxis="0 1 0" mass="{WHEEL_MASS}" '
        f'contype="{WHEEL_CONTYPE}" conaffinity="{WHEEL_CONAFFINITY}" '
        f'friction="{config.tyre_friction} 0.005 0.0001" material="tyre"'
    )
    wheel_joint = f'type="hinge" axis="0 1 0" armature="{WHEEL_ARMATURE}" damping="{WHEEL_DAMPING}"'

    # The chassis origin is the rear-axle centre, at wheel-centre height.
    lines = [
        f'    <body name="{CHASSIS_BODY}" pos="0 0 {r:.4f}">',
        f'      <freejoint name="{FREE_JOINT}"/>',
        f'      <geom name="{CHASSIS_GEOM}" type="box" pos="{chassis_centre_x:.4f} 0 0.02" '
        f'size="{_fmt(chassis_half)}" mass="{config.chassis_mass}" '
        f'contype="{CHASSIS_CONTYPE}" conaffinity="{CHASSIS_CONAFFINITY}" rgba="{_fmt(style.chassis)} 1"/>',
        f'      <camera name="{CAMERA_NAME}" pos="{config.camera_forward:.4f} 0 '
        f'{config.camera_mount_height - r:.4f}" xyaxes="{camera_axes}" fovy="{config.camera_fovy_deg}"/>',
    ]
    if style.shadows:
        # mode="track" keeps the light at a fixed world offset from the car and its
        # direction fixed in the world, so the shadow map always covers the car's
        # surroundings. The chassis starts unrotated, so these are world vectors.
        offset = -SHADOW_LIGHT_DISTANCE * np.asarray(style.light_direction)
        lines.append("      " + _sun_xml(style, f'mode="track" pos="{_fmt(offset)}"'))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        lines += [
            f'      <body name="rear_{side}_wheel" pos="0 {sign * half_track:.4f} 0">',
            f'        <joint name="rear_{side}_wheel" {wheel_joint}/>',
            f'        <geom name="rear_{side}_tyre" {wheel_geom}/>',
            "      </body>",
        ]
        # The steering axis passes through the wheel centre (no caster or scrub radius).
        lines += [
            f'      <body name="front_{side}_knuckle" pos="{config.wheelbase:.4f} {sign * half_track:.4f} 0">',
            f'        <joint name="front_{side}_steer" type="hinge" axis="0 0 1" limited="true" '
            f'range="{-steer_limit:.4f} {steer_limit:.4f}" armature="{STEER_ARMATURE}" damping="0.01"/>',
            f'        <geom type="sphere" size="0.008" mass="{KNUCKLE_MASS}" contype="0" conaffinity="0" '
            'material="tyre"/>',
            f'        <body name="front_{side}_wheel">',
            f'          <joint name="front_{side}_wheel" {wheel_joint}/>',
            f'          <geom name="front_{side}_tyre" {wheel_geom}/>',
            "        </body>",
            "      </body>",
        ]
    lines.append("    </body>")
    return "\n".join(lines) + "\n"


def _actuator_xml(config: SimConfig) -> str:
    """Return steering servos and rear drive motors; controls are in rad and rad/s."""
    steer_limit = steering_joint_limit(config)
    max_wheel_speed = 1.5 * max(config.max_speed, config.max_reverse_speed) / config.wheel_radius
    lines = ["  <actuator>"]
    for name, joint in zip(STEER_ACTUATORS, STEER_JOINTS):
        lines.append(
            f'    <position name="{name}" joint="{joint}" kp="{config.steering_kp}" dampratio="1" '
            f'ctrlrange="{-steer_limit:.4f} {steer_limit:.4f}"/>'
        )
    for name, joint in zip(DRIVE_ACTUATORS, REAR_WHEEL_JOINTS):
        lines.append(
            f'    <velocity name="{name}" joint="{joint}" kv="{config.drive_kv}" '
            f'ctrlrange="{-max_wheel_speed:.3f} {max_wheel_speed:.3f}" forcelimited="true" '
            f'forcerange="{-config.drive_max_torque} {config.drive_max_torque}"/>'
        )
    lines.append("  </actuator>")
    return "\n".join(lines) + "\n"


def _sun_xml(style: VisualStyle, placement: str) -> str:
    """Return the directional sun light; ``placement`` gives its pos and mode attributes."""
    diffuse = [style.light_diffuse * channel for channel in style.light_colour]
    castshadow = "true" if style.shadows else "false"
    return (
        f'<light name="sun" directional="true" castshadow="{castshadow}" {placement} '
        f'dir="{_fmt(style.light_direction)}" diffuse="{_fmt(diffuse)}" '
        f'ambient="{_fmt([style.light_ambient] * 3)}" specular="0.1 0.1 0.1"/>'
    )


def _scenery_xml(style: VisualStyle) -> str:
    lines = []
    for k, item in enumerate(style.scenery):
        common = f'contype="0" conaffinity="0" rgba="{_fmt(item.colour)} 1" euler="0 0 {item.yaw:.4f}"'
        if item.kind == "box":
            height, size = item.size[2], _fmt(item.size)
        else:
            height, size = item.size[1], _fmt(item.size[:2])
        lines.append(
            f'    <geom name="scenery_{k}" type="{item.kind}" pos="{item.x:.4f} {item.y:.4f} {height:.4f}" '
            f'size="{size}" {common}/>'
        )
    return "\n".join(lines) + ("\n" if lines else "")


def _visual_xml(config: SimConfig, style: VisualStyle) -> str:
    """Return the <statistic> and <visual> settings: buffer size, clipping, haze."""
    headlight = _fmt([0.5 * style.light_ambient] * 3)
    headlight_diffuse = _fmt([style.headlight_diffuse] * 3)
    # Without shadows, a shadow map size of 0 saves the map's GPU memory.
    shadow_size = SHADOW_MAP_SIZE if style.shadows else 0
    shadow_clip = f' shadowclip="{SHADOW_CLIP}"' if style.shadows else ""
    return (
        # With extent 1, znear, zfar, fogstart, fogend and shadowclip read as metres.
        '  <statistic extent="1" center="0 0 0.1"/>\n'
        "  <visual>\n"
        f'    <global offwidth="{max(640, config.camera_width)}" offheight="{max(480, config.camera_height)}"/>\n'
        f'    <quality shadowsize="{shadow_size}" offsamples="0"/>\n'
        f'    <headlight ambient="{headlight}" diffuse="{headlight_diffuse}" specular="0 0 0"/>\n'
        f'    <map znear="0.01" zfar="80" fogstart="{style.fog_start:.3f}" fogend="{style.fog_end:.3f}" '
        f'haze="0.4"{shadow_clip}/>\n'
        f'    <rgba fog="{_fmt(style.sky_horizon)} 1" haze="{_fmt(style.sky_horizon)} 1"/>\n'
        "  </visual>\n"
    )


def _asset_xml(track: Track, style: VisualStyle) -> str:
    """Return the sky texture, the materials and the road meshes."""
    matte = 'specular="0.05" shininess="0" reflectance="0"'
    meshes = road_meshes(track)
    return (
        "  <asset>\n"
        f'    <texture name="sky" type="skybox" builtin="gradient" rgb1="{_fmt(style.sky_top)}" '
        f'rgb2="{_fmt(style.sky_horizon)}" width="32" height="192"/>\n'
        f'    <material name="ground" rgba="{_fmt(style.ground)} 1" {matte}/>\n'
        f'    <material name="road" rgba="{_fmt(style.road)} 1" {matte}/>\n'
        f'    <material name="edge_line" rgba="{_fmt(style.edge_line)} 1" {matte}/>\n'
        f'    <material name="centre_line" rgba="{_fmt(style.centre_line)} 1" {matte}/>\n'
        '    <material name="tyre" rgba="0.08 0.08 0.08 1" specular="0"/>\n'
        + "".join(_mesh_xml(name, *meshes[name]) for name in ROAD_MESHES)
        + "  </asset>\n"
    )


def _world_xml(track: Track, config: SimConfig, style: VisualStyle) -> str:
    """Return the light, the ground plane, the road geoms, the scenery and the car."""
    centre = 0.5 * (track.points.min(axis=0) + track.points.max(axis=0))
    half_size = 0.5 * np.ptp(track.points, axis=0) + GROUND_MARGIN
    road_materials = dict(road="road", left_edge_line="edge_line", right_edge_line="edge_line", centre_line="centre_line")
    road_geoms = "".join(
        f'    <geom name="{name}" type="mesh" mesh="{name}" material="{road_materials[name]}" '
        'contype="0" conaffinity="0"/>\n'
        for name in ROAD_MESHES
    )
    # A shadow-casting sun rides with the car instead, see _car_xml.
    sun = "" if style.shadows else "    " + _sun_xml(style, 'pos="0 0 10"') + "\n"
    return (
        "  <worldbody>\n"
        + sun
        + f'    <geom name="{GROUND_GEOM}" type="plane" pos="{centre[0]:.3f} {centre[1]:.3f} 0" '
        f'size="{half_size[0]:.3f} {half_size[1]:.3f} 0.1" material="ground" '
        f'contype="{GROUND_CONTYPE}" conaffinity="{GROUND_CONAFFINITY}" '
        f'friction="{config.tyre_friction} 0.005 0.0001"/>\n'
        + road_geoms
        + _scenery_xml(style)
        + _car_xml(config, style)
        + "  </worldbody>\n"
    )


def build_mjcf(track: Track, config: SimConfig, style: VisualStyle) -> str:
    """Return the MJCF text of the track, the car and the lighting.

    Args:
        track: Track to build the road from.
        config: Car, camera and physics settings.
        style: Colours and lighting from :func:`~liquid_driver.sim.style.visual_style`.
    """
    return (
        '<mujoco model="liquid_driver_track">\n'
        '  <compiler angle="radian" autolimits="true"/>\n'
        f'  <option timestep="{config.timestep}" integrator="implicitfast" gravity="0 0 -9.81"/>\n'
        + _visual_xml(config, style)
        + _asset_xml(track, style)
        + _world_xml(track, config, style)
        + _actuator_xml(config)
        + "</mujoco>\n"
    )
