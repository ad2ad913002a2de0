"""Record human demonstrations on a real rover: teleop input plus the recorder.

    ros2 launch liquid_driver record.launch.py bag:=bags/rover_run1
    ros2 launch liquid_driver record.launch.py teleop:=keyboard bag:=bags/rover_run2
    ros2 launch liquid_driver record.launch.py teleop:=none     # commands come from elsewhere

The rover's own drivers (camera, motor controller) run separately and must
publish camera_topic and subscribe cmd_topic. `teleop:=joy` starts `joy_node`
and `teleop_twist_joy` through teleop_twist_joy's launch file.
`teleop:=keyboard` opens `teleop_twist_keyboard` in a terminal window of its
own, because it reads keys from a terminal and launch gives child processes none.
The recorder writes the camera images and the commands into one MCAP bag,
which liquid-driver-train reads.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def teleop_is(name: str) -> IfCondition:
    """Compare the teleop argument with `name` (Humble has no EqualsSubstitution)."""
    return IfCondition(PythonExpression(["'", LaunchConfiguration("teleop"), f"' == '{name}'"]))


def declare_arguments() -> list:
    """Declare every launch argument with its default and help text."""
    return [
        DeclareLaunchArgument(
            "teleop", default_value="joy", choices=["joy", "keyboard", "none"],
            description="Human input: joy (joystick through teleop_twist_joy), keyboard "
                        "(teleop_twist_keyboard in a terminal window) or none"),
        DeclareLaunchArgument(
            "joy_config", default_value="xbox",
            description="teleop_twist_joy button mapping: ps3, xbox, atk3, ..."),
        DeclareLaunchArgument(
            "joy_dev", default_value="0", description="Joystick device id for joy_node"),
        DeclareLaunchArgument(
            "terminal", default_value="xterm -e",
            description="Command prefix that opens a terminal window for the keyboard teleop"),
        DeclareLaunchArgument(
            "output_type", default_value="twist", choices=["twist", "twist_stamped"],
            description="Command message type the teleop publishes and the recorder stores"),
        DeclareLaunchArgument(
            "camera_topic", default_value="/camera/image_raw", description="Camera image topic"),
        DeclareLaunchArgument(
            "cmd_topic", default_value="/cmd_vel", description="Topic the teleop publishes commands on"),
        DeclareLaunchArgument(
            "record", default_value="true",
            description="false starts the teleop only, for a test drive without a bag"),
        DeclareLaunchArgument(
            "bag", default_value="bags/rover", description="Bag directory to create (must not exist)"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("liquid_driver"), "config", "record.yaml"]),
            description="YAML file of recorder parameters; launch arguments override it"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="false",
            description="Stamp with /clock instead of the system clock (true only when replaying)"),
    ]


def generate_launch_description():
    cmd_topic = LaunchConfiguration("cmd_topic")
    camera_topic = LaunchConfiguration("camera_topic")
    stamped = PythonExpression(["'", LaunchConfiguration("output_type"), "' == 'twist_stamped'"])

    joystick = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution(
            [FindPackageShare("teleop_twist_joy"), "launch", "teleop-launch.py"])),
        launch_arguments={
            "joy_config": LaunchConfiguration("joy_config"),
            "joy_dev": LaunchConfiguration("joy_dev"),
            "joy_vel": cmd_topic,
            "publish_stamped_twist": stamped,
        }.items(),
        condition=teleop_is("joy"),
    )
    keyboard = ExecuteProcess(
        cmd=["ros2", "run", "teleop_twist_keyboard", "teleop_twist_keyboard", "--ros-args",
             "-r", ["cmd_vel:=", cmd_topic], "-p", ["stamped:=", stamped]],
        prefix=LaunchConfiguration("terminal"),
        output="screen",
        condition=teleop_is("keyboard"),
    )
    recorder = Node(
        package="liquid_driver", executable="recorder_node", name="recorder_node", output="screen",
        condition=IfCondition(LaunchConfiguration("record")),
        parameters=[LaunchConfiguration("params_file"), {
            "output": LaunchConfiguration("bag"),
            # One inner list per topic: launch_ros joins the items of a flat list into one string.
            "topics": [[camera_topic], [cmd_topic]],
            "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
        }],
    )
    return LaunchDescription(declare_arguments() + [joystick, keyboard, recorder])
