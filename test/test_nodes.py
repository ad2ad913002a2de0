"""Node behaviour over real DDS: each node runs in its own process, as deployed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from nav_msgs.msg import Odometry
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import String

from liquid_driver.tools.monitor import status_values
from liquid_driver.tools.processes import NodeProcess
from ros_helpers import Probe

pytestmark = pytest.mark.timeout(120)

CAMERA_PERIOD_S = 0.05


@pytest.fixture
def probe():
    probe = Probe()
    yield probe
    probe.close()


@pytest.fixture
def node_processes(tmp_path):
    """Start node processes; stop every one of them at the end of the test."""
    started = []

    def start(node, parameters):
        process = NodeProcess(node, parameters, log_path=tmp_path / f"{node}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def stamp_seconds(msg) -> float:
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def yaw_of(odom: Odometry) -> float:
    q = odom.pose.pose.orientation
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


def test_sim_node_lockstep_topics(probe, node_processes):
    probe.subscribe(Image, "/camera/image_raw", qos=None)
    probe.subscribe(CameraInfo, "/camera/camera_info")
    probe.subscribe(Odometry, "/odom")
    probe.subscribe(Clock, "/clock")
    probe.subscribe(DiagnosticArray, "/sim/lane_metrics")
    cmd_pub = probe.publisher(Twist, "/cmd_vel")
    node_processes("sim_node", {"layout": "oval", "lockstep": True, "min_subscribers": 2,
                                "lockstep_timeout": 30.0})

    first = probe.wait_for_messages("/camera/image_raw")[0]
    assert first.encoding == "rgb8"
    assert (first.width, first.height) == (160, 120)
    assert first.step == 160 * 3
    assert len(first.data) == first.step * first.height
    assert first.header.frame_id == "camera_optical_frame"
    info = probe.wait_for_messages("/camera/camera_info")[0]
    assert info.k[0] > 0.0  # fx
    assert info.k[4] > 0.0  # fy
    assert probe.wait_for_messages("/clock")
    metrics = status_values(probe.wait_for_messages("/sim/lane_metrics")[0], "sim_node: lane keeping")
    assert metrics is not None
    assert abs(float(metrics["cross_track_error"])) < 0.05

    # Lock-step: each command advances the simulation by exactly one camera period.
    probe.wait_for_subscribers("/cmd_vel")
    start_odom = probe.wait_for_messages("/odom")[0]
    steps = 20
    for i in range(steps):
        twist = Twist()
        twist.linear.x = 1.0
        twist.angular.z = 0.8
        cmd_pub.publish(twist)
        probe.wait_for_messages("/camera/image_raw", count=i + 2)

    images = probe.messages("/camera/image_raw")
    stamps = np.array([stamp_seconds(m) for m in images])
    assert np.allclose(np.diff(stamps), CAMERA_PERIOD_S, atol=1e-6)
    end_odom = probe.wait_for_messages("/odom", count=steps + 1)[-1]
    moved = math.hypot(end_odom.pose.pose.position.x - start_odom.pose.pose.position.x,
                       end_odom.pose.pose.position.y - start_odom.pose.pose.position.y)
    assert moved > 0.3, "1 m/s for 1 s of simulation should move the car clearly forward"
    turned = math.remainder(yaw_of(end_odom) - yaw_of(start_odom), math.tau)
    assert turned > 0.1, "a positive yaw rate must turn the car left (counter-clockwise)"


def test_sim_node_lighting_dusk(probe, node_processes):
    probe.subscribe(Image, "/camera/image_raw", qos=None)
    probe.subscribe(DiagnosticArray, "/sim/lane_metrics")
    node_processes("sim_node", {"layout": "oval", "lighting": "dusk", "lockstep": True,
                                "min_subscribers": 1, "lockstep_timeout": 30.0})

    image = probe.wait_for_messages("/camera/image_raw")[0]
    pixels = np.frombuffer(bytes(image.data), dtype=np.uint8)
    assert pixels.size == 160 * 120 * 3
    assert pixels.std() > 5.0, "a blank frame"
    metrics = status_values(probe.wait_for_messages("/sim/lane_metrics")[0], "sim_node: lane keeping")
    assert metrics["lighting"] == "dusk"


def test_sim_node_rejects_unknown_lighting(node_processes):
    process = node_processes("sim_node", {"layout": "oval", "lighting": "dawn"})
    code = process.wait(timeout=60.0)
    assert code not in (None, 0), "sim_node should exit with an error"
    log = process.log_text()
    assert "lighting='dawn' is invalid" in log
    assert "dusk" in log


def test_expert_node_answers_odometry(probe, node_processes):
    probe.subscribe(Twist, "/cmd_vel")
    probe.subscribe(String, "/driving_mode")
    odom_pub = probe.publisher(Odometry, "/odom")
    node_processes("expert_node", {"layout": "oval", "speed": 1.2})
    probe.wait_for_subscribers("/odom")

    from liquid_driver.sim import make_track

    track = make_track("oval")
    odom = Odometry()
    # Start on the centreline itself: the expert steers toward its lane.
    odom.pose.pose.position.x = float(track.points[0][0])
    odom.pose.pose.position.y = float(track.points[0][1])
    odom.pose.pose.orientation.w = 1.0
    odom.twist.twist.linear.x = 1.0
    for _ in range(3):
        odom_pub.publish(odom)
    commands = probe.wait_for_messages("/cmd_vel")
    modes = probe.wait_for_messages("/driving_mode")
    assert commands[0].linear.x == pytest.approx(1.2)
    assert math.isfinite(commands[0].angular.z)
    assert modes[0].data in {"expert", "perturbation"}
