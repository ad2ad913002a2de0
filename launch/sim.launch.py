"""Drive the embedded MuJoCo simulator with the liquid network.

    ros2 launch liquid_driver sim.launch.py layout:=curvy
    ros2 launch liquid_driver sim.launch.py driver:=expert record:=true bag:=bags/run1

`driver:=perception` (default) steers with the trained CfC network;
`driver:=expert` steers with the pure-pursuit expert to collect demonstrations.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, LaunchConfigurationEquals
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue


def generate_launch_description():
    arguments = [
        DeclareLaunchArgument("layout", default_value="curvy",
                              description="Track layout (oval, curvy, tight, chicane, random:<n>)"),
        DeclareLaunchArgument("seed", default_value="0", description="Visual seed for colours and lighting"),
        DeclareLaunchArgument("camera_rate", default_value="20.0", description="Camera rate in Hz"),
        DeclareLaunchArgument("lockstep", default_value="false",
                              description="Wait for each command instead of following the wall clock"),
        DeclareLaunchArgument("driver", default_value="perception",
                              description="Who steers: perception (the network) or expert"),
        DeclareLaunchArgument("model", default_value="",
                              description="Checkpoint for the perception node; empty uses the shipped model"),
        DeclareLaunchArgument("speed", default_value="1.0", description="Driving speed in m/s"),
        DeclareLaunchArgument("record", default_value="false", description="Record a rosbag2 MCAP bag"),
        DeclareLaunchArgument("bag", default_value="bags/demo", description="Bag directory to create"),
        DeclareLaunchArgument("use_sim_time", default_value="true",
                              description="Run the nodes on the simulator's /clock"),
    ]
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)

    sim = Node(
        package="liquid_driver", executable="sim_node", name="sim_node", output="screen",
        parameters=[{
            "layout": LaunchConfiguration("layout"),
            "seed": ParameterValue(LaunchConfiguration("seed"), value_type=int),
            "camera_rate": ParameterValue(LaunchConfiguration("camera_rate"), value_type=float),
            "lockstep": ParameterValue(LaunchConfiguration("lockstep"), value_type=bool),
        }],
    )
    perception = Node(
        package="liquid_driver", executable="perception_node", name="perception_node",
        output="screen", condition=LaunchConfigurationEquals("driver", "perception"),
        parameters=[{
            "model_path": LaunchConfiguration("model"),
            "speed": ParameterValue(LaunchConfiguration("speed"), value_type=float),
            "image_reliable": ParameterValue(LaunchConfiguration("lockstep"), value_type=bool),
            "use_sim_time": use_sim_time,
        }],
    )
    expert = Node(
        package="liquid_driver", executable="expert_node", name="expert_node", output="screen",
        condition=LaunchConfigurationEquals("driver", "expert"),
        parameters=[{
            "layout": LaunchConfiguration("layout"),
            "speed": ParameterValue(LaunchConfiguration("speed"), value_type=float),
            "noise_std": 0.03,
            "recovery": True,
            "use_sim_time": use_sim_time,
        }],
    )
    recorder = Node(
        package="liquid_driver", executable="recorder_node", name="recorder_node", output="screen",
        condition=IfCondition(LaunchConfiguration("record")),
        parameters=[{"output": LaunchConfiguration("bag"), "use_sim_time": use_sim_time}],
    )
    return LaunchDescription(arguments + [sim, perception, expert, recorder])
