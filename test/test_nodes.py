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

from liquid_driver.data.images import rgb_to_image_fields
from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.model import DrivingPolicy, PolicyConfig, save_checkpoint
from liquid_driver.tools.monitor import PERCEPTION_STATUS, status_values
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


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    """An untrained policy: enough to test plumbing, not driving."""
    path = tmp_path_factory.mktemp("model") / "random.safetensors"
    policy = DrivingPolicy(PolicyConfig())
    save_checkpoint(path, policy, metadata={
        "preprocessing": Preprocessing().to_dict(),
        "training": {"median_dt": CAMERA_PERIOD_S},
    })
    return path


def make_image(stamp_s: float, rgb: np.ndarray) -> Image:
    height, width, encoding, step, data = rgb_to_image_fields(rgb)
    msg = Image()
    msg.header.stamp.sec = int(stamp_s)
    msg.header.stamp.nanosec = int(round((stamp_s - int(stamp_s)) * 1e9))
    msg.header.frame_id = "camera"
    msg.height, msg.width, msg.encoding, msg.step, msg.data = height, width, encoding, step, data
    return msg


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
    assert info.k[0] > 0.0 and info.k[4] > 0.0
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


def test_perception_node_drives_and_guards(probe, node_processes, random_checkpoint):
    probe.subscribe(Twist, "/cmd_vel")
    probe.subscribe(DiagnosticArray, "/diagnostics")
    image_pub = probe.publisher(Image, "/camera/image_raw", camera=True)
    node_processes("perception_node", {
        "model_path": str(random_checkpoint), "speed": 0.8, "image_reliable": True,
        "watchdog_timeout": 0.3})
    probe.wait_for_subscribers("/camera/image_raw")

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    for i in range(10):
        image_pub.publish(make_image(10.0 + i * CAMERA_PERIOD_S, rgb))
    driving = probe.wait_for(
        lambda: [m for m in probe.messages("/cmd_vel") if m.linear.x > 0.0], 10.0,
        "a driving command")
    assert driving[0].linear.x == pytest.approx(0.8)
    assert math.isfinite(driving[0].angular.z)

    # A frame whose data is shorter than height x step is rejected, not fatal.
    bad = make_image(11.0, rgb)
    bad.data = bytes(100)
    image_pub.publish(bad)
    # A stamp that goes backwards resets the recurrent state.
    image_pub.publish(make_image(5.0, rgb))

    def latest_diagnostics():
        for msg in reversed(probe.messages("/diagnostics")):
            values = status_values(msg, PERCEPTION_STATUS)
            if values is not None:
                return values
        return None

    probe.wait_for(
        lambda: (latest_diagnostics() or {}).get("rejected_frames") == "1"
        and (latest_diagnostics() or {}).get("state_resets") == "1",
        10.0, "diagnostics counting one rejected frame and one state reset")

    # No more images: the watchdog publishes stop commands.
    probe.clear("/cmd_vel")
    stops = probe.wait_for(
        lambda: [m for m in probe.messages("/cmd_vel") if m.linear.x == 0.0 and m.angular.z == 0.0],
        5.0, "a stop command from the watchdog")
    assert stops
    assert all(m.linear.x == 0.0 for m in probe.messages("/cmd_vel")[-3:])


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
