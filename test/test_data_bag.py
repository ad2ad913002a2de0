"""BagWriter: bags read back by the mcap package and rosbags' AnyReader."""

import sqlite3

import numpy as np
import pytest
from mcap.reader import make_reader
from rosbags.highlevel import AnyReader

from liquid_driver.data.bag import BagWriter, project_typestore, serialize
from liquid_driver.data.synthetic import image_message, string_message, twist_message

IMAGE_TYPE = "sensor_msgs/msg/Image"
TWIST_TYPE = "geometry_msgs/msg/Twist"
STRING_TYPE = "std_msgs/msg/String"


def _write_sample_bag(path, storage="mcap"):
    """Write 3 images, 5 commands and 1 mode; return {topic: [(log_ns, cdr)]}."""
    rng = np.random.default_rng(3)
    written = {"/camera/image_raw": [], "/cmd_vel": [], "/driving_mode": []}
    with BagWriter(path, storage=storage) as bag:
        bag.add_topic("/camera/image_raw", IMAGE_TYPE)
        bag.add_topic("/cmd_vel", TWIST_TYPE)
        bag.add_topic("/driving_mode", STRING_TYPE)
        mode = serialize(string_message("expert"), STRING_TYPE)
        bag.write("/driving_mode", 1_000, mode)
        written["/driving_mode"].append((1_000, mode))
        for index in range(5):
            cdr = serialize(twist_message(0.5 + index, 0.1 * index), TWIST_TYPE)
            bag.write("/cmd_vel", 2_000 + index * 50_000_000, cdr)
            written["/cmd_vel"].append((2_000 + index * 50_000_000, cdr))
        for index in range(3):
            rgb = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
            cdr = serialize(image_message(rgb, 10.0 + index * 0.05), IMAGE_TYPE)
            bag.write("/camera/image_raw", 3_000 + index * 50_000_000, cdr)
            written["/camera/image_raw"].append((3_000 + index * 50_000_000, cdr))
        assert bag.message_counts == {"/camera/image_raw": 3, "/cmd_vel": 5, "/driving_mode": 1}
    return written


def test_mcap_read_back_by_mcap_package(tmp_path):
    path = tmp_path / "bag"
    written = _write_sample_bag(path)
    mcap_files = list(path.glob("*.mcap"))
    assert len(mcap_files) == 1
    assert (path / "metadata.yaml").is_file()

    read = {}
    schemas = {}
    with open(mcap_files[0], "rb") as stream:
        for schema, channel, message in make_reader(stream).iter_messages():
            read.setdefault(channel.topic, []).append((message.log_time, bytes(message.data)))
            schemas[channel.topic] = schema.name
            assert channel.message_encoding == "cdr"
    assert read == written
    assert schemas == {"/camera/image_raw": IMAGE_TYPE, "/cmd_vel": TWIST_TYPE, "/driving_mode": STRING_TYPE}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_read_back_by_anyreader(tmp_path, storage):
    path = tmp_path / "bag"
    written = _write_sample_bag(path, storage)
    with AnyReader([path]) as reader:
        counts = {name: info.msgcount for name, info in reader.topics.items()}
        assert counts == {"/camera/image_raw": 3, "/cmd_vel": 5, "/driving_mode": 1}
        speeds = []
        for connection, timestamp, raw in reader.messages():
            assert (timestamp, bytes(raw)) in written[connection.topic]
            msg = reader.deserialize(raw, connection.msgtype)
            if connection.topic == "/cmd_vel":
                speeds.append(msg.linear.x)
            if connection.topic == "/driving_mode":
                assert msg.data == "expert"
            if connection.topic == "/camera/image_raw":
                assert (msg.height, msg.width, msg.encoding) == (6, 8, "rgb8")
    assert speeds == pytest.approx([0.5, 1.5, 2.5, 3.5, 4.5])


def test_sqlite3_storage_is_database(tmp_path):
    path = tmp_path / "bag"
    _write_sample_bag(path, "sqlite3")
    databases = list(path.glob("*.db3"))
    assert len(databases) == 1
    with sqlite3.connect(databases[0]) as connection:
        (count,) = connection.execute("SELECT COUNT(*) FROM messages").fetchone()
    assert count == 9


def test_refuses_existing_directory(tmp_path):
    path = tmp_path / "bag"
    path.mkdir()
    with pytest.raises(FileExistsError, match="exists already"):
        BagWriter(path)


def test_close_twice_and_write_after_close(tmp_path):
    bag = BagWriter(tmp_path / "bag")
    bag.add_topic("/cmd_vel", TWIST_TYPE)
    bag.write("/cmd_vel", 5, serialize(twist_message(1.0, 0.0), TWIST_TYPE))
    bag.close()
    bag.close()
    assert bag.closed
    with pytest.raises(RuntimeError, match="closed"):
        bag.write("/cmd_vel", 6, serialize(twist_message(1.0, 0.0), TWIST_TYPE))
    with AnyReader([tmp_path / "bag"]) as reader:
        assert reader.message_count == 1


def test_exception_inside_context_keeps_messages(tmp_path):
    path = tmp_path / "bag"
    with pytest.raises(KeyError):
        with BagWriter(path) as bag:
            bag.add_topic("/cmd_vel", TWIST_TYPE)
            for index in range(4):
                bag.write("/cmd_vel", index, serialize(twist_message(1.0, 0.0), TWIST_TYPE))
            raise KeyError("simulated failure")
    assert bag.closed
    with AnyReader([path]) as reader:
        assert reader.message_count == 4


def test_add_topic_validation(tmp_path):
    with BagWriter(tmp_path / "bag") as bag:
        bag.add_topic("/cmd_vel", TWIST_TYPE)
        bag.add_topic("/cmd_vel", TWIST_TYPE)  # same type again is accepted
        assert bag.topics == {"/cmd_vel": TWIST_TYPE}
        with pytest.raises(ValueError, match="registered with type"):
            bag.add_topic("/cmd_vel", STRING_TYPE)
        with pytest.raises(ValueError, match="unknown message type"):
            bag.add_topic("/x", "my_msgs/msg/Missing")


def test_write_validation(tmp_path):
    cdr = serialize(twist_message(1.0, 0.0), TWIST_TYPE)
    with BagWriter(tmp_path / "bag") as bag:
        bag.add_topic("/cmd_vel", TWIST_TYPE)
        with pytest.raises(ValueError, match=r"'/odom' is not registered.*\['/cmd_vel'\]"):
            bag.write("/odom", 1, cdr)
        with pytest.raises(ValueError, match="timestamp_ns -1"):
            bag.write("/cmd_vel", -1, cdr)
        with pytest.raises(TypeError, match="timestamp_ns"):
            bag.write("/cmd_vel", 1.5, cdr)
        with pytest.raises(TypeError, match="cdr_bytes"):
            bag.write("/cmd_vel", 1, "text")
        assert bag.message_counts == {"/cmd_vel": 0}


def test_invalid_storage(tmp_path):
    with pytest.raises(ValueError, match="invalid bag storage 'rosbag1'"):
        BagWriter(tmp_path / "bag", storage="rosbag1")
    assert not (tmp_path / "bag").exists()


def test_serialize_matches_typestore_round_trip():
    msg = twist_message(0.8, -0.4)
    cdr = serialize(msg, TWIST_TYPE)
    back = project_typestore().deserialize_cdr(cdr, TWIST_TYPE)
    assert back.linear.x == pytest.approx(0.8)
    assert back.angular.z == pytest.approx(-0.4)
    with pytest.raises(ValueError, match="unknown message type"):
        serialize(msg, "geometry_msgs/msg/Twistt")


def test_ackermann_type_available(tmp_path):
    types = project_typestore().types
    drive = types["ackermann_msgs/msg/AckermannDrive"](
        steering_angle=0.2, steering_angle_velocity=0.0, speed=1.0, acceleration=0.0, jerk=0.0
    )
    stamp = types["builtin_interfaces/msg/Time"](sec=1, nanosec=0)
    msg = types["ackermann_msgs/msg/AckermannDriveStamped"](
        header=types["std_msgs/msg/Header"](stamp=stamp, frame_id=""), drive=drive
    )
    with BagWriter(tmp_path / "bag") as bag:
        bag.add_topic("/drive", "ackermann_msgs/msg/AckermannDriveStamped")
        bag.write("/drive", 1, serialize(msg, "ackermann_msgs/msg/AckermannDriveStamped"))
    with AnyReader([tmp_path / "bag"]) as reader:
        ((connection, _, raw),) = list(reader.messages())
        assert reader.deserialize(raw, connection.msgtype).drive.steering_angle == pytest.approx(0.2)


_KILLED_WRITER = """
import sys
import time
from liquid_driver.data.bag import BagWriter, project_typestore, serialize
types = project_typestore().types
vector = types["geometry_msgs/msg/Vector3"]
data = serialize(types["geometry_msgs/msg/Twist"](linear=vector(x=1.0, y=0.0, z=0.0),
                 angular=vector(x=0.0, y=0.0, z=0.0)), "geometry_msgs/msg/Twist")
writer = BagWriter(sys.argv[1])
writer.add_topic("/cmd_vel", "geometry_msgs/msg/Twist")
for index in range(int(sys.argv[2])):
    writer.write("/cmd_vel", index * 1000, data)
print("written", flush=True)
time.sleep(60)
"""


def test_killed_writer_leaves_complete_chunks(tmp_path):
    import signal
    import subprocess
    import sys

    from mcap.exceptions import EndOfFile
    from mcap.records import Message
    from mcap.stream_reader import StreamReader

    bag = tmp_path / "killed"
    messages = 20000  # about 1.3 MB, more than one 1 MiB chunk
    process = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(bag), str(messages)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "written"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        process.stdout.close()

    assert not (bag / "metadata.yaml").exists()
    files = list(bag.glob("*.mcap"))
    assert len(files) == 1
    stamps = []
    with files[0].open("rb") as stream:
        try:
            for record in StreamReader(stream).records:
                if isinstance(record, Message):
                    stamps.append(record.log_time)
        except EndOfFile:
            pass  # the chunk that was open at the kill is incomplete
    # Every message of the completed chunks is readable, in order.
    assert len(stamps) > 1000
    assert len(stamps) < messages
    assert stamps == [index * 1000 for index in range(len(stamps))]
