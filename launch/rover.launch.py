"""Run the perception node on a rover: camera in, drive commands out.

    ros2 launch liquid_driver rover.launch.py camera_topic:=/camera/image_raw \\
        cmd_topic:=/cmd_vel_liquid output_type:=twist_stamped

The node starts disabled (config/rover.yaml sets start_enabled: false). Enable
it with `ros2 service call /perception_node/enable std_srvs/srv/SetBool "{data: true}"`.
Launch arguments override the matching values of params_file.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    default_params = PathJoinSubstitution([FindPackageShare("liquid_driver"), "config", "rover.yaml"])
    arguments = [
        DeclareLaunchArgument("camera_topic", default_value="/camera/image_raw",
                              description="sensor_msgs/Image topic of the forward camera; with "
                                          "image_transport compressed, <camera_topic>/compressed"),
        DeclareLaunchArgument("cmd_topic", default_value="/cmd_vel",
                              description="Topic of the drive commands"),
        DeclareLaunchArgument("output_type", default_value="twist_stamped",
                              description="twist, twist_stamped or ackermann"),
        DeclareLaunchArgument("model", default_value="",
                              description="Model file (.safetensors for torch, .onnx for onnx); "
                                          "empty uses the shipped model"),
        DeclareLaunchArgument("backend", default_value="torch", description="torch or onnx"),
        DeclareLaunchArgument("speed", default_value="0.8", description="Cruise speed in m/s"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="YAML file of perception_node parameters"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="Use /clock for command stamps (a simulator or a bag)"),
    ]
    camera_topic = LaunchConfiguration("camera_topic")

    perception = Node(
        package="liquid_driver", executable="perception_node", name="perception_node",
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "model_path": LaunchConfiguration("model"),
                "backend": LaunchConfiguration("backend"),
                "output_type": LaunchConfiguration("output_type"),
                "speed": ParameterValue(LaunchConfiguration("speed"), value_type=float),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
            },
        ],
        remappings=[
            ("camera/image_raw", camera_topic),
            ("camera/image_raw/compressed", [camera_topic, "/compressed"]),
            ("cmd_vel", LaunchConfiguration("cmd_topic")),
        ],
    )
    return LaunchDescription(arguments + [perception])
