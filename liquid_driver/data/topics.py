"""Message types and topic selection for loading demonstrations from bags."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from liquid_driver.data.errors import DatasetError

if TYPE_CHECKING:
    from liquid_driver.data.dataset import DatasetConfig

__all__ = [
    "ACKERMANN_STAMPED_TYPE",
    "BagTopics",
    "COMMAND_TYPES",
    "DEFAULT_TOPICS",
    "IMAGE_TYPES",
    "MODE_TYPE",
    "TWIST_STAMPED_TYPE",
    "TWIST_TYPE",
    "command_speed_curvature",
    "resolve_topics",
]

logger = logging.getLogger(__name__)

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
TWIST_TYPE = "geometry_msgs/msg/Twist"
TWIST_STAMPED_TYPE = "geometry_msgs/msg/TwistStamped"
ACKERMANN_STAMPED_TYPE = "ackermann_msgs/msg/AckermannDriveStamped"
COMMAND_TYPES = (TWIST_TYPE, TWIST_STAMPED_TYPE, ACKERMANN_STAMPED_TYPE)
MODE_TYPE = "std_msgs/msg/String"

# Topic names of the project. When several topics of a role's type exist, the
# one with this name is used.
DEFAULT_TOPICS = {"image": "/camera/image_raw", "command": "/cmd_vel", "mode": "/driving_mode"}


@dataclass(frozen=True)
class BagTopics:
    """Topics selected in one bag, with their message types."""

    image: str
    image_type: str
    command: str
    command_type: str
    mode: str | None


def resolve_topics(topics: Mapping[str, str], config: DatasetConfig, bag_name: str = "bag") -> BagTopics:
    """Select the image, command and mode topics of a bag.

    A topic named in `config` must exist with a suitable type. Otherwise the
    topic is chosen by type: the only topic of a suitable type, else the
    project's topic name (`/camera/image_raw`, `/cmd_vel`, `/driving_mode`)
    among them, else the only raw `sensor_msgs/msg/Image` topic for images.

    Args:
        topics: Topic names mapped to message types.
        config: Requested topics.
        bag_name: Bag name for error messages.

    Raises:
        DatasetError: A needed topic is missing or the choice is ambiguous.
            The message lists every topic and type in the bag.
    """
    image = _find_topic(topics, config.image_topic, IMAGE_TYPES, "image", bag_name)
    command = _find_topic(topics, config.command_topic, COMMAND_TYPES, "command", bag_name)
    mode = None
    if not config.ignore_modes:
        mode = _find_topic(topics, config.mode_topic, (MODE_TYPE,), "mode", bag_name)
    for role, topic, accepted_types in (("image", image, IMAGE_TYPES), ("command", command, COMMAND_TYPES)):
        if topic is None:
            raise DatasetError(
                f"no {role} topic in bag {bag_name}; expected a topic of type "
                f"{' or '.join(accepted_types)}. {_describe_topics(topics)}"
            )
    return BagTopics(
        image=image,
        image_type=topics[image],
        command=command,
        command_type=topics[command],
        mode=mode,
    )


def _find_topic(
    topics: Mapping[str, str],
    requested: str | None,
    accepted_types: Sequence[str],
    role: str,
    bag_name: str,
) -> str | None:
    """Return the topic for `role`, or None when the bag has no topic of its types."""
    option = f"DatasetConfig.{role}_topic (--{role}-topic)"
    if requested is not None:
        if requested not in topics:
            raise DatasetError(
                f"{role} topic {requested!r} not found in bag {bag_name}. "
                f"{_describe_topics(topics)}Set {option} to one of these topics."
            )
        if topics[requested] not in accepted_types:
            raise DatasetError(
                f"{role} topic {requested!r} in bag {bag_name} has type {topics[requested]}; "
                f"expected one of {', '.join(accepted_types)}. {_describe_topics(topics)}"
            )
        return requested

    candidates = sorted(name for name, msgtype in topics.items() if msgtype in accepted_types)
    if not candidates:
        return None
    if len(candidates) == 1:
        return candidates[0]
    if DEFAULT_TOPICS[role] in candidates:
        chosen = DEFAULT_TOPICS[role]
        logger.info("Bag %s: using %s topic %s of %s", bag_name, role, chosen, candidates)
        return chosen
    if role == "image":
        raw_topics = [name for name in candidates if topics[name] == IMAGE_TYPES[0]]
        if len(raw_topics) == 1:
            logger.info("Bag %s: using raw image topic %s of %s", bag_name, raw_topics[0], candidates)
            return raw_topics[0]
    raise DatasetError(
        f"ambiguous {role} topic in bag {bag_name}: {', '.join(candidates)} all have a suitable "
        f"type. Set {option} to choose one. {_describe_topics(topics)}"
    )


def _describe_topics(topics: Mapping[str, str]) -> str:
    if not topics:
        return "The bag contains no topics. "
    lines = "".join(f"\n  {name} [{msgtype}]" for name, msgtype in sorted(topics.items()))
    return f"The bag contains:{lines}\n"


def command_speed_curvature(msg: Any, msgtype: str, wheelbase: float | None = None) -> tuple[float, float]:
    """Return (speed in m/s, path curvature in 1/m) of a command message.

    Twist and TwistStamped: curvature = angular.z / linear.x, which is NaN at
    zero speed. AckermannDriveStamped: curvature = tan(steering_angle) / wheelbase.

    Raises:
        DatasetError: The type is not a command type, or an Ackermann command
            comes without a wheelbase.
    """
    if msgtype == TWIST_TYPE or msgtype == TWIST_STAMPED_TYPE:
        twist = msg if msgtype == TWIST_TYPE else msg.twist
        speed = float(twist.linear.x)
        yaw_rate = float(twist.angular.z)
        curvature = yaw_rate / speed if speed != 0.0 else math.nan
        return speed, curvature
    if msgtype == ACKERMANN_STAMPED_TYPE:
        if wheelbase is None:
            raise DatasetError(
                "AckermannDriveStamped commands need the wheelbase to convert the steering "
                "angle to curvature; set DatasetConfig.wheelbase (--wheelbase) in metres."
            )
        speed = float(msg.drive.speed)
        curvature = math.tan(float(msg.drive.steering_angle)) / wheelbase
        return speed, curvature
    raise DatasetError(
        f"unsupported command type {msgtype}; expected one of {', '.join(COMMAND_TYPES)}."
    )
