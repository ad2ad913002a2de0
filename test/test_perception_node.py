"""perception_node over real DDS: inputs, safety, lifecycle, outputs and parameters.

Each test starts the node in its own process and talks to it from a `Probe`.
Diagnostics come every 0.2 s here, so counters can be awaited quickly.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Twist, TwistStamped
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, Float32MultiArray
from std_srvs.srv import SetBool

from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.model import DrivingPolicy, PolicyConfig, save_checkpoint
from liquid_driver.tools.monitor import PERCEPTION_STATUS
from ros_helpers import Probe

pytestmark = pytest.mark.timeout(180)

REPOSITORY = Path(__file__).resolve().parent.parent
CAMERA_PERIOD_S = 0.05
DIAGNOSTICS_PERIOD_S = 0.2
WAIT_S = 15.0
# Extra time the watchdog stop may take on top of timeout + one timer period:
# DDS delivery and scheduling on a loaded two-core test machine.
WATCHDOG_ALLOWANCE_S = 0.3


class NodeRun:
    """perception_node in its own process, optionally with a parameters file."""

    def __init__(self, log_path: Path, parameters: dict, params_file: Path | None = None):
        command = [sys.executable, "-m", "liquid_driver.nodes.perception_node", "--ros-args"]
        if params_file is not None:
            command += ["--params-file", str(params_file)]
        for name, value in parameters.items():
            command += ["-p", f"{name}:={format_value(value)}"]
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        self.log_path = log_path
        self.log_file = open(log_path, "wb")
        self.process = subprocess.Popen(command, stdout=self.log_file, stderr=subprocess.STDOUT,
                                        env=environment)

    def running(self) -> bool:
        return self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.running():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


def format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value + "'"
    return repr(value)


@pytest.fixture
def probe():
    probe = Probe("perception_probe")
    yield probe
    probe.close()


@pytest.fixture
def start_node(tmp_path):
    """Start perception_node processes; stop each at the end of the test."""
    runs = []

    def start(parameters: dict, params_file: Path | None = None) -> NodeRun:
        defaults = {"diagnostics_period": DIAGNOSTICS_PERIOD_S}
        run = NodeRun(tmp_path / f"perception_node_{len(runs)}.log", {**defaults, **parameters},
                      params_file)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.stop()


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


# Images ------------------------------------------------------------------------

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 255, size=(240, 320, 3), dtype=np.uint8)
ROW_PADDING_BYTES = 8


def encode_pixels(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """Return (height, row bytes) uint8 pixels of rgb in a raw encoding."""
    height, width = rgb.shape[:2]
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = rgb[..., ::-1]
    elif encoding == "rgba8":
        pixels = np.dstack([rgb, np.full((height, width), 255, np.uint8)])
    elif encoding == "bgra8":
        pixels = np.dstack([rgb[..., ::-1], np.full((height, width), 255, np.uint8)])
    elif encoding == "mono8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None]
    else:
        yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV).astype(np.int32)
        y = yuv[..., 0].astype(np.uint8)
        u = ((yuv[:, 0::2, 1] + yuv[:, 1::2, 1]) // 2).astype(np.uint8)  # (h, w/2)
        v = ((yuv[:, 0::2, 2] + yuv[:, 1::2, 2]) // 2).astype(np.uint8)
        if encoding == "yuv422_yuy2":  # Y0 U Y1 V
            quads = np.stack([y[:, 0::2], u, y[:, 1::2], v], axis=-1)
        else:  # "yuv422" is UYVY: U Y0 V Y1
            quads = np.stack([u, y[:, 0::2], v, y[:, 1::2]], axis=-1)
        pixels = quads  # (h, w/2, 4)
    return np.ascontiguousarray(pixels).reshape(height, -1)


def make_image(stamp_s: float, encoding: str = "rgb8", rgb: np.ndarray = RGB,
               padding: int = ROW_PADDING_BYTES) -> Image:
    rows = encode_pixels(rgb, encoding)
    padded = np.zeros((rows.shape[0], rows.shape[1] + padding), np.uint8)
    padded[:, :rows.shape[1]] = rows
    msg = Image()
    set_stamp(msg, stamp_s)
    msg.height, msg.width = rgb.shape[:2]
    msg.encoding = encoding
    msg.step = padded.shape[1]
    msg.data = padded.tobytes()
    return msg


def make_compressed(stamp_s: float, image_format: str) -> CompressedImage:
    ok, encoded = cv2.imencode("." + image_format, cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    assert ok
    msg = CompressedImage()
    set_stamp(msg, stamp_s)
    msg.format = image_format
    msg.data = encoded.tobytes()
    return msg


def set_stamp(msg, stamp_s: float) -> None:
    msg.header.stamp.sec = int(stamp_s)
    msg.header.stamp.nanosec = int(round((stamp_s - int(stamp_s)) * 1e9))
    msg.header.frame_id = "camera"


class FrameStream:
    """Publish frames every camera period from a background thread."""

    def __init__(self, publisher, first_stamp: float = 100.0):
        self.publisher = publisher
        self.stamp = first_stamp
        self.running = False
        self.thread: threading.Thread | None = None
        self.last_publish = 0.0

    def start(self) -> None:
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def stop(self) -> float:
        """Stop publishing; return the monotonic time of the last frame sent."""
        self.running = False
        if self.thread is not None:
            self.thread.join(timeout=5.0)
        return self.last_publish

    def _run(self) -> None:
        while self.running:
            self.stamp += CAMERA_PERIOD_S
            self.publisher.publish(make_image(self.stamp))
            self.last_publish = time.monotonic()
            time.sleep(CAMERA_PERIOD_S)


# Probe helpers -----------------------------------------------------------------

def latest_status(probe: Probe) -> tuple[dict, int] | None:
    """Return (values, level) of the newest perception status, or None."""
    for msg in reversed(probe.messages("/diagnostics")):
        for status in msg.status:
            if status.name == PERCEPTION_STATUS:
                level = status.level if isinstance(status.level, int) else ord(status.level)
                return {item.key: item.value for item in status.values}, level
    return None


def wait_for_value(probe: Probe, key: str, predicate, description: str) -> dict:
    def check():
        latest = latest_status(probe)
        return latest[0] if latest and predicate(latest[0].get(key)) else None

    return probe.wait_for(check, WAIT_S, description)


def call(probe: Probe, service_type, name: str, request):
    client = probe.node.create_client(service_type, name)
    assert client.wait_for_service(timeout_sec=WAIT_S), f"service {name} not available"
    future = client.call_async(request)
    probe.wait_for(future.done, WAIT_S, f"a response from {name}")
    return future.result()


def set_enabled(probe: Probe, enabled: bool) -> SetBool.Response:
    return call(probe, SetBool, "/perception_node/enable", SetBool.Request(data=enabled))


def set_parameter(probe: Probe, name: str, value):
    parameter_value = ParameterValue()
    if isinstance(value, bool):
        parameter_value.type, parameter_value.bool_value = ParameterType.PARAMETER_BOOL, value
    elif isinstance(value, float):
        parameter_value.type, parameter_value.double_value = ParameterType.PARAMETER_DOUBLE, value
    else:
        parameter_value.type, parameter_value.string_value = ParameterType.PARAMETER_STRING, value
    request = SetParameters.Request(parameters=[Parameter(name=name, value=parameter_value)])
    return call(probe, SetParameters, "/perception_node/set_parameters", request).results[0]


def driving(commands) -> list:
    return [m for m in commands if m.linear.x > 0.0]


def is_stop(msg) -> bool:
    return msg.linear.x == 0.0 and msg.angular.z == 0.0


# Tests -------------------------------------------------------------------------

RAW_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "yuv422", "yuv422_yuy2")


def test_inputs_encodings_bad_frames_stamps(probe, start_node, random_checkpoint):
    probe.subscribe(Twist, "/cmd_vel")
    probe.subscribe(DiagnosticArray, "/diagnostics")
    image_pub = probe.publisher(Image, "/camera/image_raw", camera=True)
    node = start_node({
        "model_path": str(random_checkpoint), "speed": 0.8, "start_enabled": True,
        "image_reliable": True, "image_queue_depth": 50, "watchdog_timeout": 5.0,
        "use_sim_time": True})
    probe.wait_for_subscribers("/camera/image_raw")

    # Every raw encoding, at twice the simulator's size and with row padding, drives.
    stamp = 10.0
    for encoding in RAW_ENCODINGS:
        stamp += CAMERA_PERIOD_S
        image_pub.publish(make_image(stamp, encoding))
    wait_for_value(probe, "frames", lambda v: v == str(len(RAW_ENCODINGS)),
                   f"{len(RAW_ENCODINGS)} accepted frames")
    commands = driving(probe.messages("/cmd_vel"))
    assert len(commands) == len(RAW_ENCODINGS)
    assert all(m.linear.x == pytest.approx(0.8) for m in commands)
    assert all(math.isfinite(m.angular.z) for m in commands)

    # Bad frames are rejected with a logged reason, and the node keeps running.
    short = make_image(stamp + 0.05)
    short.data = bytes(100)
    unknown = make_image(stamp + 0.10)
    unknown.encoding = "rgb16"
    empty = make_image(stamp + 0.15)
    empty.width, empty.height, empty.step, empty.data = 0, 0, 0, b""
    narrow_step = make_image(stamp + 0.20)
    narrow_step.step = 100
    for bad in (short, unknown, empty, narrow_step):
        image_pub.publish(bad)
    values = wait_for_value(probe, "rejected_frames", lambda v: v == "4", "4 rejected frames")
    assert values["frames"] == str(len(RAW_ENCODINGS))
    # The demo's DriveMonitor reads latency_p50_ms, latency_p99_ms, frames and model.
    for key in ("latency_p50_ms", "latency_p99_ms", "model", "input_rate_hz", "dropped_frames"):
        assert key in values, key
    assert node.running()
    log = node.log_text()
    assert "invalid data length 100 bytes for a 320x240 rgb8 image" in log
    assert "unsupported image encoding 'rgb16'" in log
    assert "invalid rgb8 image size 0x0" in log
    assert "invalid step 100 bytes" in log

    # Stamps that go backwards, repeat or jump past max_dt each reset the state.
    stamp += CAMERA_PERIOD_S
    for next_stamp in (stamp, stamp - 0.5, stamp - 0.5, stamp + 4.5):
        image_pub.publish(make_image(next_stamp))
    values = wait_for_value(probe, "state_resets", lambda v: v == "3", "3 state resets")
    assert values["frames"] == str(len(RAW_ENCODINGS) + 4)
    log = node.log_text()
    assert "stamp went backwards by 0.500 s" in log
    assert "stamp repeated" in log
    assert "stamp jumped forward by 5.000 s" in log


def test_safety_watchdog_estop_enable_parameters(probe, start_node, random_checkpoint):
    probe.subscribe(Twist, "/cmd_vel")
    probe.subscribe(DiagnosticArray, "/diagnostics")
    image_pub = probe.publisher(Image, "/camera/image_raw", camera=True)
    e_stop_pub = probe.publisher(Bool, "/e_stop")
    params_file = REPOSITORY / "config" / "perception.yaml"
    start_node({"model_path": str(random_checkpoint), "image_reliable": True,
                "watchdog_timeout": 0.25}, params_file=params_file)
    probe.wait_for_subscribers("/camera/image_raw")
    probe.wait_for_subscribers("/e_stop")

    # The parameters file is loaded: each value in it is in effect except the overrides.
    file_values = yaml.safe_load(params_file.read_text())["perception_node"]["ros__parameters"]
    names = [name for name in file_values
             if name not in {"model_path", "image_reliable", "watchdog_timeout", "diagnostics_period"}]
    response = call(probe, GetParameters, "/perception_node/get_parameters",
                    GetParameters.Request(names=names))
    for name, value in zip(names, response.values):
        assert value.type != ParameterType.PARAMETER_NOT_SET, f"{name} is not declared"
        actual = {ParameterType.PARAMETER_BOOL: value.bool_value,
                  ParameterType.PARAMETER_INTEGER: value.integer_value,
                  ParameterType.PARAMETER_DOUBLE: value.double_value,
                  ParameterType.PARAMETER_STRING: value.string_value}[value.type]
        assert actual == file_values[name], name

    # Disabled at start: frames are processed but no command is published.
    stream = FrameStream(image_pub)
    stream.start()
    wait_for_value(probe, "frames", lambda v: v is not None and int(v) >= 5, "5 frames")
    assert probe.messages("/cmd_vel") == []
    assert latest_status(probe)[0]["enabled"] == "false"

    # Enabled by the service: it drives.
    response = set_enabled(probe, True)
    assert response.success, response.message
    probe.wait_for(lambda: driving(probe.messages("/cmd_vel")), WAIT_S, "a driving command")

    # No images: the watchdog stops the car within timeout plus one timer period.
    last_frame = stream.stop()
    first_stop = probe.wait_for(
        lambda: next((time.monotonic() for m in probe.messages("/cmd_vel")[-1:] if is_stop(m)), None),
        WAIT_S, "a watchdog stop")
    watchdog_period = min(0.25 / 2.0, 0.05)
    assert first_stop - last_frame <= 0.25 + watchdog_period + WATCHDOG_ALLOWANCE_S
    values = wait_for_value(probe, "watchdog", lambda v: v == "tripped", "watchdog tripped")
    assert latest_status(probe)[1] == ord(DiagnosticStatus.ERROR)
    assert values["enabled"] == "true"

    # Frames again: driving resumes. The e-stop latches a stop while frames keep coming.
    stream.start()
    probe.clear("/cmd_vel")
    probe.wait_for(lambda: driving(probe.messages("/cmd_vel")), WAIT_S, "driving after the watchdog")
    e_stop_pub.publish(Bool(data=True))
    wait_for_value(probe, "e_stop", lambda v: v == "latched", "e-stop latched")
    probe.clear("/cmd_vel")
    probe.wait_for(lambda: len(probe.messages("/cmd_vel")) >= 10, WAIT_S, "10 commands under e-stop")
    assert all(is_stop(m) for m in probe.messages("/cmd_vel"))
    response = set_enabled(probe, True)
    assert not response.success
    assert "e-stop" in response.message

    # Clearing the e-stop does not drive by itself; enabling does.
    e_stop_pub.publish(Bool(data=False))
    wait_for_value(probe, "e_stop", lambda v: v == "clear", "e-stop cleared")
    probe.clear("/cmd_vel")
    frames = int(latest_status(probe)[0]["frames"])
    wait_for_value(probe, "frames", lambda v: int(v) >= frames + 10, "10 more frames")
    assert driving(probe.messages("/cmd_vel")) == []

    # Parameter changes: out of range, inconsistent, read-only and unknown values are rejected.
    result = set_parameter(probe, "speed", 50.0)
    assert not result.successful
    assert result.reason
    result = set_parameter(probe, "min_speed", 1.5)
    assert not result.successful
    assert "min_speed <= speed" in result.reason
    result = set_parameter(probe, "output_type", "ackermann")
    assert not result.successful
    assert "read-only" in result.reason
    result = set_parameter(probe, "speed_mode", "reverse")
    assert not result.successful
    assert "speed_mode='reverse' is invalid" in result.reason
    result = set_parameter(probe, "speed_mode", "model")
    assert not result.successful
    assert "predicts no speed" in result.reason
    result = set_parameter(probe, "speed", 0.5)
    assert result.successful, result.reason

    assert set_enabled(probe, True).success
    commands = probe.wait_for(lambda: driving(probe.messages("/cmd_vel")), WAIT_S, "driving at 0.5 m/s")
    assert commands[-1].linear.x == pytest.approx(0.5)

    # Disabling publishes one stop, then nothing while frames keep coming.
    assert set_enabled(probe, False).success
    probe.wait_for(lambda: is_stop(probe.messages("/cmd_vel")[-1]), WAIT_S, "a stop on disable")
    count = len(probe.messages("/cmd_vel"))
    frames = int(latest_status(probe)[0]["frames"])
    wait_for_value(probe, "frames", lambda v: int(v) >= frames + 10, "10 frames while disabled")
    assert len(probe.messages("/cmd_vel")) == count
    stream.stop()


def change_state(probe: Probe, transition_id: int) -> bool:
    request = ChangeState.Request()
    request.transition.id = transition_id
    return call(probe, ChangeState, "/perception_node/change_state", request).success


def test_lifecycle_stamped_compressed_debug(probe, start_node, random_checkpoint):
    probe.subscribe(TwistStamped, "/cmd_vel")
    probe.subscribe(DiagnosticArray, "/diagnostics")
    probe.subscribe(Float32MultiArray, "/perception_node/features")
    probe.subscribe(Float32MultiArray, "/perception_node/neuron_states")
    probe.subscribe(Image, "/perception_node/saliency")
    image_pub = probe.publisher(CompressedImage, "/camera/image_raw/compressed", camera=True)
    start_node({
        "model_path": str(random_checkpoint), "autostart": False, "start_enabled": True,
        "output_type": "twist_stamped", "image_transport": "compressed", "image_reliable": True,
        "image_queue_depth": 10, "watchdog_timeout": 5.0, "frame_id": "rover",
        "publish_debug": True, "publish_saliency": True})

    state = call(probe, GetState, "/perception_node/get_state", GetState.Request())
    assert state.current_state.id == State.PRIMARY_STATE_UNCONFIGURED
    assert change_state(probe, Transition.TRANSITION_CONFIGURE)
    probe.wait_for_subscribers("/camera/image_raw/compressed")

    # Inactive: frames produce no command.
    image_pub.publish(make_compressed(1.0, "jpg"))
    wait_for_value(probe, "active", lambda v: v == "false", "an inactive status")
    assert change_state(probe, Transition.TRANSITION_ACTIVATE)
    wait_for_value(probe, "active", lambda v: v == "true", "an active status")
    assert probe.messages("/cmd_vel") == []

    for i, image_format in enumerate(("jpg", "png")):
        image_pub.publish(make_compressed(2.0 + i * CAMERA_PERIOD_S, image_format))
    commands = probe.wait_for_messages("/cmd_vel", count=2)
    for msg in commands:
        assert msg.header.frame_id == "rover"
        assert msg.twist.linear.x == pytest.approx(1.0)
        assert math.isfinite(msg.twist.angular.z)

    features = probe.wait_for_messages("/perception_node/features")[0]
    assert len(features.data) == PolicyConfig().cnn.feature_size
    neurons = probe.wait_for_messages("/perception_node/neuron_states")[0]
    assert len(neurons.data) == PolicyConfig().controller.units
    saliency = probe.wait_for_messages("/perception_node/saliency")[0]
    preprocessing = Preprocessing()
    assert (saliency.height, saliency.width) == (preprocessing.height, preprocessing.width)
    assert saliency.encoding == "rgb8"
    assert len(saliency.data) == saliency.height * saliency.step

    # Deactivate publishes a stop, then frames produce no command.
    assert change_state(probe, Transition.TRANSITION_DEACTIVATE)
    last = probe.wait_for(
        lambda: [m for m in probe.messages("/cmd_vel") if m.twist.linear.x == 0.0],
        WAIT_S, "a stop on deactivate")[-1]
    assert last.twist.angular.z == 0.0
    count = len(probe.messages("/cmd_vel"))
    image_pub.publish(make_compressed(3.0, "jpg"))
    time.sleep(0.5)
    assert len(probe.messages("/cmd_vel")) == count


def test_onnx_backend_drives(probe, start_node, random_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx backend needs onnxruntime")
    pytest.importorskip("onnx", reason="exporting a test model needs the onnx package")
    from liquid_driver.model import load_checkpoint
    from liquid_driver.model.export import export_onnx

    policy, metadata = load_checkpoint(random_checkpoint)
    onnx_path = tmp_path / "random.onnx"
    export_onnx(policy.eval(), onnx_path, metadata)

    probe.subscribe(Twist, "/cmd_vel")
    probe.subscribe(DiagnosticArray, "/diagnostics")
    image_pub = probe.publisher(Image, "/camera/image_raw", camera=True)
    start_node({"model_path": str(onnx_path), "backend": "onnx", "start_enabled": True,
                "image_reliable": True, "image_queue_depth": 10, "watchdog_timeout": 5.0})
    probe.wait_for_subscribers("/camera/image_raw")
    for i in range(3):
        image_pub.publish(make_image(1.0 + i * CAMERA_PERIOD_S))
    commands = probe.wait_for(lambda: driving(probe.messages("/cmd_vel")), WAIT_S, "a command")
    assert math.isfinite(commands[0].angular.z)
    values = wait_for_value(probe, "backend", lambda v: v == "onnx", "an onnx status")
    assert "onnx backend" in values["model"]


def test_ackermann_output(probe, start_node, random_checkpoint):
    ackermann = pytest.importorskip(
        "ackermann_msgs.msg", reason="ackermann_msgs is not installed (not in the PyPI wheels)")
    probe.subscribe(ackermann.AckermannDriveStamped, "/cmd_vel")
    image_pub = probe.publisher(Image, "/camera/image_raw", camera=True)
    start_node({"model_path": str(random_checkpoint), "output_type": "ackermann",
                "start_enabled": True, "image_reliable": True, "watchdog_timeout": 5.0,
                "wheelbase": 0.3})
    probe.wait_for_subscribers("/camera/image_raw")
    image_pub.publish(make_image(1.0))
    msg = probe.wait_for_messages("/cmd_vel")[0]
    assert msg.drive.speed == pytest.approx(1.0)
    assert abs(msg.drive.steering_angle) <= 0.4
