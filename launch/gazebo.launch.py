"""Drive a small Ackermann car around a lane-marked track in Gazebo with the liquid network.

    ros2 launch liquid_driver gazebo.launch.py
    ros2 launch liquid_driver gazebo.launch.py headless:=true record:=true bag:=bags/gz1

For Gazebo Harmonic with ROS 2 Jazzy and Gazebo Ionic with ROS 2 Kilted
(`ros_gz_sim`, `ros_gz_bridge`). It starts `gz sim` on the shipped world,
spawns the shipped vehicle, bridges /clock, the camera image and info,
odometry and cmd_vel with config/gz_bridge.yaml, and starts the perception
node (and the recorder with record:=true). docs/launch.md describes the
Humble and Fortress variant.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

WORLD_NAME = "liquid_track"
VEHICLE_NAME = "liquid_car"
# Start pose on the right lane's centre at the start line of the world's
# track, as printed by gazebo/make_sdf.py: x m, y m, yaw rad.
SPAWN_POSE = ("4.832", "-0.106", "1.21")
NODE_CAMERA_TOPIC = "camera/image_raw"
NODE_CMD_TOPIC = "cmd_vel"


def declare_arguments() -> list:
    """Declare every launch argument with its default and help text."""
    share = FindPackageShare("liquid_driver")
    return [
        DeclareLaunchArgument(
            "world", default_value=PathJoinSubstitution([share, "gazebo", "worlds", f"{WORLD_NAME}.sdf"]),
            description="World SDF file; a world of your own must load the Sensors and UserCommands systems"),
        DeclareLaunchArgument(
            "vehicle", default_value=PathJoinSubstitution(
                [share, "gazebo", "models", VEHICLE_NAME, "model.sdf"]),
            description="Vehicle SDF file to spawn"),
        DeclareLaunchArgument("x", default_value=SPAWN_POSE[0], description="Spawn x in m"),
        DeclareLaunchArgument("y", default_value=SPAWN_POSE[1], description="Spawn y in m"),
        DeclareLaunchArgument("yaw", default_value=SPAWN_POSE[2], description="Spawn yaw in rad"),
        DeclareLaunchArgument(
            "headless", default_value="false",
            description="true runs the Gazebo server only, without the GUI"),
        DeclareLaunchArgument(
            "bridge_config",
            default_value=PathJoinSubstitution([share, "config", "gz_bridge.yaml"]),
            description="ros_gz_bridge YAML file; its ROS topic names must match camera_topic and cmd_topic"),
        DeclareLaunchArgument(
            "model", default_value="",
            description="Model file for the perception node; empty uses the shipped model"),
        DeclareLaunchArgument(
            "backend", default_value="torch", choices=["torch", "onnx"],
            description="Inference runtime of the perception node (onnx needs an .onnx model)"),
        DeclareLaunchArgument("speed", default_value="1.0", description="Driving speed in m/s"),
        DeclareLaunchArgument(
            "output_type", default_value="twist", choices=["twist"],
            description="Command message type; the Ackermann steering system takes Twist only"),
        DeclareLaunchArgument(
            "camera_topic", default_value="/camera/image_raw", description="Camera image topic"),
        DeclareLaunchArgument("cmd_topic", default_value="/cmd_vel", description="Twist command topic"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="true", description="Run the ROS nodes on Gazebo's /clock"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([share, "config", "sim.yaml"]),
            description="YAML file of node parameters; launch arguments override it"),
        DeclareLaunchArgument("record", default_value="false", description="Record a rosbag2 MCAP bag"),
        DeclareLaunchArgument(
            "bag", default_value="bags/gazebo", description="Bag directory to create (must not exist)"),
    ]


def generate_launch_description():
    ros_gz_sim = FindPackageShare("ros_gz_sim")
    camera_topic = LaunchConfiguration("camera_topic")
    cmd_topic = LaunchConfiguration("cmd_topic")
    params_file = LaunchConfiguration("params_file")
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)

    # -r starts the simulation running; -s leaves out the GUI.
    gz_args = PythonExpression([
        "'", LaunchConfiguration("world"), " -r' + (' -s' if '",
        LaunchConfiguration("headless"), "'.lower() == 'true' else '')",
    ])
    gazebo = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([ros_gz_sim, "launch", "gz_sim.launch.py"])),
        launch_arguments={"gz_args": gz_args, "on_exit_shutdown": "true"}.items(),
    )
    spawn = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([ros_gz_sim, "launch", "gz_spawn_model.launch.py"])),
        launch_arguments={
            "world": WORLD_NAME,
            "file": LaunchConfiguration("vehicle"),
            "entity_name": VEHICLE_NAME,
            "x": LaunchConfiguration("x"),
            "y": LaunchConfiguration("y"),
            "z": "0.01",
            "Y": LaunchConfiguration("yaw"),
        }.items(),
    )
    bridge = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(
            PathJoinSubstitution([FindPackageShare("ros_gz_bridge"), "launch", "ros_gz_bridge.launch.py"])),
        launch_arguments={
            "bridge_name": "liquid_driver_gz_bridge",
            "config_file": LaunchConfiguration("bridge_config"),
        }.items(),
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
            "topics": [[camera_topic], [cmd_topic], ["/odom"]],
            "use_sim_time": use_sim_time,
        }],
    )
    return LaunchDescription(declare_arguments() + [gazebo, spawn, bridge, perception, recorder])
