"""Checks of the launch files and the simulator configs they ship, without ROS 2 launch.

The SDF files must name the systems and topics that config/gz_bridge.yaml
bridges, and the bridge config must use valid keys, directions and type pairs.
The CARLA camera must match the model's input aspect. The launch files must
agree on argument names, and setup.py must install everything they start or read.
"""

from __future__ import annotations

import ast
import json
import sys
import xml.etree.ElementTree as ET
from glob import glob
from pathlib import Path

import pytest
import yaml

from liquid_driver.data.preprocess import Preprocessing

ROOT = Path(__file__).resolve().parent.parent
LAUNCH_DIR = ROOT / "launch"
LAUNCH_FILES = sorted(LAUNCH_DIR.glob("*.launch.py"))
OWN_LAUNCH_FILES = ["sim.launch.py", "gazebo.launch.py", "carla.launch.py", "record.launch.py"]
WORLD_SDF = ROOT / "gazebo" / "worlds" / "liquid_track.sdf"
VEHICLE_SDF = ROOT / "gazebo" / "models" / "liquid_car" / "model.sdf"
BRIDGE_YAML = ROOT / "config" / "gz_bridge.yaml"
CARLA_OBJECTS = ROOT / "config" / "carla_objects.json"

# Keys and directions that ros_gz_bridge's YAML loader accepts (Jazzy and later).
BRIDGE_KEYS = {"topic_name", "ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name",
               "direction", "lazy", "publisher_queue", "subscriber_queue"}
BRIDGE_DIRECTIONS = {"BIDIRECTIONAL", "GZ_TO_ROS", "ROS_TO_GZ"}
# Message pairs from ros_gz_bridge's table of supported types.
BRIDGE_TYPE_PAIRS = {
    ("rosgraph_msgs/msg/Clock", "gz.msgs.Clock"),
    ("sensor_msgs/msg/Image", "gz.msgs.Image"),
    ("sensor_msgs/msg/CameraInfo", "gz.msgs.CameraInfo"),
    ("nav_msgs/msg/Odometry", "gz.msgs.Odometry"),
    ("geometry_msgs/msg/Twist", "gz.msgs.Twist"),
}
# Argument names every launch file spells the same way, and the launch files that must have each.
SHARED_ARGUMENTS = {
    "camera_topic": OWN_LAUNCH_FILES,
    "cmd_topic": OWN_LAUNCH_FILES,
    "output_type": ["gazebo.launch.py", "carla.launch.py", "record.launch.py"],
    "model": ["sim.launch.py", "gazebo.launch.py", "carla.launch.py"],
    "backend": ["sim.launch.py", "gazebo.launch.py", "carla.launch.py"],
    "speed": ["sim.launch.py", "gazebo.launch.py", "carla.launch.py"],
    "params_file": OWN_LAUNCH_FILES,
    "use_sim_time": OWN_LAUNCH_FILES,
    "record": OWN_LAUNCH_FILES,
    "bag": OWN_LAUNCH_FILES,
    "layout": ["sim.launch.py"],
    "seed": ["sim.launch.py"],
    "lighting": ["sim.launch.py"],
}
# Other spellings of the shared names that would split users' muscle memory.
FORBIDDEN_ARGUMENTS = {"image_topic", "cmd_vel_topic", "command_topic", "model_path", "checkpoint",
                       "bag_path", "output", "params", "sim_time", "track", "world_seed"}


def gz_topics(sdf_root: ET.Element) -> dict[str, str]:
    """Collect the Gazebo topics a vehicle SDF publishes or subscribes, keyed by role."""
    sensor = sdf_root.find(".//sensor[@type='camera']")
    plugin = sdf_root.find(".//plugin[@name='gz::sim::systems::AckermannSteering']")
    return {
        "image": sensor.findtext("topic"),
        "camera_info": sensor.findtext("camera/camera_info_topic"),
        "cmd_vel": plugin.findtext("topic"),
        "odometry": plugin.findtext("odom_topic"),
    }


def bridge_entries() -> list[dict]:
    return yaml.safe_load(BRIDGE_YAML.read_text())


def module_constants(tree: ast.Module) -> dict:
    """Evaluate the module-level assignments of literal values, such as WORLD_NAME = "..."."""
    constants = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return constants


def evaluate_string(node: ast.expr, constants: dict) -> str | None:
    """Evaluate a string literal, constant name or f-string over module constants; None otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and isinstance(constants.get(node.id), str):
        return constants[node.id]
    if isinstance(node, ast.JoinedStr):
        return eval(compile(ast.Expression(node), "<launch>", "eval"), {}, dict(constants))
    return None


def parse_launch(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def declared_arguments(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DeclareLaunchArgument":
            names.append(ast.literal_eval(node.args[0]))
    return names


def is_own_share(node: ast.expr, share_names: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in share_names
    return (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "FindPackageShare"
            and ast.literal_eval(node.args[0]) == "liquid_driver")


def share_paths(tree: ast.Module) -> list[str]:
    """List the paths below liquid_driver's share directory that a launch file joins."""
    constants = module_constants(tree)
    share_names = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name) and is_own_share(node.value, set())):
            share_names.add(node.targets[0].id)
    paths = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "PathJoinSubstitution"):
            continue
        parts = node.args[0]
        if isinstance(parts, ast.List) and parts.elts and is_own_share(parts.elts[0], share_names):
            pieces = [evaluate_string(element, constants) for element in parts.elts[1:]]
            assert None not in pieces, f"{ast.unparse(node)} joins a value that is not a literal"
            paths.append("/".join(pieces))
    return paths


def installed_share_files() -> set[str]:
    """Evaluate setup.py's data_files into paths relative to share/liquid_driver."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    data_files = next(keyword.value for node in ast.walk(tree) if isinstance(node, ast.Call)
                      for keyword in node.keywords if keyword.arg == "data_files")
    namespace = {"PACKAGE_NAME": "liquid_driver",
                 "glob": lambda pattern: sorted(
                     str(Path(p).relative_to(ROOT)) for p in glob(str(ROOT / pattern)))}
    installed = set()
    for entry in data_files.elts:
        destination, sources = eval(compile(ast.Expression(entry), "setup.py", "eval"), namespace)
        prefix = "share/liquid_driver"
        if destination != prefix and not destination.startswith(prefix + "/"):
            continue
        below = destination[len(prefix):].lstrip("/")
        for source in sources:
            installed.add(f"{below}/{Path(source).name}".lstrip("/"))
    return installed


def liquid_driver_nodes(tree: ast.Module) -> list[str]:
    executables = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node":
            keywords = {k.arg: k.value for k in node.keywords}
            if ast.literal_eval(keywords["package"]) == "liquid_driver":
                executables.append(ast.literal_eval(keywords["executable"]))
    return executables


def console_scripts() -> set[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    return {ast.literal_eval(item).split("=")[0].strip() for item in value.elts}
    raise AssertionError("setup.py declares no console_scripts")


# SDF files ----------------------------------------------------------------


def test_sdf_files_parse():
    for path in (WORLD_SDF, VEHICLE_SDF):
        root = ET.parse(path).getroot()
        assert root.tag == "sdf", path
        assert root.get("version") == "1.9", path


def test_world_loads_required_systems():
    world = ET.parse(WORLD_SDF).getroot().find("world")
    plugins = {plugin.get("name"): plugin.get("filename") for plugin in world.findall("plugin")}
    assert plugins.get("gz::sim::systems::Physics") == "gz-sim-physics-system"
    assert plugins.get("gz::sim::systems::UserCommands") == "gz-sim-user-commands-system"
    assert plugins.get("gz::sim::systems::SceneBroadcaster") == "gz-sim-scene-broadcaster-system"
    assert plugins.get("gz::sim::systems::Sensors") == "gz-sim-sensors-system"


def test_world_track_markings_are_visual_only():
    world = ET.parse(WORLD_SDF).getroot().find("world")
    track = world.find("model[@name='track']")
    assert track is not None
    assert track.findtext("static") == "true"
    assert track.findall(".//collision") == []
    names = [visual.get("name") for visual in track.findall(".//visual")]
    assert any(name.startswith("left_edge_") for name in names)
    assert any(name.startswith("right_edge_") for name in names)
    assert any(name.startswith("centre_dash_") for name in names)
    ground = world.find("model[@name='ground_plane']")
    assert ground.find(".//collision/geometry/plane") is not None


def test_world_name_matches_launch():
    world = ET.parse(WORLD_SDF).getroot().find("world")
    constants = module_constants(parse_launch(LAUNCH_DIR / "gazebo.launch.py"))
    assert world.get("name") == constants["WORLD_NAME"]
    vehicle = ET.parse(VEHICLE_SDF).getroot().find("model")
    assert vehicle.get("name") == constants["VEHICLE_NAME"]


def test_vehicle_has_ackermann_and_camera():
    model = ET.parse(VEHICLE_SDF).getroot().find("model")
    plugin = model.find("plugin[@name='gz::sim::systems::AckermannSteering']")
    assert plugin is not None
    assert plugin.get("filename") == "gz-sim-ackermann-steering-system"
    joints = {joint.get("name") for joint in model.findall("joint")}
    for tag in ("left_joint", "right_joint", "left_steering_joint", "right_steering_joint"):
        for element in plugin.findall(tag):
            assert element.text in joints, f"{tag} {element.text} is not a joint of the model"
    assert float(plugin.findtext("wheel_base")) == pytest.approx(0.26)
    assert float(plugin.findtext("steering_limit")) == pytest.approx(0.4)
    camera = model.find(".//sensor[@type='camera']")
    assert camera is not None
    assert float(camera.findtext("update_rate")) == pytest.approx(20.0)
    assert camera.findtext("camera/image/width") == "160"
    assert camera.findtext("camera/image/height") == "120"


def test_sdf_topics_match_bridge():
    topics = gz_topics(ET.parse(VEHICLE_SDF).getroot())
    bridged = {(entry["ros_type_name"], entry["gz_topic_name"]) for entry in bridge_entries()}
    assert ("sensor_msgs/msg/Image", topics["image"]) in bridged
    assert ("sensor_msgs/msg/CameraInfo", topics["camera_info"]) in bridged
    assert ("geometry_msgs/msg/Twist", topics["cmd_vel"]) in bridged
    assert ("nav_msgs/msg/Odometry", topics["odometry"]) in bridged
    assert ("rosgraph_msgs/msg/Clock", "/clock") in bridged


def test_generated_sdf_up_to_date():
    sys.path.insert(0, str(ROOT / "gazebo"))
    try:
        import make_sdf
    finally:
        sys.path.pop(0)
    for path, text in make_sdf.generated_files().items():
        assert path.read_text() == text, f"{path.name} is stale; run gazebo/make_sdf.py"
    constants = module_constants(parse_launch(LAUNCH_DIR / "gazebo.launch.py"))
    expected = make_sdf.spawn_pose()
    assert tuple(float(value) for value in constants["SPAWN_POSE"]) == pytest.approx(expected)


# Bridge config ------------------------------------------------------------


def test_bridge_yaml_entries_valid():
    entries = bridge_entries()
    assert isinstance(entries, list) and entries
    for entry in entries:
        assert set(entry) <= BRIDGE_KEYS, f"unknown keys {set(entry) - BRIDGE_KEYS}"
        assert {"ros_type_name", "gz_type_name"} <= set(entry)
        has_split_names = {"ros_topic_name", "gz_topic_name"} <= set(entry)
        assert has_split_names or "topic_name" in entry
        assert entry.get("direction", "BIDIRECTIONAL") in BRIDGE_DIRECTIONS
        assert (entry["ros_type_name"], entry["gz_type_name"]) in BRIDGE_TYPE_PAIRS


def test_bridge_yaml_directions():
    directions = {entry["ros_type_name"]: entry["direction"] for entry in bridge_entries()}
    assert directions["geometry_msgs/msg/Twist"] == "ROS_TO_GZ"
    for sensor_type in ("sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo",
                        "nav_msgs/msg/Odometry", "rosgraph_msgs/msg/Clock"):
        assert directions[sensor_type] == "GZ_TO_ROS"


def test_bridge_ros_topics_match_launch_defaults():
    ros_topics = {entry["ros_type_name"]: entry["ros_topic_name"] for entry in bridge_entries()}
    source = (LAUNCH_DIR / "gazebo.launch.py").read_text()
    assert f'"camera_topic", default_value="{ros_topics["sensor_msgs/msg/Image"]}"' in source
    assert f'"cmd_topic", default_value="{ros_topics["geometry_msgs/msg/Twist"]}"' in source


# CARLA objects ------------------------------------------------------------


def carla_ego() -> dict:
    objects = json.loads(CARLA_OBJECTS.read_text())["objects"]
    vehicles = [item for item in objects if item["type"].startswith("vehicle.")]
    assert len(vehicles) == 1, "the objects file must define exactly one ego vehicle"
    return vehicles[0]


def test_carla_objects_valid():
    ego = carla_ego()
    constants = module_constants(parse_launch(LAUNCH_DIR / "carla.launch.py"))
    assert ego["id"] == constants["ROLE_NAME"]
    cameras = [s for s in ego["sensors"] if s["type"] == "sensor.camera.rgb"]
    assert [camera["id"] for camera in cameras] == [constants["CAMERA_ID"]]
    for sensor in ego["sensors"]:
        assert sensor["type"].startswith("sensor."), sensor
        assert sensor["id"], sensor
    camera = cameras[0]
    assert set(camera["spawn_point"]) == {"x", "y", "z", "roll", "pitch", "yaw"}
    assert camera["spawn_point"]["pitch"] < 0.0, "the camera must look down at the road"
    assert float(camera["sensor_tick"]) == pytest.approx(float(constants["FIXED_DELTA_S"]))


def test_carla_camera_matches_model_aspect():
    camera = next(s for s in carla_ego()["sensors"] if s["type"] == "sensor.camera.rgb")
    preprocessing = Preprocessing()
    kept_height = camera["image_size_y"] * (1.0 - preprocessing.crop_top - preprocessing.crop_bottom)
    kept_width = camera["image_size_x"] * (1.0 - preprocessing.crop_left - preprocessing.crop_right)
    model_aspect = preprocessing.width / preprocessing.height
    assert kept_width / kept_height == pytest.approx(model_aspect, rel=0.02)


# Launch files -------------------------------------------------------------


@pytest.mark.parametrize("name", OWN_LAUNCH_FILES)
def test_launch_file_exists(name):
    assert (LAUNCH_DIR / name).is_file()


@pytest.mark.parametrize("name", OWN_LAUNCH_FILES)
def test_launch_arguments_consistent(name):
    arguments = declared_arguments(parse_launch(LAUNCH_DIR / name))
    assert len(arguments) == len(set(arguments)), f"{name} declares an argument twice"
    for argument, files in SHARED_ARGUMENTS.items():
        if name in files:
            assert argument in arguments, f"{name} lacks the {argument} argument"
    assert not FORBIDDEN_ARGUMENTS & set(arguments)


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_nodes_installed(path):
    scripts = console_scripts()
    for executable in liquid_driver_nodes(parse_launch(path)):
        assert executable in scripts, f"{path.name} starts {executable}, which setup.py does not install"


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_share_files_installed(path):
    installed = installed_share_files()
    for relative in share_paths(parse_launch(path)):
        assert (ROOT / relative).is_file(), f"{path.name} reads {relative}, which does not exist"
        assert relative in installed, f"{path.name} reads {relative}, which setup.py does not install"


def test_launch_files_installed():
    installed = installed_share_files()
    for name in OWN_LAUNCH_FILES:
        assert f"launch/{name}" in installed


def test_launch_descriptions_load():
    launch = pytest.importorskip("launch", reason="ROS 2 launch is not installed here")
    pytest.importorskip("launch_ros", reason="launch_ros is not installed here")
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    for name in OWN_LAUNCH_FILES:
        source = PythonLaunchDescriptionSource(str(LAUNCH_DIR / name))
        description = source.get_launch_description(launch.LaunchContext())
        loaded = {argument.name for argument in description.get_launch_arguments()}
        assert loaded == set(declared_arguments(parse_launch(LAUNCH_DIR / name)))


def test_sim_launch_lighting_choices_match_presets():
    from liquid_driver.sim.style import LIGHTING_PRESETS

    constants = module_constants(parse_launch(LAUNCH_DIR / "sim.launch.py"))
    assert tuple(constants["LIGHTING_PRESETS"]) == LIGHTING_PRESETS
