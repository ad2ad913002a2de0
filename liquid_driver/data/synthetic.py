"""Build ROS 2 messages without rclpy, and synthetic recordings for tests and benchmarks.

The message builders return `rosbags` message objects from `project_typestore()`;
pass them to `liquid_driver.data.bag.serialize` for CDR bytes.

`write_bar_bag` records a scene whose correct steering is visible in every
frame: a bright vertical bar whose horizontal position encodes the commanded
curvature. A policy that learns anything from images beats the constant
prediction on it within a few epochs, which makes it a cheap end-to-end check
of recording, loading and training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from liquid_driver.data.bag import BagWriter, project_typestore, serialize

__all__ = [
    "BarSceneConfig",
    "bar_frame",
    "compressed_image_message",
    "header",
    "image_message",
    "string_message",
    "twist_message",
    "twist_stamped_message",
    "write_bar_bag",
]

_NS_PER_S = 1_000_000_000


def _types() -> Any:
    return project_typestore().types


def header(stamp_s: float, frame_id: str = "") -> Any:
    """Build a `std_msgs/msg/Header` with a stamp in seconds."""
    types = _types()
    stamp_ns = int(round(stamp_s * _NS_PER_S))
    stamp = types["builtin_interfaces/msg/Time"](sec=stamp_ns // _NS_PER_S, nanosec=stamp_ns % _NS_PER_S)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image_message(
    pixels: np.ndarray,
    stamp_s: float,
    encoding: str = "rgb8",
    *,
    step: int | None = None,
    frame_id: str = "camera",
) -> Any:
    """Build a `sensor_msgs/msg/Image` from raw pixel bytes.

    Args:
        pixels: (H, W, C) uint8 array already in the byte layout of `encoding`.
            An rgb8 image is (H, W, 3) and a YUV 4:2:2 image is (H, W, 2).
        stamp_s: Header stamp in seconds.
        encoding: The `encoding` field.
        step: Row length in bytes; rows are zero-padded when it exceeds W x C.
        frame_id: Header frame id.
    """
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]  # (H, W) -> (H, W, 1)
    height, width, channels = pixels.shape
    row_bytes = width * channels
    step = row_bytes if step is None else step
    rows = np.zeros((height, step), dtype=np.uint8)
    rows[:, :row_bytes] = pixels.reshape(height, row_bytes)  # (H, W, C) -> (H, W * C)
    return _types()["sensor_msgs/msg/Image"](
        header=header(stamp_s, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=step,
        data=rows.reshape(-1),
    )


def compressed_image_message(rgb: np.ndarray, stamp_s: float, image_format: str = "jpeg") -> Any:
    """Build a `sensor_msgs/msg/CompressedImage` by encoding an RGB frame as JPEG or PNG."""
    extension = {"jpeg": ".jpg", "png": ".png"}.get(image_format)
    if extension is None:
        raise ValueError(f"invalid image_format {image_format!r}; expected 'jpeg' or 'png'.")
    ok, encoded = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV failed to encode a {rgb.shape} frame as {image_format}.")
    return _types()["sensor_msgs/msg/CompressedImage"](
        header=header(stamp_s, "camera"), format=image_format, data=encoded.reshape(-1)
    )


def _vector3(x: float = 0.0, y: float = 0.0, z: float = 0.0) -> Any:
    return _types()["geometry_msgs/msg/Vector3"](x=float(x), y=float(y), z=float(z))


def twist_message(speed: float, yaw_rate: float) -> Any:
    """Build a `geometry_msgs/msg/Twist` with linear.x in m/s and angular.z in rad/s."""
    return _types()["geometry_msgs/msg/Twist"](linear=_vector3(x=speed), angular=_vector3(z=yaw_rate))


def twist_stamped_message(speed: float, yaw_rate: float, stamp_s: float) -> Any:
    """Build a `geometry_msgs/msg/TwistStamped` (m/s, rad/s, stamp in seconds)."""
    return _types()["geometry_msgs/msg/TwistStamped"](
        header=header(stamp_s, "base_link"), twist=twist_message(speed, yaw_rate)
    )


def string_message(text: str) -> Any:
    """Build a `std_msgs/msg/String`."""
    return _types()["std_msgs/msg/String"](data=text)


@dataclass(frozen=True)
class BarSceneConfig:
    """Synthetic bar scene: image size, timing and the curvature signal."""

    # Frame size in pixels; the default is a quarter of the simulator camera.
    height: int = 30
    width: int = 40
    # Camera period in seconds (20 Hz like the simulator).
    frame_period: float = 0.05
    # Commanded speed in m/s.
    speed: float = 1.0
    # Curvature range in 1/m. The bar centre moves from 90 % of the width at
    # -max_curvature to 10 % at +max_curvature.
    max_curvature: float = 1.5
    # Standard deviation of the per-pixel noise, in 8-bit levels.
    noise: float = 8.0


def bar_frame(curvature: float, config: BarSceneConfig, rng: np.random.Generator) -> np.ndarray:
    """Draw one (height, width, 3) uint8 frame whose bright bar encodes `curvature` (1/m)."""
    frame = np.full((config.height, config.width, 3), 40.0, dtype=np.float32)
    frame += rng.normal(0.0, config.noise, size=frame.shape).astype(np.float32)
    # Positive curvature (a left turn) puts the bar left of centre.
    fraction = 0.5 - 0.4 * float(np.clip(curvature / config.max_curvature, -1.0, 1.0))
    centre = int(round(fraction * (config.width - 1)))
    half_width = max(1, config.width // 20)
    frame[:, max(0, centre - half_width) : centre + half_width + 1] = 230.0
    return np.clip(frame, 0.0, 255.0).astype(np.uint8)


def write_bar_bag(
    path: str | Path,
    frames: int,
    config: BarSceneConfig | None = None,
    *,
    seed: int = 0,
    start_s: float = 100.0,
    storage: str = "mcap",
) -> np.ndarray:
    """Record `frames` bar-scene frames with Twist commands on the project topics.

    Each frame's command is logged 1 ms before the frame, so it is the command
    in force. The curvature follows a smooth random signal (a sum of sines),
    and the mode topic reads "expert" throughout.

    Returns:
        (frames,) float64 curvature in 1/m commanded for each frame.
    """
    config = config or BarSceneConfig()
    rng = np.random.default_rng(seed)
    times = start_s + config.frame_period * np.arange(frames)
    phases = rng.uniform(0.0, 2.0 * np.pi, size=3)
    periods = np.array([6.0, 2.7, 1.3])  # seconds
    signal = sum(np.sin(2.0 * np.pi * times / period + phase) for period, phase in zip(periods, phases))
    curvature = config.max_curvature * np.asarray(signal) / 3.0

    with BagWriter(path, storage=storage) as bag:
        bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        bag.add_topic("/cmd_vel", "geometry_msgs/msg/Twist")
        bag.add_topic("/driving_mode", "std_msgs/msg/String")
        start_ns = int(round(times[0] * _NS_PER_S))
        bag.write("/driving_mode", start_ns - 2_000_000, serialize(string_message("expert"), "std_msgs/msg/String"))
        for stamp_s, frame_curvature in zip(times, curvature):
            stamp_ns = int(round(stamp_s * _NS_PER_S))
            twist = twist_message(config.speed, frame_curvature * config.speed)
            bag.write("/cmd_vel", stamp_ns - 1_000_000, serialize(twist, "geometry_msgs/msg/Twist"))
            image = image_message(bar_frame(frame_curvature, config, rng), stamp_s)
            bag.write("/camera/image_raw", stamp_ns, serialize(image, "sensor_msgs/msg/Image"))
    return curvature
