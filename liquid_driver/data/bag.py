"""Write rosbag2 recordings from already-serialised CDR messages.

The recorder node subscribes with `raw=True`, so rclpy hands it the CDR bytes
of each message and `BagWriter.write` stores them unchanged. Message
definitions come from the `rosbags` typestore (ROS 2 Kilted standard types plus
`ackermann_msgs`), so the bags open in `ros2 bag`, Foxglove and
`rosbags.highlevel.AnyReader`.

`serialize` builds the same CDR bytes from `rosbags` message objects, for tests
and tools that run without rclpy.
"""

from __future__ import annotations

import functools
import logging
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

__all__ = [
    "BAG_VERSION",
    "STORAGE_PLUGINS",
    "BagWriter",
    "project_typestore",
    "serialize",
]

logger = logging.getLogger(__name__)

# rosbag2 metadata version: the newest that rosbags 0.11 writes.
BAG_VERSION = 9

STORAGE_PLUGINS = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
"""Storage names accepted by `BagWriter`, as `ros2 bag record --storage` spells them."""

# ackermann_msgs is not part of the rosbags standard stores. These are the
# field lists of ackermann_msgs/msg/AckermannDrive and AckermannDriveStamped.
_ACKERMANN_DRIVE_MSG = """\
float32 steering_angle
float32 steering_angle_velocity
float32 speed
float32 acceleration
float32 jerk
"""
_ACKERMANN_DRIVE_STAMPED_MSG = """\
std_msgs/Header header
ackermann_msgs/AckermannDrive drive
"""


def _build_typestore() -> Typestore:
    typestore = get_typestore(Stores.ROS2_KILTED)
    extra_types = {}
    extra_types.update(get_types_from_msg(_ACKERMANN_DRIVE_MSG, "ackermann_msgs/msg/AckermannDrive"))
    extra_types.update(
        get_types_from_msg(_ACKERMANN_DRIVE_STAMPED_MSG, "ackermann_msgs/msg/AckermannDriveStamped")
    )
    typestore.register(extra_types)
    return typestore


@functools.lru_cache(maxsize=1)
def project_typestore() -> Typestore:
    """Return the shared typestore: ROS 2 Kilted types plus `ackermann_msgs`.

    Build message objects from it with
    `project_typestore().types["sensor_msgs/msg/Image"](...)`. The store is
    shared, so do not register conflicting types in it.
    """
    return _build_typestore()


def serialize(msg: Any, msgtype: str) -> bytes:
    """Serialise a `rosbags` message object to CDR bytes, as rclpy publishes them.

    Args:
        msg: Message object built from `project_typestore().types[msgtype]`.
        msgtype: ROS 2 type name such as "geometry_msgs/msg/Twist".

    Raises:
        ValueError: `msgtype` is not in the project typestore.
    """
    typestore = project_typestore()
    if msgtype not in typestore.fielddefs:
        raise ValueError(
            f"unknown message type {msgtype!r}; the project typestore has the ROS 2 Kilted "
            "standard types and ackermann_msgs. Use a type name like 'geometry_msgs/msg/Twist'."
        )
    return bytes(typestore.serialize_cdr(msg, msgtype))


class BagWriter:
    """rosbag2 writer for CDR messages, safe to call from several threads.

    The bag directory is created on construction and must not exist yet. Use it
    as a context manager, or call `close()` (which is idempotent). Leaving the
    context through an exception still closes the bag, so the messages written
    until then stay readable.

    Example:
        with BagWriter("runs/demo_bag") as bag:
            bag.add_topic("/cmd_vel", "geometry_msgs/msg/Twist")
            bag.write("/cmd_vel", stamp_ns, cdr_bytes)
    """

    def __init__(self, path: str | Path, storage: str = "mcap") -> None:
        """Create the bag directory and open its storage file.

        Args:
            path: Bag directory to create.
            storage: "mcap" (the ROS 2 default since Iron) or "sqlite3".

        Raises:
            ValueError: `storage` is not one of `STORAGE_PLUGINS`.
            FileExistsError: `path` exists already.
        """
        if storage not in STORAGE_PLUGINS:
            raise ValueError(
                f"invalid bag storage {storage!r}; expected one of {sorted(STORAGE_PLUGINS)}."
            )
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(
                f"bag directory {self.path} exists already and BagWriter never overwrites a "
                "recording; choose a new path or delete the old bag first."
            )
        self.storage = storage
        self._typestore = project_typestore()
        self._lock = threading.Lock()
        self._connections: dict[str, Any] = {}
        self._msgtypes: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._closed = False
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=STORAGE_PLUGINS[storage])
        self._writer.open()
        try:
            logger.info("Opened %s bag %s for writing", storage, self.path)
        except BaseException:
            # The caller never receives this object, so a Ctrl-C here would leave the bag open
            # for good and without metadata.yaml.
            self.close()
            raise

    @property
    def closed(self) -> bool:
        """Whether `close()` has run."""
        return self._closed

    @property
    def topics(self) -> dict[str, str]:
        """Registered topics mapped to their message types."""
        with self._lock:
            return dict(self._msgtypes)

    @property
    def message_counts(self) -> dict[str, int]:
        """Number of messages written per topic."""
        with self._lock:
            return dict(self._counts)

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Register a topic with its message type, such as "sensor_msgs/msg/Image".

        Registering the same topic with the same type again does nothing.

        Raises:
            ValueError: The type is unknown, or the topic has another type already.
            RuntimeError: The bag is closed.
        """
        if msgtype not in self._typestore.fielddefs:
            raise ValueError(
                f"unknown message type {msgtype!r} for topic {topic!r}; BagWriter knows the "
                "ROS 2 Kilted standard types and ackermann_msgs. Use a name like "
                "'sensor_msgs/msg/Image'."
            )
        with self._lock:
            self._check_open()
            registered = self._msgtypes.get(topic)
            if registered == msgtype:
                return
            if registered is not None:
                raise ValueError(
                    f"topic {topic!r} is registered with type {registered!r} already, so it "
                    f"cannot also carry {msgtype!r}; record the second type on another topic."
                )
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype, typestore=self._typestore
            )
            self._msgtypes[topic] = msgtype
            self._counts[topic] = 0
        logger.debug("Bag %s: added topic %s (%s)", self.path, topic, msgtype)

    def write(self, topic: str, timestamp_ns: int, cdr_bytes: bytes | bytearray | memoryview) -> None:
        """Write one serialised message.

        Args:
            topic: A topic registered with `add_topic`.
            timestamp_ns: Receive (log) time in nanoseconds, at least 0.
            cdr_bytes: CDR-serialised message, including the 4-byte encapsulation
                header, as rclpy `raw=True` subscriptions and `serialize` produce.

        Raises:
            ValueError: The topic is not registered, or the timestamp is negative.
            TypeError: The timestamp is not an int or the data is not bytes-like.
            RuntimeError: The bag is closed.
        """
        if isinstance(timestamp_ns, bool) or not isinstance(timestamp_ns, int):
            raise TypeError(
                f"timestamp_ns must be an int in nanoseconds, got {timestamp_ns!r}; "
                "convert seconds with int(seconds * 1e9)."
            )
        if timestamp_ns < 0:
            raise ValueError(f"invalid timestamp_ns {timestamp_ns}; expected at least 0.")
        if not isinstance(cdr_bytes, (bytes, bytearray, memoryview)):
            raise TypeError(
                f"cdr_bytes must be bytes, bytearray or memoryview, got {type(cdr_bytes).__name__}."
            )
        with self._lock:
            self._check_open()
            connection = self._connections.get(topic)
            if connection is None:
                raise ValueError(
                    f"topic {topic!r} is not registered in bag {self.path}; registered topics: "
                    f"{sorted(self._connections)}. Call add_topic first."
                )
            self._writer.write(connection, timestamp_ns, cdr_bytes)
            self._counts[topic] += 1

    def set_custom_data(self, key: str, value: str) -> None:
        """Store a string in the `custom_data` of the bag's metadata.yaml, written on close.

        `ros2 bag info` does not print it; read it with
        `yaml.safe_load(open("metadata.yaml"))["rosbag2_bagfile_information"]["custom_data"]`.

        Raises:
            TypeError: `key` or `value` is not a string.
            RuntimeError: The bag is closed.
        """
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"custom data key and value must be strings, got {key!r}: {value!r}; "
                "serialise other values, for example with json.dumps."
            )
        with self._lock:
            self._check_open()
            self._writer.set_custom_data(key, value)

    def storage_bytes(self) -> int:
        """Return the size of the storage files written so far, in bytes."""
        return sum(path.stat().st_size for path in self.path.iterdir() if path.is_file())

    def close(self) -> None:
        """Finish the storage file and write metadata.yaml; later calls do nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._writer.close()
        total = sum(self._counts.values())
        logger.info("Closed bag %s with %d messages: %s", self.path, total, self._counts)

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            logger.warning(
                "Closing bag %s after %s: %s", self.path, exc_type.__name__, exc_value
            )
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"bag {self.path} is closed; open a new BagWriter to record more.")
