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
