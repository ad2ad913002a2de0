"""Record demonstrations into rosbag2 MCAP (or sqlite3) bags, one or more per episode.

Subscribes each configured topic with `raw=True`, so messages arrive as the
CDR bytes that go into the bag unchanged and are stamped with their receive
time. Only raw images are deserialised, and only when `image_width` and
`image_height` ask for downscaling. Topic types come from the `types`
parameter or from the ROS graph once a publisher appears.

Recording starts at once by default (`start_recording`), on the service
`~/set_recording` (std_srvs/SetBool), on a std_msgs/Bool topic (`toggle_topic`,
for a joystick button) or when the odometry speed first exceeds
`auto_start_speed`. Each start begins an episode: the first bag is `output`,
later episodes and size or duration splits are `output_NNN` beside it. Every
bag stores the episode metadata in the `custom_data` of its metadata.yaml.

The node counts received and written messages per topic on /diagnostics,
warns when a topic falls silent for longer than `gap_warning`, and stops
recording with an error when the free disk space falls below
`min_free_space_mb`. The bag is closed on Ctrl-C and on any other shutdown.
"""

from __future__ import annotations

import datetime
import importlib
import json
import shutil
import time
import uuid
from pathlib import Path

import cv2
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Bool
from std_srvs.srv import SetBool

from liquid_driver import __version__ as SOFTWARE_VERSION
from liquid_driver.data.bag import BagWriter
from liquid_driver.data.images import image_to_rgb, rgb_to_image_fields
from liquid_driver.nodes.common import COMMAND_QOS, camera_qos, declare_parameter, run_node

DEFAULT_TOPICS = ["/camera/image_raw", "/cmd_vel", "/odom", "/driving_mode"]
IMAGE_TYPE = "sensor_msgs/msg/Image"
DISCOVERY_PERIOD_S = 0.5
SUMMARY_PERIOD_S = 10.0
DIAGNOSTICS_PERIOD_S = 1.0
STATUS_NAME = "recorder_node: recording"
# Key of the episode JSON in the custom_data of metadata.yaml.
CUSTOM_DATA_KEY = "liquid_driver.episode"
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


def bag_path(output: Path, index: int) -> Path:
    """Return the directory of the `index`-th bag (0-based) of a recording: output, output_001, ..."""
    return output if index == 0 else output.with_name(f"{output.name}_{index:03d}")


class RecorderNode(Node):
    """Write the configured topics into rosbag2 bags, one episode at a time."""

    def __init__(self):
        super().__init__("recorder_node")
        self.shutting_down = False
        self._declare_parameters()
        self.add_on_set_parameters_callback(self.parameters_callback)

        self.topics = [self.resolve_topic_name(topic) for topic in self.topics]
        types_given = [t for t in self.types if t]
        if types_given and len(self.types) != len(self.topics):
            raise ValueError(
                f"types has {len(self.types)} entries but topics has {len(self.topics)}; "
                "give one type per topic, or leave types empty to discover them")
        self.pending_types = {
            topic: (self.types[i] if types_given else "") for i, topic in enumerate(self.topics)}
        self.topic_types: dict[str, str] = {}

        self.writer: BagWriter | None = None
        self.bag_index = 0
        self.episode_index = 0
        self.episode_id = ""
        self.episode_part = 0
        self.bag_started = 0.0
        self.bag_started_iso = ""
        self.stop_reason = ""
        self.received = {topic: 0 for topic in self.topics}
        self.written = {topic: 0 for topic in self.topics}
        self.gaps = {topic: 0 for topic in self.topics}
        self.last_receive: dict[str, float] = {}
        self.subscriptions_by_topic = {}

        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", COMMAND_QOS)
        self.set_recording_srv = self.create_service(
            SetBool, "~/set_recording", self.set_recording_callback)
        if self.toggle_topic:
            self.toggle_sub = self.create_subscription(
                Bool, self.toggle_topic, self.toggle_callback, COMMAND_QOS)
        if self.auto_start_speed > 0.0:
            self.odom_sub = self.create_subscription(
                Odometry, self.odom_topic, self.odom_callback, camera_qos(reliable=False, depth=5))
        self.discovery_timer = self.create_timer(DISCOVERY_PERIOD_S, self.discovery_callback)
        self.diagnostics_timer = self.create_timer(DIAGNOSTICS_PERIOD_S, self.diagnostics_callback)
        self.summary_timer = self.create_timer(SUMMARY_PERIOD_S, self.summary_callback)
        if self.start_recording:
            self.start_episode("start_recording parameter")
        self.discovery_callback()
        self.get_logger().info(
            f"Topics {', '.join(self.topics)}; {'recording' if self.writer else 'waiting for a start'} "
            f"into {self.output} ({self.storage})")

    def _declare_parameters(self) -> None:
        self.topics = list(declare_parameter(
            self, "topics", DEFAULT_TOPICS, "Topics to record", read_only=True))
        self.types = list(declare_parameter(
            self, "types", [""],
            "Message types matching `topics` (e.g. sensor_msgs/msg/Image); empty entries "
            "are looked up in the ROS graph", read_only=True))
        self.output = Path(declare_parameter(
            self, "output", "bags/demo",
            "Bag directory of the first episode (must not exist); later ones get _001, _002, ...",
            read_only=True))
        self.storage = declare_parameter(
            self, "storage", "mcap", "rosbag2 storage plugin: mcap or sqlite3", read_only=True)
        self.start_recording = declare_parameter(
            self, "start_recording", True,
            "Start the first episode at once; otherwise wait for the service, the toggle topic "
            "or the auto-start speed", read_only=True)

        self.toggle_topic = declare_parameter(
            self, "toggle_topic", "~/record",
            "std_msgs/Bool topic: true starts an episode, false stops it (empty: none)",
            read_only=True)
        self.auto_start_speed = declare_parameter(
            self, "auto_start_speed", 0.0,
            "Start an episode when the odometry speed exceeds this, m/s (0: off)",
            min_value=0.0, max_value=10.0)
        self.odom_topic = declare_parameter(
            self, "odom_topic", "/odom", "Odometry topic for auto_start_speed", read_only=True)
        self.image_width = declare_parameter(
            self, "image_width", 0,
            "Downscale raw images to this width before writing, px (0: keep the size)",
            min_value=0, max_value=4096, read_only=True)
        self.image_height = declare_parameter(
            self, "image_height", 0,
            "Downscale raw images to this height before writing, px (0: keep the size)",
            min_value=0, max_value=4096, read_only=True)

        self.max_bag_size_mb = declare_parameter(
            self, "max_bag_size_mb", 0.0,
            "Continue the episode in a new bag once a bag reaches this size, MB (0: no limit)",
            min_value=0.0, max_value=1.0e6)
        self.max_bag_duration = declare_parameter(
            self, "max_bag_duration", 0.0,
            "Continue the episode in a new bag after this long, s (0: no limit)",
            min_value=0.0, max_value=1.0e6)
        self.min_free_space_mb = declare_parameter(
            self, "min_free_space_mb", 500.0,
            "Stop recording with an error when the free disk space falls below this, MB",
            min_value=0.0, max_value=1.0e7)
        self.gap_warning = declare_parameter(
            self, "gap_warning", 1.0,
            "Warn when a recorded topic receives nothing for this long while recording, s",
            min_value=0.01, max_value=3600.0)

        self.metadata = {
            name: declare_parameter(self, name, "", description, read_only=False)
            for name, description in (
                ("vehicle", "Vehicle name, stored with each episode"),
                ("place", "Track or place, stored with each episode"),
                ("simulator", "Simulator and layout, empty for a real car"),
                ("operator_note", "Free text from the operator, stored with each episode"),
                ("model_version", "Model that drove, if any, stored with each episode"),
            )
        }
        if (self.image_width == 0) != (self.image_height == 0):
            raise ValueError(
                f"image_width {self.image_width} and image_height {self.image_height} must both be "
                "0 (keep the size) or both positive")

    def parameters_callback(self, parameters) -> SetParametersResult:
        """Accept metadata and limit changes; they apply from the next episode or check."""
        for parameter in parameters:
            if parameter.name in self.metadata:
                if not isinstance(parameter.value, str):
                    return SetParametersResult(
                        successful=False, reason=f"{parameter.name} must be a string")
                self.metadata[parameter.name] = parameter.value
            elif parameter.name in ("auto_start_speed", "max_bag_size_mb", "max_bag_duration",
                                    "min_free_space_mb", "gap_warning"):
                setattr(self, parameter.name, float(parameter.value))
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------
    # Episodes

    @property
    def recording(self) -> bool:
        """Whether an episode is being written."""
        return self.writer is not None

    def start_episode(self, trigger: str) -> str:
        """Open the first bag of a new episode; return a message for the caller."""
        if self.recording:
            return f"already recording episode {self.episode_index} into {self.writer.path}"
        free_mb = self._free_space_mb()
        if free_mb < self.min_free_space_mb:
            message = (f"not starting: {free_mb:.0f} MB free at {self.output.parent}, below "
                       f"min_free_space_mb {self.min_free_space_mb:.0f} MB; free disk space")
            self.get_logger().error(message)
            return message
        self.episode_index += 1
        self.episode_id = uuid.uuid4().hex
        self.episode_part = 0
        self.last_receive.clear()
        self._open_bag()
        message = f"started episode {self.episode_index} ({trigger}) in {self.writer.path}"
        self.get_logger().info(message)
        return message

    def stop_episode(self, reason: str) -> str:
        """Close the current bag; return a message for the caller."""
        if not self.recording:
            return "not recording"
        path = self.writer.path
        self._close_bag(reason)
        message = f"stopped episode {self.episode_index} ({reason}); last bag {path}"
        self.get_logger().info(message)
        return message

    def _open_bag(self) -> None:
        path = bag_path(self.output, self.bag_index)
        while path.exists():
            self.bag_index += 1
            path = bag_path(self.output, self.bag_index)
        self.bag_index += 1
        writer = BagWriter(path, storage=self.storage)
        try:
            for topic, type_name in self.topic_types.items():
                writer.add_topic(topic, type_name)
        except BaseException:
            # Close what was opened, so that a Ctrl-C or a bad type leaves a readable bag.
            writer.close()
            raise
        self.writer = writer
        self.bag_started = time.monotonic()
        self.bag_started_iso = datetime.datetime.now(datetime.timezone.utc).isoformat()
        self.stop_reason = ""

    def _close_bag(self, reason: str) -> None:
        writer, self.writer = self.writer, None
        info = {
            "id": self.episode_id,
            "index": self.episode_index,
            "part": self.episode_part,
            "started": self.bag_started_iso,
            "stop_reason": reason,
            "software_version": SOFTWARE_VERSION,
            "topics": self.topic_types,
            "image_size": [self.image_width, self.image_height] if self.image_width else None,
            **self.metadata,
        }
        writer.set_custom_data(CUSTOM_DATA_KEY, json.dumps(info))
        writer.close()

    def _split_if_needed(self) -> None:
        too_big = self.max_bag_size_mb > 0 and self.writer.storage_bytes() >= self.max_bag_size_mb * 1e6
        too_long = (self.max_bag_duration > 0
                    and time.monotonic() - self.bag_started >= self.max_bag_duration)
        if too_big or too_long:
            old = self.writer.path
            self._close_bag("split by size" if too_big else "split by duration")
            self.episode_part += 1
            self._open_bag()
            self.get_logger().info(f"Continuing episode {self.episode_index} in {self.writer.path} after {old}")

    def _free_space_mb(self) -> float:
        folder = self.output.parent if self.output.parent.exists() else Path(".")
        return shutil.disk_usage(folder).free / 1e6

    # ------------------------------------------------------------------
    # Triggers

    def set_recording_callback(self, request, response):
        if request.data:
            response.message = self.start_episode("service")
        else:
            response.message = self.stop_episode("service")
        response.success = self.recording == request.data
        return response

    def toggle_callback(self, msg: Bool) -> None:
        if msg.data and not self.recording:
            self.start_episode(f"{self.toggle_topic} true")
        elif not msg.data and self.recording:
            self.stop_episode(f"{self.toggle_topic} false")

    def odom_callback(self, msg: Odometry) -> None:
        if self.recording or self.auto_start_speed <= 0.0:
            return
        speed = abs(msg.twist.twist.linear.x)
        if speed > self.auto_start_speed:
            self.start_episode(f"speed {speed:.2f} m/s above auto_start_speed")

    # ------------------------------------------------------------------
    # Subscriptions

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
        self.topic_types[topic] = type_name
        if self.writer is not None:
            self.writer.add_topic(topic, type_name)
        # A reliable subscription does not match a best-effort publisher, so
        # follow the publishers: reliable unless one of them is best effort.
        publishers = self.get_publishers_info_by_topic(topic)
        reliable = all(
            info.qos_profile.reliability != ReliabilityPolicy.BEST_EFFORT for info in publishers)
        qos = camera_qos(reliable=reliable, depth=RECORD_QUEUE_DEPTH)
        downscale = type_name == IMAGE_TYPE and self.image_width > 0

        def record_callback(data: bytes, topic: str = topic) -> None:
            self.record(topic, data, downscale)

        self.subscriptions_by_topic[topic] = self.create_subscription(
            message_type, topic, record_callback, qos, raw=True)
        self.get_logger().info(
            f"Subscribed {topic} [{type_name}] ({'reliable' if reliable else 'best effort'}"
            f"{f', downscaled to {self.image_width}x{self.image_height}' if downscale else ''})")

    def record(self, topic: str, data: bytes, downscale: bool) -> None:
        """Write one received message into the current bag, if recording.

        Messages that arrive between episodes are not counted as received.
        """
        if self.writer is None:
            return
        self.received[topic] += 1
        now = time.monotonic()
        previous = self.last_receive.get(topic)
        if previous is not None and now - previous > self.gap_warning:
            self.gaps[topic] += 1
            self.get_logger().warning(
                f"No message on {topic} for {now - previous:.2f} s (gap_warning {self.gap_warning} s)",
                throttle_duration_sec=5.0)
        self.last_receive[topic] = now
        if downscale:
            data = self.downscale_image(data)
        self.writer.write(topic, self.get_clock().now().nanoseconds, data)
        self.written[topic] += 1

    def downscale_image(self, data: bytes) -> bytes:
        """Return the CDR bytes of the image resized to image_width x image_height (rgb8)."""
        msg = deserialize_message(data, Image)
        rgb = image_to_rgb(msg)
        resized = cv2.resize(rgb, (self.image_width, self.image_height), interpolation=cv2.INTER_AREA)
        height, width, encoding, step, pixels = rgb_to_image_fields(resized)
        small = Image(header=msg.header, height=height, width=width, encoding=encoding, step=step,
                      data=pixels)
        return serialize_message(small)

    # ------------------------------------------------------------------
    # Periodic checks

    def diagnostics_callback(self) -> None:
        if self.writer is not None:
            free_mb = self._free_space_mb()
            if free_mb < self.min_free_space_mb:
                self.stop_reason = (f"disk nearly full: {free_mb:.0f} MB free, below "
                                    f"min_free_space_mb {self.min_free_space_mb:.0f} MB")
                self.get_logger().error(f"Stopping the recording: {self.stop_reason}")
                self.stop_episode(self.stop_reason)
            else:
                self._split_if_needed()

        status = DiagnosticStatus(name=STATUS_NAME, hardware_id=str(self.output))
        if self.stop_reason:
            status.level = DiagnosticStatus.ERROR
            status.message = self.stop_reason
        elif self.pending_types:
            status.level = DiagnosticStatus.WARN
            status.message = f"waiting for {len(self.pending_types)} topic(s)"
        else:
            status.level = DiagnosticStatus.OK
            status.message = "recording" if self.recording else "idle"
        status.values = [
            KeyValue(key="recording", value=str(self.recording).lower()),
            KeyValue(key="episode", value=str(self.episode_index)),
            KeyValue(key="bag", value=str(self.writer.path) if self.writer else ""),
        ]
        for topic in self.received:
            status.values += [
                KeyValue(key=f"{topic} received", value=str(self.received[topic])),
                KeyValue(key=f"{topic} written", value=str(self.written[topic])),
                KeyValue(key=f"{topic} gaps", value=str(self.gaps[topic])),
            ]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def summary_callback(self) -> None:
        counts = ", ".join(
            f"{topic}: {self.written[topic]}/{self.received[topic]}" for topic in self.received)
        self.get_logger().info(f"Messages written/received: {counts}")
        for topic in self.pending_types:
            self.get_logger().warning(f"No publisher seen yet on {topic}; it is not being recorded")

    def destroy_node(self):
        # Kilted's context shutdown destroys tracked nodes, and main() does too.
        if not self.shutting_down:
            self.shutting_down = True
            if self.writer is not None:
                self.stop_episode("shutdown")
            counts = ", ".join(f"{topic}: {count}" for topic, count in self.written.items())
            self.get_logger().info(f"Closed {self.output}; messages written: {counts}")
        return super().destroy_node()


def main(args=None) -> None:
    run_node(RecorderNode, args)


if __name__ == "__main__":
    main()
