"""recorder_node over real DDS, its bag read back by independent readers."""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Twist
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import Image

from liquid_driver.data.images import rgb_to_image_fields
from liquid_driver.tools.monitor import status_values
from liquid_driver.tools.processes import NodeProcess
from ros_helpers import Probe

pytestmark = pytest.mark.timeout(120)

MESSAGES = 60


def test_recorder_writes_every_message(tmp_path):
    bag = tmp_path / "bag"
    probe = Probe()
    recorder = NodeProcess(
        "recorder_node",
        {"output": str(bag), "topics": ["/camera/image_raw", "/cmd_vel"],
         "types": ["sensor_msgs/msg/Image", "geometry_msgs/msg/Twist"]},
        log_path=tmp_path / "recorder.log")
    probe.subscribe(DiagnosticArray, "/diagnostics")
    try:
        # A history as deep as the test's burst, so the publisher drops nothing itself.
        image_pub = probe.publisher(Image, "/camera/image_raw", camera=True, depth=MESSAGES)
        cmd_pub = probe.publisher(Twist, "/cmd_vel", depth=MESSAGES)
        probe.wait_for_subscribers("/camera/image_raw")
        probe.wait_for_subscribers("/cmd_vel")

        rgb = np.zeros((120, 160, 3), dtype=np.uint8)
        for i in range(MESSAGES):
            rgb[:, :, 0] = i
            height, width, encoding, step, data = rgb_to_image_fields(rgb)
            image = Image(height=height, width=width, encoding=encoding, step=step, data=data)
            image.header.stamp.sec = i
            image_pub.publish(image)
            cmd_pub.publish(Twist())

        def written(topic):
            for msg in reversed(probe.messages("/diagnostics")):
                values = status_values(msg, "recorder_node: recording")
                if values is not None:
                    return int(values.get(f"{topic} written", "0"))
            return 0

        probe.wait_for(
            lambda: written("/camera/image_raw") == MESSAGES and written("/cmd_vel") == MESSAGES,
            20.0, f"the recorder to report {MESSAGES} written messages per topic")
    finally:
        code = recorder.stop()
        probe.close()
    assert code == 0, recorder.log_text()

    # Independent reader 1: the mcap package, straight from the file.
    counts: dict[str, int] = {}
    files = sorted(bag.glob("*.mcap"))
    assert files, f"no .mcap file in {bag}: {list(bag.iterdir())}"
    for path in files:
        with open(path, "rb") as stream:
            for _schema, channel, _message in make_reader(stream).iter_messages():
                counts[channel.topic] = counts.get(channel.topic, 0) + 1
    assert counts == {"/camera/image_raw": MESSAGES, "/cmd_vel": MESSAGES}

    # Independent reader 2: rosbags, through the bag's metadata.yaml, decoding images.
    typestore = get_typestore(Stores.ROS2_KILTED)
    with AnyReader([bag], default_typestore=typestore) as reader:
        connections = [c for c in reader.connections if c.topic == "/camera/image_raw"]
        red = [int(reader.deserialize(raw, conn.msgtype).data[0])
               for conn, _, raw in reader.messages(connections=connections)]
    assert red == list(range(MESSAGES))


def _custom_data(bag):
    import json

    import yaml

    document = yaml.safe_load((bag / "metadata.yaml").read_text())
    custom = document["rosbag2_bagfile_information"].get("custom_data") or {}
    return json.loads(custom["liquid_driver.episode"])


def _image(value: int, stamp_s: int, size=(120, 160)) -> Image:
    rgb = np.full((*size, 3), value, dtype=np.uint8)
    height, width, encoding, step, data = rgb_to_image_fields(rgb)
    image = Image(height=height, width=width, encoding=encoding, step=step, data=data)
    image.header.stamp.sec = stamp_s
    return image


def _recorder_status(probe):
    for msg in reversed(probe.messages("/diagnostics")):
        values = status_values(msg, "recorder_node: recording")
        if values is not None:
            return values
    return {}


def test_recorder_episodes_by_service_and_toggle(tmp_path):
    from std_msgs.msg import Bool
    from std_srvs.srv import SetBool

    bag = tmp_path / "episode"
    probe = Probe("recorder_episode_probe")
    recorder = NodeProcess(
        "recorder_node",
        {"output": str(bag), "topics": ["/camera/image_raw", "/cmd_vel"],
         "types": ["sensor_msgs/msg/Image", "geometry_msgs/msg/Twist"],
         "start_recording": False, "toggle_topic": "/record_button",
         "image_width": 64, "image_height": 48,
         "vehicle": "test car", "place": "unit test", "operator_note": "two episodes"},
        log_path=tmp_path / "recorder.log")
    probe.subscribe(DiagnosticArray, "/diagnostics")
    client = probe.node.create_client(SetBool, "/recorder_node/set_recording")
    try:
        image_pub = probe.publisher(Image, "/camera/image_raw", camera=True, depth=50)
        cmd_pub = probe.publisher(Twist, "/cmd_vel", depth=50)
        toggle_pub = probe.publisher(Bool, "/record_button")
        probe.wait_for_subscribers("/camera/image_raw")
        probe.wait_for_subscribers("/record_button")
        assert client.wait_for_service(timeout_sec=20.0)

        # Not recording yet: these are not written anywhere.
        for i in range(5):
            image_pub.publish(_image(200, i))
        probe.wait_for(lambda: _recorder_status(probe).get("recording") == "false", 10.0,
                       "the recorder to report that it is idle")

        def call(data: bool):
            future = client.call_async(SetBool.Request(data=data))
            probe.wait_for(future.done, 10.0, f"set_recording({data}) to return")
            return future.result()

        assert call(True).success
        for i in range(10):
            image_pub.publish(_image(i, 100 + i))
            cmd_pub.publish(Twist())
        probe.wait_for(lambda: _recorder_status(probe).get("/camera/image_raw written") == "10", 20.0,
                       "10 written images in episode 1")
        response = call(False)
        assert response.success
        assert not (tmp_path / "episode_001").exists()

        toggle_pub.publish(Bool(data=True))
        probe.wait_for(lambda: (tmp_path / "episode_001").exists(), 10.0,
                       "the toggle topic to start episode 2")
        for i in range(7):
            image_pub.publish(_image(50 + i, 200 + i))
        probe.wait_for(lambda: _recorder_status(probe).get("/camera/image_raw written") == "17", 20.0,
                       "7 more written images in episode 2")
        toggle_pub.publish(Bool(data=False))
        probe.wait_for(lambda: (tmp_path / "episode_001" / "metadata.yaml").exists(), 10.0,
                       "episode 2 to be closed")
    finally:
        code = recorder.stop()
        probe.close()
    assert code == 0, recorder.log_text()

    first = _custom_data(bag)
    second = _custom_data(tmp_path / "episode_001")
    assert first["index"] == 1
    assert second["index"] == 2
    assert first["id"] != second["id"]
    assert first["vehicle"] == "test car"
    assert first["place"] == "unit test"
    assert first["operator_note"] == "two episodes"
    assert first["software_version"]
    assert first["stop_reason"] == "service"
    assert first["image_size"] == [64, 48]

    typestore = get_typestore(Stores.ROS2_KILTED)
    for path, expected in ((bag, list(range(10))), (tmp_path / "episode_001", list(range(50, 57)))):
        with AnyReader([path], default_typestore=typestore) as reader:
            connections = [c for c in reader.connections if c.topic == "/camera/image_raw"]
            images = [reader.deserialize(raw, conn.msgtype)
                      for conn, _, raw in reader.messages(connections=connections)]
        assert [int(image.data[0]) for image in images] == expected
        assert {(image.width, image.height) for image in images} == {(64, 48)}


def test_recorder_splits_by_duration(tmp_path):
    bag = tmp_path / "split"
    probe = Probe("recorder_split_probe")
    recorder = NodeProcess(
        "recorder_node",
        {"output": str(bag), "topics": ["/cmd_vel"], "types": ["geometry_msgs/msg/Twist"],
         "max_bag_duration": 1.0},
        log_path=tmp_path / "recorder.log")
    try:
        cmd_pub = probe.publisher(Twist, "/cmd_vel", depth=50)
        probe.wait_for_subscribers("/cmd_vel")
        probe.wait_for(lambda: (tmp_path / "split_001").exists(), 20.0, "a split into a second bag")
        for _ in range(5):
            cmd_pub.publish(Twist())
    finally:
        code = recorder.stop()
        probe.close()
    assert code == 0, recorder.log_text()
    first = _custom_data(bag)
    second = _custom_data(tmp_path / "split_001")
    assert first["id"] == second["id"]
    assert first["part"] == 0
    assert second["part"] == 1
    assert first["stop_reason"] == "split by duration"


def test_recorder_stops_when_disk_limit_reached(tmp_path):
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters
    from std_srvs.srv import SetBool

    bag = tmp_path / "disk"
    probe = Probe("recorder_disk_probe")
    recorder = NodeProcess(
        "recorder_node",
        {"output": str(bag), "topics": ["/cmd_vel"], "types": ["geometry_msgs/msg/Twist"],
         "min_free_space_mb": 0.0},
        log_path=tmp_path / "recorder.log")
    probe.subscribe(DiagnosticArray, "/diagnostics")
    parameters = probe.node.create_client(SetParameters, "/recorder_node/set_parameters")
    recording = probe.node.create_client(SetBool, "/recorder_node/set_recording")
    try:
        assert parameters.wait_for_service(timeout_sec=20.0)
        assert recording.wait_for_service(timeout_sec=20.0)
        probe.wait_for(lambda: _recorder_status(probe).get("recording") == "true", 10.0,
                       "the recorder to start at once")

        # 10 TB, the top of the allowed range and more than a test machine has free.
        impossible = Parameter(name="min_free_space_mb", value=ParameterValue(
            type=ParameterType.PARAMETER_DOUBLE, double_value=1.0e7))
        future = parameters.call_async(SetParameters.Request(parameters=[impossible]))
        probe.wait_for(future.done, 10.0, "set_parameters to return")
        assert future.result().results[0].successful
        probe.wait_for(lambda: _recorder_status(probe).get("recording") == "false", 10.0,
                       "the recorder to stop on the disk limit")
        assert "disk nearly full" in recorder.log_text()

        # A new start is rejected with the reason while the limit is not met.
        future = recording.call_async(SetBool.Request(data=True))
        probe.wait_for(future.done, 10.0, "set_recording(True) to return")
        assert not future.result().success
        assert "min_free_space_mb" in future.result().message
    finally:
        code = recorder.stop()
        probe.close()
    assert code == 0, recorder.log_text()
    assert (bag / "metadata.yaml").is_file()
    assert _custom_data(bag)["stop_reason"].startswith("disk nearly full")
    assert not (tmp_path / "disk_001").exists()


def test_recorder_auto_starts_when_moving(tmp_path):
    import time

    from nav_msgs.msg import Odometry

    bag = tmp_path / "auto"
    probe = Probe("recorder_auto_probe")
    recorder = NodeProcess(
        "recorder_node",
        {"output": str(bag), "topics": ["/cmd_vel"], "types": ["geometry_msgs/msg/Twist"],
         "start_recording": False, "auto_start_speed": 0.2, "odom_topic": "/odom"},
        log_path=tmp_path / "recorder.log")
    try:
        odom_pub = probe.publisher(Odometry, "/odom")
        probe.wait_for_subscribers("/odom")
        standing = Odometry()
        standing.twist.twist.linear.x = 0.1
        probe.wait_for(lambda: "Subscribed /cmd_vel" in recorder.log_text(), 20.0,
                       "the recorder to subscribe its topics")
        for _ in range(25):  # 0.5 s of odometry below auto_start_speed
            odom_pub.publish(standing)
            time.sleep(0.02)
        assert not bag.exists()

        moving = Odometry()
        moving.twist.twist.linear.x = 0.5

        def publish_and_check() -> bool:
            # Odometry is a stream, and the recorder subscribes it best effort. The bag
            # directory appears before the episode has started, so wait for the log line.
            odom_pub.publish(moving)
            return "started episode 1" in recorder.log_text()

        probe.wait_for(publish_and_check, 20.0, "the recorder to start when the car moves")
    finally:
        code = recorder.stop()
        probe.close()
    assert code == 0, recorder.log_text()
    assert _custom_data(bag)["index"] == 1
    assert not (tmp_path / "auto_001").exists()
