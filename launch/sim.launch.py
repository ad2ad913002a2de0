"""Drive the embedded MuJoCo simulator with the liquid network.

    ros2 launch liquid_driver sim.launch.py layout:=curvy
    ros2 launch liquid_driver sim.launch.py driver:=expert record:=true bag:=bags/run1 lockstep:=true
    ros2 launch liquid_driver sim.launch.py headless:=false      # also show the camera in rqt_image_view
    ros2 launch liquid_driver sim.launch.py lighting:=dusk       # low sun, long shadows

`driver:=perception` (default) steers with the trained CfC network;
`driver:=expert` steers with the pure-pursuit expert to collect demonstrations.
With `laps:=N` the simulator stops after N laps and the whole launch ends with it.
`ros2 launch liquid_driver sim.launch.py --show-args` lists every argument.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, Shutdown
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

# liquid_driver.sim.style.LIGHTING_PRESETS, spelled out because importing the
# simulator here would probe OpenGL backends; test_launch_files.py keeps them equal.
LIGHTING_PRESETS = ["default", "dusk", "glare", "overcast", "night"]

# Topics the package's nodes use before remapping.
NODE_CAMERA_TOPIC = "camera/image_raw"
NODE_CMD_TOPIC = "cmd_vel"


def declare_arguments() -> list:
    """Declare every launch argument with its default and help text."""
    return [
        DeclareLaunchArgument(
            "layout", default_value="curvy",
            description="Track layout: oval, curvy, tight, chicane, kidney or random:<n>, "
                        "each optionally with :reverse"),
        DeclareLaunchArgument("seed", default_value="0", description="Visual seed for colours and lighting"),
        DeclareLaunchArgument(
            "lighting", default_value="default", choices=LIGHTING_PRESETS,
            description="Lighting preset: default keeps the seed's own, and dusk, glare, overcast "
                        "and night are lighting that the training seeds never show"),
        DeclareLaunchArgument("camera_rate", default_value="20.0", description="Camera rate in Hz"),
        DeclareLaunchArgument(
            "lockstep", default_value="false",
            description="Wait for each command instead of following the wall clock"),
        DeclareLaunchArgument(
            "laps", default_value="0",
            description="Stop the simulator, and with it this launch, after this many laps (0 runs forever)"),
        DeclareLaunchArgument(
            "driver", default_value="perception", choices=["perception", "expert"],
            description="Who steers: perception (the network) or expert (pure pursuit)"),
        DeclareLaunchArgument(
            "model", default_value="",
            description="Model file for the perception node; empty uses the shipped model"),
        DeclareLaunchArgument(
            "backend", default_value="torch", choices=["torch", "onnx"],
            description="Inference runtime of the perception node (onnx needs an .onnx model)"),
        DeclareLaunchArgument("speed", default_value="1.0", description="Driving speed in m/s"),
        DeclareLaunchArgument(
            "headless", default_value="true",
            description="false also opens rqt_image_view on the camera topic (needs a display)"),
        DeclareLaunchArgument("record", default_value="false", description="Record a rosbag2 MCAP bag"),
        DeclareLaunchArgument(
            "bag", default_value="bags/demo", description="Bag directory to create (must not exist)"),
        DeclareLaunchArgument(
            "use_sim_time", default_value="true",
            description="Run the driver and the recorder on the simulator's /clock"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare("liquid_driver"), "config", "sim.yaml"]),
            description="YAML file of node parameters; launch arguments override it"),
        DeclareLaunchArgument(
            "camera_topic", default_value="/camera/image_raw", description="Camera image topic"),
        DeclareLaunchArgument("cmd_topic", default_value="/cmd_vel", description="Twist command topic"),
    ]


def driver_is(name: str) -> PythonExpression:
    """Compare the driver argument with `name` (Humble has no EqualsSubstitution)."""
    return PythonExpression(["'", LaunchConfiguration("driver"), f"' == '{name}'"])


# Perception watchdog in the simulator, s: real time allows for late frames on a
# busy machine; lock-step must outlast sim_node's lockstep_timeout (1 s).
REALTIME_WATCHDOG_TIMEOUT_S = 0.5
LOCKSTEP_WATCHDOG_TIMEOUT_S = 5.0


def generate_launch_description():
    params_file = LaunchConfiguration("params_file")
    camera_topic = LaunchConfiguration("camera_topic")
    cmd_topic = LaunchConfiguration("cmd_topic")
    record = LaunchConfiguration("record")
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    lockstep = ParameterValue(LaunchConfiguration("lockstep"), value_type=bool)
    remappings = [(NODE_CAMERA_TOPIC, camera_topic), (NODE_CMD_TOPIC, cmd_topic)]

    # In lock-step mode the first frame waits for its subscribers: the driver
    # takes the image (perception) or the odometry (expert), and a recorder
    # subscribes both, so a recorded run waits for three.
    min_subscribers = PythonExpression(["3 if '", record, "'.lower() == 'true' else 1"])
    # In lock-step mode frames wait for commands, so a wall-clock watchdog shorter
    # than the simulator's lockstep_timeout would fire during a pause and its stop
    # commands would step the simulator past frames the network has not seen.
    watchdog_timeout = PythonExpression(
        [f"{LOCKSTEP_WATCHDOG_TIMEOUT_S} if '", LaunchConfiguration("lockstep"),
         f"'.lower() == 'true' else {REALTIME_WATCHDOG_TIMEOUT_S}"])
    sim = Node(
        package="liquid_driver", executable="sim_node", name="sim_node", output="screen",
        remappings=remappings,
        on_exit=Shutdown(reason="sim_node exited"),
        parameters=[params_file, {
            "layout": LaunchConfiguration("layout"),
            "seed": ParameterValue(LaunchConfiguration("seed"), value_type=int),
            "lighting": LaunchConfiguration("lighting"),
            "camera_rate": ParameterValue(LaunchConfiguration("camera_rate"), value_type=float),
            "lockstep": lockstep,
            "min_subscribers": ParameterValue(min_subscribers, value_type=int),
            "stop_after_laps": ParameterValue(LaunchConfiguration("laps"), value_type=int),
        }],
    )
    perception = Node(
        package="liquid_driver", executable="perception_node", name="perception_node",
        output="screen", condition=IfCondition(driver_is("perception")),
        remappings=remappings,
        parameters=[params_file, {
            "model_path": LaunchConfiguration("model"),
            "backend": LaunchConfiguration("backend"),
            "speed": ParameterValue(LaunchConfiguration("speed"), value_type=float),
            "image_reliable": lockstep,
            "watchdog_timeout": ParameterValue(watchdog_timeout, value_type=float),
            "start_enabled": True,
            "use_sim_time": use_sim_time,
        }],
    )
    expert = Node(
        package="liquid_driver", executable="expert_node", name="expert_node", output="screen",
        condition=IfCondition(driver_is("expert")),
        remappings=remappings,
        parameters=[params_file, {
            "layout": LaunchConfiguration("layout"),
            "speed": ParameterValue(LaunchConfiguration("speed"), value_type=float),
            "use_sim_time": use_sim_time,
        }],
    )
    recorder = Node(
        package="liquid_driver", executable="recorder_node", name="recorder_node", output="screen",
        condition=IfCondition(record),
        parameters=[params_file, {
            "output": LaunchConfiguration("bag"),
            # One inner list per topic: launch_ros joins the items of a flat list into one string.
            "topics": [[camera_topic], [cmd_topic], ["/odom"], ["/driving_mode"]],
            "use_sim_time": use_sim_time,
        }],
    )
    # Optional camera viewer: needs a display and the rqt_image_view package.
    image_view = ExecuteProcess(
        cmd=["ros2", "run", "rqt_image_view", "rqt_image_view", camera_topic],
        output="screen", condition=UnlessCondition(LaunchConfiguration("headless")),
    )
    return LaunchDescription(declare_arguments() + [sim, perception, expert, recorder, image_view])
