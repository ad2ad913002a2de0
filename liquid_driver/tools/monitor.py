"""A ROS 2 node that watches a drive: path, lane metrics and the driver's diagnostics."""

from __future__ import annotations

import threading

from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.node import Node

from liquid_driver.metrics import DriveStats
from liquid_driver.nodes.common import COMMAND_QOS

LANE_METRICS_STATUS = "sim_node: lane keeping"
PERCEPTION_STATUS = "perception_node: inference"


def status_values(array: DiagnosticArray, name: str) -> dict[str, str] | None:
    """Return the key/value pairs of the status called name, or None if absent."""
    for status in array.status:
        if status.name == name:
            return {item.key: item.value for item in status.values}
    return None


class DriveMonitor(Node):
    """Collect odometry, the simulator's lane metrics and the perception node's diagnostics.

    Callbacks run on the spinning thread; readers on other threads take the lock.
    """

    def __init__(self):
        super().__init__("drive_monitor")
        self.lock = threading.Lock()
        self.path: list[tuple[float, float]] = []
        self.lane_metrics: dict[str, str] | None = None
        self.perception: dict[str, str] | None = None
        self.off_track_points: list[tuple[float, float]] = []
        self.stats = DriveStats()
        self._was_off_track = False
        self.odom_sub = self.create_subscription(Odometry, "odom", self.odom_callback, COMMAND_QOS)
        self.metrics_sub = self.create_subscription(
            DiagnosticArray, "sim/lane_metrics", self.lane_metrics_callback, COMMAND_QOS)
        self.diagnostics_sub = self.create_subscription(
            DiagnosticArray, "/diagnostics", self.diagnostics_callback, COMMAND_QOS)

    def odom_callback(self, msg: Odometry) -> None:
        with self.lock:
            self.path.append((msg.pose.pose.position.x, msg.pose.pose.position.y))

    def lane_metrics_callback(self, msg: DiagnosticArray) -> None:
        values = status_values(msg, LANE_METRICS_STATUS)
        if values is None:
            return
        with self.lock:
            self.lane_metrics = values
            self.stats.add(
                sim_time=float(values["sim_time"]),
                cross_track_error=float(values["cross_track_error"]),
                lap_count=int(values["lap_count"]),
                off_track_events=int(values["off_track_events"]),
                distance=float(values["distance"]),
            )
            off_track = values.get("off_track") == "true"
            if off_track and not self._was_off_track and self.path:
                self.off_track_points.append(self.path[-1])
            self._was_off_track = off_track

    def diagnostics_callback(self, msg: DiagnosticArray) -> None:
        values = status_values(msg, PERCEPTION_STATUS)
        if values is not None:
            with self.lock:
                self.perception = values

    def laps(self) -> int:
        with self.lock:
            return int(self.lane_metrics["lap_count"]) if self.lane_metrics else 0
