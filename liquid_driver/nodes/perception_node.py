"""ROS 2 shell around the liquid-network driver.

Subscribes a camera image, runs CNN -> CfC NCP with dt from the header stamps
and publishes Twist on cmd_vel: linear.x is the speed parameter, angular.z the
yaw rate speed x curvature. It publishes a stop when the network output is not
finite and when no valid image arrived for `watchdog_timeout` seconds, and
reports latency percentiles on /diagnostics.

Callbacks run on a single-threaded executor, so the image callback, the
watchdog and the diagnostics timer never run at the same time.
"""

from __future__ import annotations

import math
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist
from rclpy.node import Node
from sensor_msgs.msg import Image

from liquid_driver.data.images import ImageFormatError, image_to_rgb
from liquid_driver.inference import PolicyRunner
from liquid_driver.nodes.common import COMMAND_QOS, camera_qos, declare_parameter, run_node
from liquid_driver.paths import default_model_path

DIAGNOSTICS_PERIOD_S = 1.0
LATENCY_LOG_PERIOD_S = 10.0


class PerceptionNode(Node):
    """Steer from camera frames with a trained CfC Neural Circuit Policy."""

    def __init__(self):
        super().__init__("perception_node")
        self.shutting_down = False
        model_path = declare_parameter(
            self, "model_path", "", "Checkpoint to load; empty uses the shipped model",
            read_only=True)
        self.speed = declare_parameter(
            self, "speed", 1.0, "Forward speed in m/s", min_value=0.0, max_value=5.0)
        self.max_curvature = declare_parameter(
            self, "max_curvature", 2.5, "Clamp on the output curvature in 1/m",
            min_value=0.01, max_value=20.0)
        max_dt = declare_parameter(
            self, "max_dt", 0.5,
            "A gap between image stamps above this many seconds resets the network state",
            read_only=True, min_value=0.01, max_value=60.0)
        threads = declare_parameter(
            self, "threads", 1, "PyTorch threads for inference", read_only=True,
            min_value=1, max_value=64)
        self.watchdog_timeout = declare_parameter(
            self, "watchdog_timeout", 0.5,
            "Publish a stop when no valid image arrived for this many seconds",
            min_value=0.01, max_value=10.0)
        reliable = declare_parameter(
            self, "image_reliable", False,
            "Subscribe the camera with reliable QoS instead of the sensor-data profile",
            read_only=True)

        path = model_path or str(default_model_path())
        self.runner = PolicyRunner(path, max_dt=max_dt, threads=threads)
        self.get_logger().info(f"Loaded model {self.runner.description} from {path}")

        self.cmd_pub = self.create_publisher(Twist, "cmd_vel", COMMAND_QOS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", COMMAND_QOS)
        self.image_sub = self.create_subscription(
            Image, "camera/image_raw", self.image_callback, camera_qos(reliable))

        self.frames = 0
        self.rejected_frames = 0
        self.last_valid_image_wall: float | None = None
        self.watchdog_tripped = False
        self.started_wall = time.monotonic()
        self.last_latency_log = time.monotonic()
        self.watchdog_timer = self.create_timer(
            min(self.watchdog_timeout / 2.0, 0.1), self.watchdog_callback)
        self.diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self.diagnostics_callback)

    def image_callback(self, msg: Image) -> None:
        try:
            rgb = image_to_rgb(msg)
        except ImageFormatError as error:
            self.rejected_frames += 1
            self.get_logger().error(f"Rejected image: {error}", throttle_duration_sec=1.0)
            return

        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        prediction = self.runner.predict(rgb, stamp)
        if prediction.reset_reason is not None:
            self.get_logger().warn(f"Reset the network state: {prediction.reset_reason}")

        if not math.isfinite(prediction.curvature):
            self.get_logger().error(
                "Network output is not finite; publishing a stop", throttle_duration_sec=1.0)
            self.publish_stop()
            return

        self.frames += 1
        self.last_valid_image_wall = time.monotonic()
        if self.watchdog_tripped:
            self.watchdog_tripped = False
            self.get_logger().info("Images are back; driving again")

        curvature = max(-self.max_curvature, min(self.max_curvature, prediction.curvature))
        twist = Twist()
        twist.linear.x = float(self.speed)
        twist.angular.z = float(self.speed * curvature)
        self.cmd_pub.publish(twist)

        now = time.monotonic()
        if now - self.last_latency_log > LATENCY_LOG_PERIOD_S:
            self.last_latency_log = now
            p50, p99 = self.runner.latency_ms()
            self.get_logger().info(
                f"{self.frames} frames, latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")

    def watchdog_callback(self) -> None:
        since = self.last_valid_image_wall or self.started_wall
        if time.monotonic() - since <= self.watchdog_timeout:
            return
        if not self.watchdog_tripped and self.last_valid_image_wall is not None:
            self.get_logger().error(
                f"No valid image for {self.watchdog_timeout:.2f} s; publishing stop commands")
        self.watchdog_tripped = True
        self.publish_stop()

    def publish_stop(self) -> None:
        self.cmd_pub.publish(Twist())

    def diagnostics_callback(self) -> None:
        p50, p99 = self.runner.latency_ms()
        status = DiagnosticStatus()
        status.name = "perception_node: inference"
        status.hardware_id = self.runner.checkpoint_path.name
        if self.watchdog_tripped:
            status.level = DiagnosticStatus.ERROR
            status.message = f"no valid image for more than {self.watchdog_timeout:.2f} s"
        else:
            status.level = DiagnosticStatus.OK
            status.message = "driving"
        values = {
            "frames": str(self.frames),
            "rejected_frames": str(self.rejected_frames),
            "state_resets": str(self.runner.resets),
            "latency_p50_ms": f"{p50:.3f}",
            "latency_p99_ms": f"{p99:.3f}",
            "model": self.runner.description,
        }
        status.values = [KeyValue(key=key, value=value) for key, value in values.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self.diagnostics_pub.publish(array)

    def destroy_node(self):
        # Kilted's context shutdown destroys tracked nodes, and main() does too.
        if not self.shutting_down:
            self.shutting_down = True
            p50, p99 = self.runner.latency_ms()
            self.get_logger().info(
                f"Shutting down after {self.frames} frames "
                f"({self.rejected_frames} rejected): latency p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        return super().destroy_node()


def main(args=None) -> None:
    run_node(PerceptionNode, args)


if __name__ == "__main__":
    main()
