"""Helpers for tests that talk to node processes over DDS."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from liquid_driver.nodes.common import COMMAND_QOS, camera_qos

DISCOVERY_TIMEOUT_S = 15.0


class Probe:
    """A node in the test process that records what arrives on chosen topics.

    It spins on a background thread; `received[topic]` lists messages in order.
    """

    def __init__(self, name: str = "test_probe"):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.received: dict[str, list] = defaultdict(list)
        self.publishers = {}
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def subscribe(self, msg_type, topic: str, qos=None) -> None:
        def callback(msg, topic=topic):
            with self.lock:
                self.received[topic].append(msg)

        self.node.create_subscription(msg_type, topic, callback, qos or COMMAND_QOS)

    def publisher(self, msg_type, topic: str, camera: bool = False, depth: int | None = None):
        """Create a reliable publisher; depth bounds how many unacknowledged messages it keeps."""
        qos = camera_qos(reliable=True, depth=50) if camera else COMMAND_QOS
        if depth is not None:
            qos.depth = depth
        publisher = self.node.create_publisher(msg_type, topic, qos)
        self.publishers[topic] = publisher
        return publisher

    def messages(self, topic: str) -> list:
        with self.lock:
            return list(self.received[topic])

    def count(self, topic: str) -> int:
        with self.lock:
            return len(self.received[topic])

    def clear(self, topic: str) -> None:
        with self.lock:
            self.received[topic].clear()

    def wait_for(self, condition, timeout: float, description: str):
        """Poll condition() until truthy; fail the test naming what was awaited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = condition()
            if result:
                return result
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout:.1f} s waiting for {description}")

    def wait_for_messages(self, topic: str, count: int = 1, timeout: float = DISCOVERY_TIMEOUT_S):
        self.wait_for(lambda: self.count(topic) >= count, timeout,
                      f"{count} message(s) on {topic} (got {self.count(topic)})")
        return self.messages(topic)

    def wait_for_subscribers(self, topic: str, count: int = 1, timeout: float = DISCOVERY_TIMEOUT_S):
        publisher = self.publishers[topic]
        self.wait_for(lambda: publisher.get_subscription_count() >= count, timeout,
                      f"{count} subscriber(s) on {topic}")

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.thread.join(timeout=5.0)
