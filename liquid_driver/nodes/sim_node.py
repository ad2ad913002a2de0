"""ROS 2 shell around the embedded MuJoCo simulator.

Publishes the forward camera (rgb8, stamped with simulation time), its
CameraInfo, ground-truth odometry, /clock and lane metrics. Subscribes Twist on
cmd_vel and turns it into a front steering angle with the bicycle model.

In real-time mode a wall timer advances the simulation by one camera period per
tick. In lock-step mode each published frame waits for the next command (or
`lockstep_timeout` seconds), so a driver and a recorder see every frame and the
simulation runs as fast as they respond. Any command counts as the answer, so a
driver must not publish commands of its own while it waits for a frame: give
the perception node a watchdog_timeout longer than lockstep_timeout.
"""

from __future__ import annotations

import math
import time

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger

from liquid_driver.data.images import rgb_to_image_fields
from liquid_driver.metrics import DriveStats
from liquid_driver.nodes.common import COMMAND_QOS, camera_qos, declare_parameter, run_node
from liquid_driver.sim import (
    SimConfig,
    SimulationDiverged,
    Simulator,
    steering_from_twist,
)
from liquid_driver.sim.style import LIGHTING_PRESETS

# Commands older than this stop the car in real-time mode: a driver that went
# silent must not leave the car running on its last command.
COMMAND_TIMEOUT_S = 0.5


def stamp_from_seconds(seconds: float) -> Time:
    """Convert simulation seconds to a builtin_interfaces/Time."""
    sec = int(math.floor(seconds))
    nanosec = int(round((seconds - sec) * 1e9))
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time(sec=sec, nanosec=nanosec)


class SimNode(Node):
    """Run the simulator and expose it over ROS 2 topics."""

    def __init__(self):
        super().__init__("sim_node")
        self.shutting_down = False
        self.sim = None  # None until built, so destroy_node can tell that __init__ failed.

        self.layout = declare_parameter(
            self, "layout", "oval", "Track layout name (oval, curvy, tight, ...) or random:<seed>",
            read_only=True)
        self.seed = declare_parameter(
            self, "seed", 0, "Visual seed for colours and lighting", read_only=True)
        self.lighting = declare_parameter(
            self, "lighting", "default",
            "Lighting preset: default keeps the visual seed's own lighting, and the others are "
            "lighting that the training seeds never show", read_only=True,
            additional_constraints=f"one of: {', '.join(LIGHTING_PRESETS)}")
        self.camera_rate = declare_parameter(
            self, "camera_rate", 20.0, "Camera frame rate in Hz (also the control period)",
            read_only=True, min_value=1.0, max_value=200.0)
        self.lockstep = declare_parameter(
            self, "lockstep", False,
            "Wait for a command after each frame instead of following the wall clock",
            read_only=True)
        self.lockstep_timeout = declare_parameter(
            self, "lockstep_timeout", 1.0,
            "Seconds to wait for a command in lock-step mode before stepping anyway",
            min_value=0.01, max_value=60.0)
        self.min_subscribers = declare_parameter(
            self, "min_subscribers", 1,
            "Lock-step mode waits until the image and odometry topics have this many "
            "subscriptions in total before publishing the first frame",
            read_only=True, min_value=1, max_value=100)
        self.start_progress = declare_parameter(
            self, "start_progress", 0.0, "Start position along the track in m", read_only=True,
            min_value=0.0, max_value=1.0e4)
        self.stop_after_laps = declare_parameter(
            self, "stop_after_laps", 0, "Shut down after this many laps (0 runs forever)",
            min_value=0, max_value=1000)
        self.stop_after_time = declare_parameter(
            self, "stop_after_time", 0.0,
            "Shut down after this many simulated seconds (0 runs forever)",
            min_value=0.0, max_value=1.0e6)
        self.frame_id = declare_parameter(
            self, "camera_frame_id", "camera_optical_frame", "frame_id of camera messages",
            read_only=True)
        self.odom_frame_id = declare_parameter(
            self, "odom_frame_id", "odom", "frame_id of odometry", read_only=True)
        self.base_frame_id = declare_parameter(
            self, "base_frame_id", "base_link", "child_frame_id of odometry", read_only=True)
        width = declare_parameter(
            self, "camera_width", 160, "Camera image width in px", read_only=True,
            min_value=16, max_value=4096)
        height = declare_parameter(
            self, "camera_height", 120, "Camera image height in px", read_only=True,
            min_value=16, max_value=4096)

        if self.lighting not in LIGHTING_PRESETS:
            message = (f"lighting={self.lighting!r} is invalid; expected one of "
                       f"{', '.join(LIGHTING_PRESETS)}")
            self.get_logger().error(f"Cannot start: {message}")
            raise ValueError(message)

        self.period = 1.0 / self.camera_rate  # s
        self.sim = Simulator.from_layout(
            self.layout, seed=self.seed, config=SimConfig(camera_width=width, camera_height=height),
            lighting=self.lighting)
        self.sim.reset(progress=self.start_progress)
        self.stats = DriveStats()

        # Reliable camera frames: the recorder and lock-step drivers must see every
        # frame; best-effort subscribers still match a reliable publisher.
        self.image_pub = self.create_publisher(Image, "camera/image_raw", camera_qos(True, depth=10))
        self.camera_info_pub = self.create_publisher(
            CameraInfo, "camera/camera_info", camera_qos(True, depth=10))
        self.odom_pub = self.create_publisher(Odometry, "odom", COMMAND_QOS)
        self.clock_pub = self.create_publisher(Clock, "/clock", COMMAND_QOS)
        self.metrics_pub = self.create_publisher(DiagnosticArray, "sim/lane_metrics", COMMAND_QOS)
        self.cmd_sub = self.create_subscription(Twist, "cmd_vel", self.cmd_vel_callback, COMMAND_QOS)
        self.reset_srv = self.create_service(Trigger, "sim/reset", self.reset_callback)

        self.speed_cmd = 0.0  # m/s
        self.steering_cmd = 0.0  # rad
        self.last_cmd_wall = None  # monotonic s of the last command
        self.awaiting_command = False
        self.frame_published_wall = 0.0
        self.started = False
        self.reported_laps = 0
        self.reported_off_track = 0
        self.finished = False

        if self.lockstep:
            self.timer = self.create_timer(min(0.05, self.lockstep_timeout), self.lockstep_timer_callback)
        else:
            self.timer = self.create_timer(self.period, self.realtime_timer_callback)

        mode = "lock-step" if self.lockstep else "real-time"
        self.get_logger().info(
            f"Simulating layout '{self.layout}' (visual seed {self.seed}, lighting {self.lighting}, "
            f"track length {self.sim.track.length:.1f} m) at {self.camera_rate:.1f} Hz in {mode} mode")

    # Callbacks -------------------------------------------------------------

    def cmd_vel_callback(self, msg: Twist) -> None:
        speed = float(msg.linear.x)
        yaw_rate = float(msg.angular.z)
        if not (math.isfinite(speed) and math.isfinite(yaw_rate)):
            self.get_logger().error(
                f"Rejected cmd_vel with non-finite values (linear.x={speed}, angular.z={yaw_rate}); "
                "stopping the car", throttle_duration_sec=1.0)
            self.speed_cmd, self.steering_cmd = 0.0, 0.0
        else:
            self.speed_cmd = speed
            self.steering_cmd = steering_from_twist(
                speed, yaw_rate, self.sim.wheelbase, self.sim.config.max_steering)
        self.last_cmd_wall = time.monotonic()
        if self.lockstep and self.awaiting_command:
            self.advance()

    def realtime_timer_callback(self) -> None:
        if not self.started:
            self.publish_frame()
            self.started = True
            return
        if self.last_cmd_wall is None or time.monotonic() - self.last_cmd_wall > COMMAND_TIMEOUT_S:
            self.speed_cmd = 0.0
        self.advance()

    def lockstep_timer_callback(self) -> None:
        if not self.started:
            # A frame published before the driver and recorder are matched is lost.
            matched = self.image_pub.get_subscription_count() + self.odom_pub.get_subscription_count()
            if matched < self.min_subscribers:
                return
            self.started = True
            self.publish_frame()
            return
        waited = time.monotonic() - self.frame_published_wall
        if self.awaiting_command and waited > self.lockstep_timeout:
            self.get_logger().warning(
                f"No cmd_vel within lockstep_timeout={self.lockstep_timeout:.2f} s; "
                "stepping with the last command", throttle_duration_sec=5.0)
            self.advance()

    def reset_callback(self, request, response):
        self.sim.reset(progress=self.start_progress)
        self.stats = DriveStats()
        self.reported_laps = 0
        self.reported_off_track = 0
        response.success = True
        response.message = f"car placed at progress {self.start_progress:.2f} m"
        self.get_logger().info(f"Reset: {response.message}")
        return response

    # Simulation ------------------------------------------------------------

    def advance(self) -> None:
        """Apply the latest command, step one camera period and publish the new frame."""
        if self.finished:
            return
        self.awaiting_command = False
        self.sim.set_command(speed=self.speed_cmd, steering=self.steering_cmd)
        try:
            self.sim.step(self.period)
        except SimulationDiverged as error:
            self.get_logger().error(f"{error}; resetting the car to the start of its lane")
            self.sim.reset(progress=self.start_progress)
        self.publish_frame()
        self.check_progress()

    def publish_frame(self) -> None:
        sim_time = self.sim.time
        stamp = stamp_from_seconds(sim_time)
        self.clock_pub.publish(Clock(clock=stamp))

        height, width, encoding, step, data = rgb_to_image_fields(self.sim.render())
        image = Image()
        image.header.stamp = stamp
        image.header.frame_id = self.frame_id
        image.height, image.width, image.encoding, image.step = height, width, encoding, step
        image.is_bigendian = 0
        image.data = data
        self.camera_info_pub.publish(self.camera_info(stamp))
        self.odom_pub.publish(self.odometry(stamp))
        self.image_pub.publish(image)

        lane = self.sim.lane_state()
        self.stats.add(sim_time, lane.cross_track_error, lane.lap_count, lane.off_track_events,
                       lane.distance)
        self.metrics_pub.publish(self.lane_metrics(stamp, lane))

        self.frame_published_wall = time.monotonic()
        self.awaiting_command = self.lockstep

    def check_progress(self) -> None:
        lane = self.sim.lane_state()
        if lane.off_track_events > self.reported_off_track:
            self.reported_off_track = lane.off_track_events
            self.get_logger().warning(
                f"Off-track event {lane.off_track_events} at t={self.sim.time:.2f} s: "
                f"cross-track error {lane.cross_track_error:+.3f} m")
        if lane.lap_count > self.reported_laps:
            self.reported_laps = lane.lap_count
            self.get_logger().info(f"Lap {lane.lap_count} completed: {self.stats.summary().format()}")

        done_laps = self.stop_after_laps > 0 and lane.lap_count >= self.stop_after_laps
        done_time = self.stop_after_time > 0.0 and self.sim.time >= self.stop_after_time
        if done_laps or done_time:
            self.finished = True
            self.get_logger().info(f"Finished: {self.stats.summary().format()}")
            # Ends the executor's spin; main() then destroys the node.
            self.context.try_shutdown()

    # Message builders ------------------------------------------------------

    def camera_info(self, stamp: Time) -> CameraInfo:
        cam = self.sim.camera
        info = CameraInfo()
        info.header.stamp = stamp
        info.header.frame_id = self.frame_id
        info.width, info.height = cam.width, cam.height
        info.distortion_model = "plumb_bob"
        info.d = [0.0] * 5
        info.k = [cam.fx, 0.0, cam.cx, 0.0, cam.fy, cam.cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [cam.fx, 0.0, cam.cx, 0.0, 0.0, cam.fy, cam.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        return info

    def odometry(self, stamp: Time) -> Odometry:
        x, y, yaw = self.sim.pose
        vx, vy, yaw_rate = self.sim.velocity
        odom = Odometry()
        odom.header.stamp = stamp
        odom.header.frame_id = self.odom_frame_id
        odom.child_frame_id = self.base_frame_id
        odom.pose.pose.position.x = float(x)
        odom.pose.pose.position.y = float(y)
        odom.pose.pose.orientation.z = math.sin(yaw / 2.0)
        odom.pose.pose.orientation.w = math.cos(yaw / 2.0)
        odom.twist.twist.linear.x = float(vx)
        odom.twist.twist.linear.y = float(vy)
        odom.twist.twist.angular.z = float(yaw_rate)
        return odom

    def lane_metrics(self, stamp: Time, lane) -> DiagnosticArray:
        status = DiagnosticStatus()
        status.name = "sim_node: lane keeping"
        status.hardware_id = f"liquid_driver_sim/{self.layout}"
        status.level = DiagnosticStatus.WARN if lane.off_track else DiagnosticStatus.OK
        status.message = "off track" if lane.off_track else "in lane"
        values = {
            "sim_time": f"{self.sim.time:.4f}",
            "cross_track_error": f"{lane.cross_track_error:.5f}",
            "heading_error": f"{lane.heading_error:.5f}",
            "progress": f"{lane.progress:.4f}",
            "lap_count": str(lane.lap_count),
            "distance": f"{lane.distance:.4f}",
            "off_track": str(bool(lane.off_track)).lower(),
            "off_track_events": str(lane.off_track_events),
            "layout": self.layout,
            "seed": str(self.seed),
            "lighting": self.lighting,
        }
        status.values = [KeyValue(key=key, value=value) for key, value in values.items()]
        array = DiagnosticArray()
        array.header.stamp = stamp
        array.status = [status]
        return array

    def destroy_node(self):
        # Kilted's context shutdown destroys tracked nodes, and main() does too.
        if not self.shutting_down and self.sim is not None:
            self.shutting_down = True
            self.get_logger().info(f"Shutting down: {self.stats.summary().format()}")
            self.sim.close()
        return super().destroy_node()


def main(args=None) -> None:
    run_node(SimNode, args)


if __name__ == "__main__":
    main()
