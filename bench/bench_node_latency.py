"""Measure perception_node latency and CPU use over DDS at a fixed camera rate.

Starts perception_node as its own process (the shipped model, enabled, Twist
output), publishes rgb8 160 x 120 frames stamped with this machine's clock at
--rate Hz, and takes each command's arrival time minus the stamp of the newest
frame sent before it. That is the latency from image stamp to command as a
consumer on the same machine sees it: DDS both ways plus the node's work. It
also reports the node's preprocessing and inference time from /diagnostics and
the CPU time of the node process over the measurement.

    .venv/bin/python bench/bench_node_latency.py                 # 30 Hz, 20 s
    .venv/bin/python bench/bench_node_latency.py --rate 30 --seconds 60 --backend onnx --model m.onnx

Figures depend on the CPU and on other load; compare numbers from one machine only.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import Twist  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from liquid_driver.data.images import rgb_to_image_fields  # noqa: E402
from liquid_driver.nodes.common import COMMAND_QOS, camera_qos  # noqa: E402
from liquid_driver.tools.monitor import PERCEPTION_STATUS, status_values  # noqa: E402
from liquid_driver.tools.processes import NodeProcess, wait_until  # noqa: E402

WARM_UP_S = 2.0
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class BenchClient(Node):
    """Publish frames, record command arrivals and the node's diagnostics."""

    def __init__(self):
        super().__init__("bench_node_latency")
        self.lock = threading.Lock()
        self.last_stamp_ns: int | None = None
        self.latencies_ms: list[float] = []
        self.recording = False
        self.diagnostics: dict[str, str] | None = None
        self.image_pub = self.create_publisher(Image, "camera/image_raw", camera_qos(False, depth=1))
        self.cmd_sub = self.create_subscription(Twist, "cmd_vel", self.cmd_callback, COMMAND_QOS)
        self.diagnostics_sub = self.create_subscription(
            DiagnosticArray, "/diagnostics", self.diagnostics_callback, COMMAND_QOS)

    def publish_frame(self, msg: Image) -> None:
        now_ns = time.time_ns()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
        with self.lock:
            self.last_stamp_ns = now_ns
        self.image_pub.publish(msg)

    def cmd_callback(self, msg: Twist) -> None:
        arrived_ns = time.time_ns()
        with self.lock:
            if self.recording and self.last_stamp_ns is not None and msg.linear.x > 0.0:
                self.latencies_ms.append((arrived_ns - self.last_stamp_ns) / 1e6)

    def diagnostics_callback(self, msg: DiagnosticArray) -> None:
        values = status_values(msg, PERCEPTION_STATUS)
        if values is not None:
            self.diagnostics = values


def process_cpu_seconds(pid: int) -> float:
    """Return user plus system CPU seconds of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S  # utime, stime


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate in Hz (default 30)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement time in s")
    parser.add_argument("--model", default="", help="model file (default: the shipped model)")
    parser.add_argument("--backend", default="torch", help="torch or onnx")
    parser.add_argument("--threads", type=int, default=1, help="inference threads of the node")
    args = parser.parse_args(argv)

    rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    frame = Image()
    frame.height, frame.width, frame.encoding, frame.step, frame.data = rgb_to_image_fields(rgb)

    rclpy.init()
    client = BenchClient()
    executor = SingleThreadedExecutor()
    executor.add_node(client)
    spin_thread = threading.Thread(target=executor.spin, daemon=True)
    spin_thread.start()
    log_path = Path(tempfile.mkdtemp(prefix="bench_node_latency_")) / "perception_node.log"
    node = NodeProcess("perception_node", {
        "model_path": args.model, "backend": args.backend, "threads": args.threads,
        "start_enabled": True}, log_path=log_path)
    try:
        wait_until(lambda: client.image_pub.get_subscription_count() > 0, 60.0,
                   description="perception_node to subscribe the camera")
        period = 1.0 / args.rate
        deadline = time.monotonic() + WARM_UP_S + args.seconds
        next_frame = time.monotonic()
        cpu_start = wall_start = None
        frames = 0
        while time.monotonic() < deadline:
            if cpu_start is None and time.monotonic() > deadline - args.seconds:
                cpu_start, wall_start = process_cpu_seconds(node.process.pid), time.monotonic()
                with client.lock:
                    client.recording = True
            client.publish_frame(frame)
            frames += cpu_start is not None
            next_frame += period
            time.sleep(max(0.0, next_frame - time.monotonic()))
        cpu_used = process_cpu_seconds(node.process.pid) - cpu_start
        wall = time.monotonic() - wall_start
        time.sleep(1.5)  # one more diagnostics period
        with client.lock:
            client.recording = False
            latencies = np.array(client.latencies_ms)
        diagnostics = client.diagnostics or {}
    finally:
        node.stop()
        executor.shutdown()
        client.destroy_node()
        rclpy.try_shutdown()

    if latencies.size == 0:
        print(f"error: no command arrived; see {log_path}", file=sys.stderr)
        return 1
    print(f"perception_node, {args.backend} backend, {args.threads} thread(s), "
          f"{args.rate:.0f} Hz for {args.seconds:.0f} s on {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print("| figure | value |")
    print("| --- | --- |")
    print(f"| frames sent / commands received | {frames} / {latencies.size} |")
    print(f"| stamp to command p50 | {np.percentile(latencies, 50):.2f} ms |")
    print(f"| stamp to command p99 | {np.percentile(latencies, 99):.2f} ms |")
    print(f"| node preprocessing + inference p50 (diagnostics) | {diagnostics.get('latency_p50_ms', '?')} ms |")
    print(f"| node preprocessing + inference p99 (diagnostics) | {diagnostics.get('latency_p99_ms', '?')} ms |")
    print(f"| node CPU use | {100.0 * cpu_used / wall:.0f} % of one core |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
