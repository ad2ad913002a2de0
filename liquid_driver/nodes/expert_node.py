"""ROS 2 shell around the pure-pursuit expert driver.

Publishes a Twist on cmd_vel for each odometry message, as a human teleop would,
and publishes the driving mode ("expert", or "perturbation" while the expert
deliberately drifts off the lane centre) so recordings can leave the drift out.
The expert uses ground-truth odometry and the track geometry of `layout`, so it
only drives the embedded simulator.
"""

from __future__ import annotations

import math

from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from std_msgs.msg import String

from liquid_driver.nodes.common import COMMAND_QOS, declare_parameter, run_node
from liquid_driver.sim import ExpertConfig, ExpertDriver, make_track

MODE_EXPERT = "expert"
MODE_PERTURBATION = "perturbation"


def yaw_from_quaternion(x: float, y: float, z: float, w: float) -> float:
    """Return the yaw angle in rad of a quaternion."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


class ExpertNode(Node):
    """Drive the simulated car along its lane centre with pure pursuit."""

    def __init__(self):
        super().__init__("expert_node")
        layout = declare_parameter(
            self, "layout", "oval", "Track layout the simulator runs", read_only=True)
        speed = declare_parameter(
            self, "speed", 1.0, "Driving speed in m/s", read_only=True, min_value=0.0, max_value=5.0)
        noise_std = declare_parameter(
            self, "noise_std", 0.0, "Standard deviation of steering noise in rad", read_only=True,
            min_value=0.0, max_value=0.5)
        recovery = declare_parameter(
            self, "recovery", False,
            "Drift off the lane centre at random times, then steer back", read_only=True)
        seed = declare_parameter(self, "seed", 0, "Seed of the noise and drift generator",
                                 read_only=True)

        self.track = make_track(layout)
        self.expert = ExpertDriver(
            self.track, ExpertConfig(speed=speed, noise_std=noise_std, recovery=recovery, seed=seed))
        self.cmd_pub = self.create_publisher(Twist, "cmd_vel", COMMAND_QOS)
        self.mode_pub = self.create_publisher(String, "driving_mode", COMMAND_QOS)
        self.odom_sub = self.create_subscription(Odometry, "odom", self.odom_callback, COMMAND_QOS)
        self.get_logger().info(
            f"Expert driving layout '{layout}' at {speed:.2f} m/s "
            f"(noise {noise_std:.3f} rad, recovery manoeuvres {'on' if recovery else 'off'})")

    def odom_callback(self, msg: Odometry) -> None:
        pose = msg.pose.pose
        q = pose.orientation
        yaw = yaw_from_quaternion(q.x, q.y, q.z, q.w)
        speed = math.hypot(msg.twist.twist.linear.x, msg.twist.twist.linear.y)
        command = self.expert.command(pose.position.x, pose.position.y, yaw, speed)

        mode = String(data=MODE_PERTURBATION if command.perturbing else MODE_EXPERT)
        self.mode_pub.publish(mode)
        twist = Twist()
        twist.linear.x = float(command.speed)
        twist.angular.z = float(command.yaw_rate)
        self.cmd_pub.publish(twist)


def main(args=None) -> None:
    run_node(ExpertNode, args)


if __name__ == "__main__":
    main()
