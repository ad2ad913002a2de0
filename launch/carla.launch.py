"""Drive an ego vehicle in a running CARLA server with the liquid network.

    ros2 launch liquid_driver carla.launch.py town:=Town04
    ros2 launch liquid_driver carla.launch.py control:=native

Starts the CARLA ROS bridge (`carla_ros_bridge`) in synchronous mode with a
fixed 0.05 s step, spawns the ego vehicle (role name `hero`) with a front RGB
camera from config/carla_objects.json (`carla_spawn_objects`), and starts the
perception node on the bridge's camera topic. `control` selects how the
commands reach the vehicle:

- `bridge` (default): Twist on /carla/hero/twist, turned into
  CarlaEgoVehicleControl by the bridge's `carla_twist_to_control` node.
- `native`: AckermannDriveStamped on /carla/hero/ackermann_control_cmd,
  read by the ROS 2 interface built into the CARLA server (start it with --ros2).

docs/launch.md lists the CARLA and ROS 2 versions of each route.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

# The ego vehicle's role name: the objects file's vehicle id, and the name
# CARLA's native ROS 2 interface uses for the vehicle it takes commands for.
ROLE_NAME = "hero"
CAMERA_ID = "rgb_front"
FIXED_DELTA_S = "0.05"
NODE_CAMERA_TOPIC = "camera/image_raw"
NODE_CMD_TOPIC = "cmd_vel"
# Command topic and perception output type of each control route.
ROUTES = {
    "bridge": (f"/carla/{ROLE_NAME}/twist", "twist"),
    "native": (f"/carla/{ROLE_NAME}/ackermann_control_cmd", "ackermann"),
}


def route_value(index: int) -> PythonExpression:
    """Look up the command topic (0) or output type (1) of the selected control route."""
    return PythonExpression([repr({name: value[index] for name, value in ROUTES.items()}),
                             "['", LaunchConfiguration("control"), "']"])


def declare_arguments() -> list:
    """Declare every launch argument with its default and help text."""
    share = FindPackageShare("liquid_driver")
    return [
        DeclareLaunchArgument("host", default_value="localhost", description="CARLA server host"),
        DeclareLaunchArgument("port", default_value="2000", description="CARLA server RPC port"),
        DeclareLaunchArgument(
            "timeout", default_value="10", description="Seconds to wait for the CARLA server"),
        DeclareLaunchArgument("town", default_value="Town04", description="CARLA map to load"),
        DeclareLaunchArgument(
            "control", default_value="bridge", choices=sorted(ROUTES),
            description="Command route: bridge (Twist through carla_twist_to_control) or native "
                        "(AckermannDriveStamped to the server's own ROS 2 interface)"),
        DeclareLaunchArgument(
            "objects_file",
            default_value=PathJoinSubstitution([share, "config", "carla_objects.json"]),
            description="carla_spawn_objects definition of the ego vehicle and its sensors"),
        DeclareLaunchArgument(
            "camera_topic",
            default_value=f"/carla/{ROLE_NAME}/{CAMERA_ID}/image",
            description="Camera image topic"),
        DeclareLaunchArgument(
            "cmd_topic", default_value=route_value(0),
            description="Command topic; the default follows the control route"),
        DeclareLaunchArgument(
            "output_type", default_value=route_value(1), choices=["twist", "twist_stamped", "ackermann"],
            description="Command message type; the default follows the control route"),
        DeclareLaunchArgument(
            "model", default_value="",
            description="Model file for the perception node; empty uses the shipped model"),
        DeclareLaunchArgument(
            "backend", default_value="torch", choices=["torch", "onnx"],
            description="Inference runtime of the perception node (onnx needs an .onnx model)"),
        DeclareLaunchArgument("speed", default_value="5.0", description="Driving speed in m/s"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="true", description="Run the ROS nodes on CARLA's /clock"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "sim.yaml"]),
            description="YAML file of node parameters; launch arguments override it"),
        DeclareLaunchArgument("record", default_value="false", description="Record a rosbag2 MCAP bag"),
        DeclareLaunchArgument(
            "bag", default_value="bags/carla", description="Bag directory to create (must not exist)"),
    ]


def generate_launch_description():
    control = LaunchConfiguration("control")
    camera_topic = LaunchConfiguration("camera_topic")
    cmd_topic = LaunchConfiguration("cmd_topic")
    params_file = LaunchConfiguration("params_file")
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)

    bridge = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution(
            [FindPackageShare("carla_ros_bridge"), "launch", "carla_ros_bridge.launch.py"])),
        launch_arguments={
            "host": LaunchConfiguration("host"),
            "port": LaunchConfiguration("port"),
            "timeout": LaunchConfiguration("timeout"),
            "town": LaunchConfiguration("town"),
            "synchronous_mode": "True",
            "fixed_delta_seconds": FIXED_DELTA_S,
        }.items(),
    )
    spawn = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution(
            [FindPackageShare("carla_spawn_objects"), "launch", "carla_spawn_objects.launch.py"])),
        launch_arguments={"objects_definition_file": LaunchConfiguration("objects_file")}.items(),
    )
    twist_to_control = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution(
            [FindPackageShare("carla_twist_to_control"), "launch", "carla_twist_to_control.launch.py"])),
        launch_arguments={"role_name": ROLE_NAME}.items(),
        condition=IfCondition(PythonExpression(["'", control, "' == 'bridge'"])),
    )
    perception = Node(
        package="liquid_driver", executable="perception_node", name="perception_node",
        output="screen",
        remappings=[(NODE_CAMERA_TOPIC, camera_topic), (NODE_CMD_TOPIC, cmd_topic)],
        parameters=[params_file, {
            "model_path": LaunchConfiguration("model"),
            "backend": LaunchConfiguration("backend"),
            "speed": ParameterValue(LaunchConfiguration("speed"), value_type=float),
            "output_type": LaunchConfiguration("output_type"),
            "frame_id": ROLE_NAME,
            # A simulated car may drive as soon as the node is active.
            "start_enabled": True,
            "use_sim_time": use_sim_time,
        }],
    )
    recorder = Node(
        package="liquid_driver", executable="recorder_node", name="recorder_node", output="screen",
        condition=IfCondition(LaunchConfiguration("record")),
        parameters=[params_file, {
            "output": LaunchConfiguration("bag"),
            # One inner list per topic: launch_ros joins the items of a flat list into one string.
            "topics": [[camera_topic], [cmd_topic], [f"/carla/{ROLE_NAME}/odometry"]],
            "use_sim_time": use_sim_time,
        }],
    )
    return LaunchDescription(declare_arguments() + [bridge, spawn, twist_to_control, perception, recorder])
