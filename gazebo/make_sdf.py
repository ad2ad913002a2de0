"""Write the Gazebo world and vehicle SDF files from the embedded simulator's geometry.

    .venv/bin/python gazebo/make_sdf.py            # rewrite the committed files
    .venv/bin/python gazebo/make_sdf.py --check    # exit 1 if they are out of date

The world is the `curvy` layout (the layout the shipped model was not trained
on) with the same road width, edge lines and centre dashes as the MuJoCo
scene. Road and markings are visual-only boxes a few millimetres above a
ground plane that carries the only collision shape. The vehicle copies the
MuJoCo car: wheelbase, track, wheel size, steering limit and the forward
camera's height, pitch, field of view and resolution. Both files target SDF
1.9 with the plugin names of Gazebo Harmonic and later (`gz-sim-*`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from liquid_driver.sim import make_track  # noqa: E402
from liquid_driver.sim.config import SimConfig  # noqa: E402
from liquid_driver.sim.scene import (  # noqa: E402
    CENTRE_LINE_WIDTH,
    DASH_GAP,
    DASH_LENGTH,
    EDGE_LINE_WIDTH,
)

LAYOUT = "curvy"
WORLD_NAME = "liquid_track"
MODEL_NAME = "liquid_car"
WORLD_PATH = ROOT / "gazebo" / "worlds" / f"{WORLD_NAME}.sdf"
MODEL_PATH = ROOT / "gazebo" / "models" / MODEL_NAME / "model.sdf"

# Gazebo topics of the vehicle; config/gz_bridge.yaml bridges each of them.
CMD_VEL_TOPIC = f"/model/{MODEL_NAME}/cmd_vel"
ODOMETRY_TOPIC = f"/model/{MODEL_NAME}/odometry"
IMAGE_TOPIC = f"/model/{MODEL_NAME}/camera/image_raw"
CAMERA_INFO_TOPIC = f"/model/{MODEL_NAME}/camera/camera_info"
CAMERA_RATE_HZ = 20.0

# Road boxes are cut every this many metres along the centre line. Short
# boxes follow the curves closely; each overlaps the next by SEGMENT_OVERLAP
# so no gap opens on the outside of a bend.
SEGMENT_LENGTH = 0.2  # m
SEGMENT_OVERLAP = 0.02  # m
ROAD_THICKNESS = 0.002  # m
ROAD_Z = 0.001  # m, centre of the road boxes above the ground plane
LINE_Z = 0.003  # m, centre of the marking boxes, above the road
CHASSIS_SIZE = (0.34, 0.16, 0.05)  # m, length, width, height
CHASSIS_CLEARANCE = 0.015  # m, gap between the chassis floor and the wheel axles
WHEEL_MASS = 0.05  # kg

# Colours as "r g b a", matching the default MuJoCo style.
GROUND_COLOUR = "0.25 0.35 0.2 1"
ROAD_COLOUR = "0.2 0.2 0.2 1"
LINE_COLOUR = "0.95 0.95 0.95 1"


def _box_visual(name: str, x: float, y: float, z: float, yaw: float, length: float,
                width: float, colour: str) -> str:
    return (
        f'        <visual name="{name}">\n'
        f"          <pose>{x:.4f} {y:.4f} {z:.4f} 0 0 {yaw:.4f}</pose>\n"
        f"          <geometry><box><size>{length:.4f} {width:.4f} {ROAD_THICKNESS}</size></box></geometry>\n"
        f"          <material><ambient>{colour}</ambient><diffuse>{colour}</diffuse></material>\n"
        f"          <cast_shadows>false</cast_shadows>\n"
        f"        </visual>\n"
    )


def _strip_visuals(track, prefix: str, lateral: float, width: float, z: float, colour: str) -> list[str]:
    """Cut a closed strip at `lateral` m from the centre line into overlapping boxes."""
    count = max(8, int(round(track.length / SEGMENT_LENGTH)))
    step = track.length / count
    visuals = []
    for i in range(count):
        x0, y0, _ = track.pose_at(i * step, lateral)
        x1, y1, _ = track.pose_at((i + 1) * step, lateral)
        length = math.hypot(x1 - x0, y1 - y0) + SEGMENT_OVERLAP
        yaw = math.atan2(y1 - y0, x1 - x0)
        visuals.append(_box_visual(
            f"{prefix}_{i}", 0.5 * (x0 + x1), 0.5 * (y0 + y1), z, yaw, length, width, colour))
    return visuals


def _dash_visuals(track) -> list[str]:
    """Cut the dashed centre line into one box per dash, with whole dashes around the loop."""
    period = DASH_LENGTH + DASH_GAP
    count = max(1, int(round(track.length / period)))
    period = track.length / count
    visuals = []
    for k in range(count):
        start = k * period
        stop = start + DASH_LENGTH * period / (DASH_LENGTH + DASH_GAP)
        x0, y0, _ = track.pose_at(start, 0.0)
        x1, y1, _ = track.pose_at(stop, 0.0)
        yaw = math.atan2(y1 - y0, x1 - x0)
        visuals.append(_box_visual(
            f"centre_dash_{k}", 0.5 * (x0 + x1), 0.5 * (y0 + y1), LINE_Z, yaw,
            math.hypot(x1 - x0, y1 - y0), CENTRE_LINE_WIDTH, LINE_COLOUR))
    return visuals


def spawn_pose(layout: str = LAYOUT, lane: str = "right") -> tuple[float, float, float]:
    """Return the (x m, y m, yaw rad) start pose on the lane centre at progress 0."""
    track = make_track(layout)
    x, y, yaw = track.pose_at(0.0, track.lane_offset(lane))
    return round(float(x), 3), round(float(y), 3), round(float(yaw), 3)


def world_sdf(layout: str = LAYOUT) -> str:
    """Build the world: systems, light, ground plane and the visual-only track."""
    track = make_track(layout)
    extent = float(np.abs(track.points).max()) + 5.0
    visuals = _strip_visuals(track, "road", 0.0, 2.0 * track.road_half_width, ROAD_Z, ROAD_COLOUR)
    for name, side in (("left_edge", 1.0), ("right_edge", -1.0)):
        visuals += _strip_visuals(track, name, side * track.lane_width, EDGE_LINE_WIDTH, LINE_Z,
                                  LINE_COLOUR)
    visuals += _dash_visuals(track)
    return (
        '<?xml version="1.0"?>\n'
        f"<!-- Generated by gazebo/make_sdf.py from the '{layout}' layout "
        f"({track.length:.2f} m centre line); do not edit by hand. -->\n"
        '<sdf version="1.9">\n'
        f'  <world name="{WORLD_NAME}">\n'
        "    <physics name=\"2ms\" type=\"ignored\">\n"
        "      <max_step_size>0.002</max_step_size>\n"
        "      <real_time_factor>1.0</real_time_factor>\n"
        "    </physics>\n"
        '    <plugin filename="gz-sim-physics-system" name="gz::sim::systems::Physics"/>\n'
        "    <!-- UserCommands serves the create service that spawns the vehicle. -->\n"
        '    <plugin filename="gz-sim-user-commands-system" name="gz::sim::systems::UserCommands"/>\n'
        '    <plugin filename="gz-sim-scene-broadcaster-system" '
        'name="gz::sim::systems::SceneBroadcaster"/>\n'
        "    <!-- Renders every camera sensor, including the vehicle's forward camera. -->\n"
        '    <plugin filename="gz-sim-sensors-system" name="gz::sim::systems::Sensors">\n'
        "      <render_engine>ogre2</render_engine>\n"
        "    </plugin>\n"
        "    <scene>\n"
        "      <ambient>0.6 0.6 0.6 1</ambient>\n"
        "      <background>0.7 0.8 0.9 1</background>\n"
        "      <shadows>false</shadows>\n"
        "    </scene>\n"
        '    <light type="directional" name="sun">\n'
        "      <cast_shadows>false</cast_shadows>\n"
        "      <pose>0 0 10 0 0 0</pose>\n"
        "      <diffuse>0.8 0.8 0.8 1</diffuse>\n"
        "      <specular>0.2 0.2 0.2 1</specular>\n"
        "      <direction>-0.5 0.1 -0.9</direction>\n"
        "    </light>\n"
        '    <model name="ground_plane">\n'
        "      <static>true</static>\n"
        '      <link name="link">\n'
        '        <collision name="collision">\n'
        f"          <geometry><plane><normal>0 0 1</normal><size>{2 * extent:.1f} {2 * extent:.1f}</size></plane></geometry>\n"
        "        </collision>\n"
        '        <visual name="visual">\n'
        f"          <geometry><plane><normal>0 0 1</normal><size>{2 * extent:.1f} {2 * extent:.1f}</size></plane></geometry>\n"
        f"          <material><ambient>{GROUND_COLOUR}</ambient><diffuse>{GROUND_COLOUR}</diffuse></material>\n"
        "        </visual>\n"
        "      </link>\n"
        "    </model>\n"
        '    <model name="track">\n'
        "      <static>true</static>\n"
        '      <link name="markings">\n'
        + "".join(visuals)
        + "      </link>\n"
        "    </model>\n"
        "  </world>\n"
        "</sdf>\n"
    )


def _inertial(mass: float, ixx: float, iyy: float, izz: float) -> str:
    return (
        f"      <inertial><mass>{mass}</mass><inertia><ixx>{ixx:.3e}</ixx><iyy>{iyy:.3e}</iyy>"
        f"<izz>{izz:.3e}</izz><ixy>0</ixy><ixz>0</ixz><iyz>0</iyz></inertia></inertial>\n"
    )


def _wheel_link(name: str, x: float, y: float, config: SimConfig) -> str:
    r, w = config.wheel_radius, config.wheel_width
    axial = 0.5 * WHEEL_MASS * r * r
    radial = WHEEL_MASS * (3 * r * r + w * w) / 12.0
    # The cylinder's axis is its local z; rolling it by pi/2 turns it onto the y axle.
    geometry = f"<geometry><cylinder><radius>{r}</radius><length>{w}</length></cylinder></geometry>"
    return (
        f'    <link name="{name}">\n'
        f"      <pose>{x:.3f} {y:.3f} {r:.3f} -1.5708 0 0</pose>\n"
        + _inertial(WHEEL_MASS, radial, radial, axial)
        + f'      <collision name="collision">{geometry}\n'
        f"        <surface><friction><ode><mu>{config.tyre_friction}</mu><mu2>{config.tyre_friction}</mu2>"
        "</ode></friction></surface>\n"
        "      </collision>\n"
        f'      <visual name="visual">{geometry}\n'
        "        <material><ambient>0.05 0.05 0.05 1</ambient><diffuse>0.05 0.05 0.05 1</diffuse></material>\n"
        "      </visual>\n"
        "    </link>\n"
    )


def _steering_link(name: str, x: float, y: float, config: SimConfig) -> str:
    return (
        f'    <link name="{name}">\n'
        f"      <pose>{x:.3f} {y:.3f} {config.wheel_radius:.3f} 0 0 0</pose>\n"
        + _inertial(0.01, 1e-5, 1e-5, 1e-5)
        + "    </link>\n"
    )


def _joint(name: str, kind: str, parent: str, child: str, axis: str, limit: float | None) -> str:
    limits = f"<limit><lower>{-limit}</lower><upper>{limit}</upper></limit>" if limit else ""
    return (
        f'    <joint name="{name}" type="{kind}">\n'
        f"      <parent>{parent}</parent>\n"
        f"      <child>{child}</child>\n"
        f"      <axis><xyz>{axis}</xyz>{limits}</axis>\n"
        "    </joint>\n"
    )


def horizontal_fov(config: SimConfig) -> float:
    """Return the horizontal field of view in rad that matches MuJoCo's vertical `fovy`."""
    half_vertical = math.radians(config.camera_fovy_deg) / 2.0
    aspect = config.camera_width / config.camera_height
    return 2.0 * math.atan(math.tan(half_vertical) * aspect)


def vehicle_sdf(config: SimConfig | None = None) -> str:
    """Build the Ackermann vehicle with its forward camera, in the base_link frame at the rear axle."""
    config = config or SimConfig()
    half_track = 0.5 * config.track_width
    length, width, height = CHASSIS_SIZE
    chassis_z = config.wheel_radius + CHASSIS_CLEARANCE + 0.5 * height
    chassis_x = 0.5 * config.wheelbase
    mass = config.chassis_mass
    box = f"<geometry><box><size>{length} {width} {height}</size></box></geometry>"
    links = [
        '    <link name="base_link">\n'
        f"      <pose>{chassis_x:.3f} 0 {chassis_z:.3f} 0 0 0</pose>\n"
        + _inertial(mass, mass * (width**2 + height**2) / 12, mass * (length**2 + height**2) / 12,
                    mass * (length**2 + width**2) / 12)
        + f'      <collision name="collision">{box}</collision>\n'
        f'      <visual name="visual">{box}\n'
        "        <material><ambient>0.1 0.3 0.8 1</ambient><diffuse>0.1 0.3 0.8 1</diffuse></material>\n"
        "      </visual>\n"
        '      <sensor name="forward_camera" type="camera">\n'
        f"        <pose>{config.camera_forward - chassis_x:.3f} 0 "
        f"{config.camera_mount_height - chassis_z:.3f} 0 {config.camera_pitch} 0</pose>\n"
        "        <always_on>true</always_on>\n"
        f"        <update_rate>{CAMERA_RATE_HZ}</update_rate>\n"
        "        <visualize>false</visualize>\n"
        f"        <topic>{IMAGE_TOPIC}</topic>\n"
        "        <camera>\n"
        f"          <camera_info_topic>{CAMERA_INFO_TOPIC}</camera_info_topic>\n"
        f"          <horizontal_fov>{horizontal_fov(config):.4f}</horizontal_fov>\n"
        f"          <image><width>{config.camera_width}</width><height>{config.camera_height}</height>"
        "<format>R8G8B8</format></image>\n"
        "          <clip><near>0.01</near><far>50</far></clip>\n"
        "        </camera>\n"
        "      </sensor>\n"
        "    </link>\n"
    ]
    joints = []
    for side, y in (("left", half_track), ("right", -half_track)):
        links.append(_steering_link(f"front_{side}_steering_link", config.wheelbase, y, config))
        links.append(_wheel_link(f"front_{side}_wheel", config.wheelbase, y, config))
        links.append(_wheel_link(f"rear_{side}_wheel", 0.0, y, config))
        joints.append(_joint(f"front_{side}_steering_joint", "revolute", "base_link",
                             f"front_{side}_steering_link", "0 0 1", config.max_steering))
        # The wheel links are rolled onto the axle, so their spin axis is local z.
        joints.append(_joint(f"front_{side}_wheel_joint", "revolute", f"front_{side}_steering_link",
                             f"front_{side}_wheel", "0 0 1", None))
        joints.append(_joint(f"rear_{side}_wheel_joint", "revolute", "base_link",
                             f"rear_{side}_wheel", "0 0 1", None))
    plugin = (
        '    <plugin filename="gz-sim-ackermann-steering-system" '
        'name="gz::sim::systems::AckermannSteering">\n'
        "      <left_joint>front_left_wheel_joint</left_joint>\n"
        "      <left_joint>rear_left_wheel_joint</left_joint>\n"
        "      <right_joint>front_right_wheel_joint</right_joint>\n"
        "      <right_joint>rear_right_wheel_joint</right_joint>\n"
        "      <left_steering_joint>front_left_steering_joint</left_steering_joint>\n"
        "      <right_steering_joint>front_right_steering_joint</right_steering_joint>\n"
        f"      <kingpin_width>{config.track_width}</kingpin_width>\n"
        f"      <steering_limit>{config.max_steering}</steering_limit>\n"
        f"      <wheel_base>{config.wheelbase}</wheel_base>\n"
        f"      <wheel_separation>{config.track_width}</wheel_separation>\n"
        f"      <wheel_radius>{config.wheel_radius}</wheel_radius>\n"
        f"      <min_velocity>{-config.max_reverse_speed}</min_velocity>\n"
        f"      <max_velocity>{config.max_speed}</max_velocity>\n"
        "      <min_acceleration>-3.0</min_acceleration>\n"
        "      <max_acceleration>3.0</max_acceleration>\n"
        f"      <topic>{CMD_VEL_TOPIC}</topic>\n"
        f"      <odom_topic>{ODOMETRY_TOPIC}</odom_topic>\n"
        "      <odom_publish_frequency>50</odom_publish_frequency>\n"
        "      <frame_id>odom</frame_id>\n"
        "      <child_frame_id>base_link</child_frame_id>\n"
        "    </plugin>\n"
    )
    return (
        '<?xml version="1.0"?>\n'
        "<!-- Generated by gazebo/make_sdf.py from liquid_driver.sim.config.SimConfig; "
        "do not edit by hand. -->\n"
        '<sdf version="1.9">\n'
        f'  <model name="{MODEL_NAME}">\n'
        + "".join(links)
        + "".join(joints)
        + plugin
        + "  </model>\n"
        "</sdf>\n"
    )


def generated_files() -> dict[Path, str]:
    """Return the text of every generated file, keyed by its path in the checkout."""
    return {WORLD_PATH: world_sdf(), MODEL_PATH: vehicle_sdf()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="Compare the committed files with fresh output instead of writing them")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files().items():
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    for path in stale:
        print(f"{path.relative_to(ROOT)} is out of date; run gazebo/make_sdf.py", file=sys.stderr)
    print(f"spawn pose (x, y, yaw): {spawn_pose()}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
