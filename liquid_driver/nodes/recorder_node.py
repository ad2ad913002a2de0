"""Record demonstrations into a rosbag2 MCAP file.

Subscribes each configured topic with `raw=True`, so messages arrive as the
CDR bytes that go into the bag unchanged: nothing is deserialised and every
message the node receives is written, stamped with its receive time. Topic
types come from the `types` parameter or from the ROS graph once a publisher
appears. The bag is closed on Ctrl-C and on any other shutdown.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.qos import ReliabilityPolicy

from liquid_driver.data.bag import BagWriter
from liquid_driver.nodes.common import COMMAND_QOS, camera_qos, declare_parameter, run_node

DEFAULT_TOPICS = ["/camera/image_raw", "/cmd_vel", "/odom", "/driving_mode"]
DISCOVERY_PERIOD_S = 0.5
SUMMARY_PERIOD_S = 10.0
DIAGNOSTICS_PERIOD_S = 1.0
STATUS_NAME = "recorder_node: recording"
# Deep reliable queues: a burst of frames while the disk is slow must wait in
# memory instead of being dropped.
RECORD_QUEUE_DEPTH = 200


def import_message_type(type_name: str):
    """Return the message class for a name such as 'sensor_msgs/msg/Image'."""
    parts = type_name.split("/")
    if len(parts) != 3 or parts[1] != "msg":
        raise ValueError(
            f"message type {type_name!r} is not of the form 'package/msg/Type', "
            "for example 'sensor_msgs/msg/Image'")
    package, _, name = parts
    try:
        module = importlib.import_module(f"{package}.msg")
        return getattr(module, name)
    except (ImportError, AttributeError) as error:
        raise ValueError(
            f"message type {type_name!r} is not available in this Python environment ({error}); "
            "install or source the package that defines it") from error


class RecorderNode(Node):
    """Write every message of the configured topics into one MCAP bag."""

    def __init__(self):
        super().__init__("recorder_node")
        self.shutting_down = False
        self.topics = list(declare_parameter(
            self, "topics", DEFAULT_TOPICS, "Topics to record", read_only=True))
        types = list(declare_parameter(
            self, "types", [""],
            "Message types matching `topics` (e.g. sensor_msgs/msg/Image); empty entries "
            "are looked up in the ROS graph", read_only=True))
        output = declare_parameter(
            self, "output", "bags/demo", "Bag directory to create (must not exist)",
            read_only=True)
        storage = declare_parameter(
            self, "storage", "mcap", "rosbag2 storage plugin: mcap or sqlite3", read_only=True)

        self.topics = [self.resolve_topic_name(topic) for topic in self.topics]
        given = [t for t in types if t]
        if given and len(types) != len(self.topics):
            raise ValueError(
                f"types has {len(types)} entries but topics has {len(self.topics)}; "
                "give one type per topic, or leave types empty to discover them")
        self.pending_types = {topic: (types[i] if given else "") for i, topic in enumerate(self.topics)}

        self.output = Path(output)
        self.writer = BagWriter(self.output, storage=storage)
        self.subscriptions_by_topic = {}
        self.received = {topic: 0 for topic in self.topics}

        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", COMMAND_QOS)
        self.discovery_timer = self.create_timer(DISCOVERY_PERIOD_S, self.discovery_callback)
        self.diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self.diagnostics_callback)
        self.summary_timer = self.create_timer(SUMMARY_PERIOD_S, self.summary_callback)
        self.discovery_callback()
        self.get_logger().info(f"Recording {', '.join(self.topics)} into {self.output} ({storage})")

    def discovery_callback(self) -> None:
        """Subscribe each topic whose type is known, from the parameter or the graph."""
        graph = dict(self.get_topic_names_and_types())
        for topic, type_name in list(self.pending_types.items()):
            if not type_name:
                graph_types = graph.get(topic, [])
                if not graph_types:
                    continue  # No publisher yet; check again on the next tick.
                if len(graph_types) > 1:
                    self.get_logger().error(
                        f"Topic {topic} has several types {graph_types}; set the `types` parameter",
                        throttle_duration_sec=10.0)
                    continue
                type_name = graph_types[0]
            self.subscribe(topic, type_name)
            del self.pending_types[topic]
        if not self.pending_types:
            self.discovery_timer.cancel()

    def subscribe(self, topic: str, type_name: str) -> None:
        message_type = import_message_type(type_name)
        self.writer.add_topic(topic, type_name)
        # A reliable subscription does not match a best-effort publisher, so
        # follow the publishers: reliable unless one of them is best effort.
        publishers = self.get_publishers_info_by_topic(topic)
        reliable = all(
            info.qos_profile.reliability != ReliabilityPolicy.BEST_EFFORT for info in publishers)
        qos = camera_qos(reliable=reliable, depth=RECORD_QUEUE_DEPTH)

        def record_callback(data: bytes, topic: str = topic) -> None:
            self.received[topic] += 1
            self.writer.write(topic, self.get_clock().now().nanoseconds, data)

        self.subscriptions_by_topic[topic] = self.create_subscription(
            message_type, topic, record_callback, qos, raw=True)
        self.get_logger().info(
            f"Subscribed {topic} [{type_name}] ({'reliable' if reliable else 'best effort'})")

    def diagnostics_callback(self) -> None:
        written = self.writer.message_counts
        status = DiagnosticStatus(name=STATUS_NAME, hardware_id=str(self.output))
        status.level = DiagnosticStatus.WARN if self.pending_types else DiagnosticStatus.OK
        status.message = (f"waiting for {len(self.pending_types)} topic(s)" if self.pending_types
                          else "recording")
        status.values = [KeyValue(key=f"{topic} received", value=str(count))
                         for topic, count in self.received.items()]
        status.values += [KeyValue(key=f"{topic} written", value=str(written.get(topic, 0)))
                          for topic in self.received]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def summary_callback(self) -> None:
        counts = ", ".join(f"{topic}: {count}" for topic, count in self.received.items())
        self.get_logger().info(f"Messages written: {counts}")
        for topic in self.pending_types:
            self.get_logger().warn(f"No publisher seen yet on {topic}; it is not being recorded")

    def destroy_node(self):
        # Kilted's context shutdown destroys tracked nodes, and main() does too.
        if not self.shutting_down:
            self.shutting_down = True
            self.writer.close()
            counts = ", ".join(f"{topic}: {count}" for topic, count in self.received.items())
            self.get_logger().info(f"Closed {self.output}; messages written: {counts}")
        return super().destroy_node()


def main(args=None) -> None:
    run_node(RecorderNode, args)


if __name__ == "__main__":
    main()
