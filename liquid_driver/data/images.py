"""Convert ROS 2 image messages to RGB arrays and back.

The functions take plain values or duck-typed messages, so rclpy messages and
messages deserialised by `rosbags` both work:

* `sensor_msgs/msg/Image` needs `.encoding`, `.height`, `.width`, `.step`, `.data`.
* `sensor_msgs/msg/CompressedImage` needs `.format` and `.data`.

Every conversion returns an (H, W, 3) uint8 RGB array that owns its memory.
Conversions use numpy views and OpenCV, with no Python loop over pixels, because
the perception node converts every camera frame (20-30 Hz).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

__all__ = [
    "ImageFormatError",
    "SUPPORTED_ENCODINGS",
    "compressed_image_to_rgb",
    "image_to_rgb",
    "message_to_rgb",
    "raw_image_to_rgb",
    "rgb_to_image_fields",
]


class ImageFormatError(ValueError):
    """Image message whose encoding, sizes or data cannot be converted to RGB."""


# Bytes per pixel of each packed 8-bit encoding. The YUV 4:2:2 encodings store
# two pixels in four bytes, which averages to two bytes per pixel.
_BYTES_PER_PIXEL = {
    "rgb8": 3,
    "bgr8": 3,
    "rgba8": 4,
    "bgra8": 4,
    "mono8": 1,
    "8UC1": 1,
    "8UC3": 3,
    "yuv422": 2,
    "uyvy": 2,
    "yuv422_yuy2": 2,
    "yuyv": 2,
}

# OpenCV conversion to RGB for each encoding that is not RGB already. The names
# follow sensor_msgs/image_encodings.hpp: "yuv422" is UYVY (U Y0 V Y1) and
# "yuv422_yuy2" is YUYV (Y0 U Y1 V). "uyvy" and "yuyv" are the FourCC aliases
# that some V4L2 drivers publish. "8UC3" is read as BGR, as cv_bridge does.
_CV2_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "8UC3": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "8UC1": cv2.COLOR_GRAY2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV,
    "yuyv": cv2.COLOR_YUV2RGB_YUYV,
}

_YUV422_ENCODINGS = frozenset({"yuv422", "uyvy", "yuv422_yuy2", "yuyv"})

SUPPORTED_ENCODINGS = tuple(sorted(_BYTES_PER_PIXEL))
"""Raw `sensor_msgs/msg/Image` encodings that `raw_image_to_rgb` converts."""

# CompressedImage formats are free text such as "jpeg", "png" or
# "rgb8; jpeg compressed bgr8" (image_transport). Depth images compressed by
# compressed_depth_image_transport carry a private header that imdecode cannot read.
_COMPRESSED_DEPTH_MARKER = "compresseddepth"


def raw_image_to_rgb(
    encoding: str, height: int, width: int, step: int, data: Any
) -> np.ndarray:
    """Convert the fields of a `sensor_msgs/msg/Image` to an RGB array.

    Args:
        encoding: One of `SUPPORTED_ENCODINGS`.
        height: Image height in pixels.
        width: Image width in pixels.
        step: Row length in bytes, at least width x bytes per pixel. Bytes past
            the pixels of each row are padding and are dropped.
        data: Pixel bytes (bytes, bytearray, memoryview, array or uint8 ndarray)
            of length height x step.

    Returns:
        An (height, width, 3) uint8 RGB array.

    Raises:
        ImageFormatError: The encoding is unknown, a size is zero, `step` is too
            small, the data length is not height x step, or a YUV 4:2:2 image
            has an odd width.
    """
    encoding = str(encoding)
    height = int(height)
    width = int(width)
    step = int(step)

    bytes_per_pixel = _BYTES_PER_PIXEL.get(encoding)
    if bytes_per_pixel is None:
        raise ImageFormatError(
            f"unsupported image encoding {encoding!r} ({width}x{height}); "
            f"expected one of {', '.join(SUPPORTED_ENCODINGS)}. "
            "Publish one of these encodings or a CompressedImage."
        )
    if height <= 0 or width <= 0:
        raise ImageFormatError(
            f"invalid {encoding} image size {width}x{height} (width x height); "
            "expected a positive width and height."
        )
    row_bytes = width * bytes_per_pixel
    if step < row_bytes:
        raise ImageFormatError(
            f"invalid step {step} bytes for a {width}x{height} {encoding} image; expected at "
            f"least width x {bytes_per_pixel} bytes per pixel = {row_bytes} bytes."
        )
    if encoding in _YUV422_ENCODINGS and width % 2 != 0:
        raise ImageFormatError(
            f"invalid width {width} for a {encoding} image; expected an even width "
            "because YUV 4:2:2 stores pixels in pairs."
        )

    buffer = _as_uint8_buffer(data)
    if buffer.size != height * step:
        raise ImageFormatError(
            f"invalid data length {buffer.size} bytes for a {width}x{height} {encoding} "
            f"image with step {step}; expected height x step = {height * step} bytes."
        )

    # (height * step,) -> (height, step) -> drop row padding -> (height, width, channels)
    rows = buffer.reshape(height, step)[:, :row_bytes]
    channels = 2 if encoding in _YUV422_ENCODINGS else bytes_per_pixel
    pixels = rows.reshape(height, width, channels)

    if encoding == "rgb8":
        return pixels.copy()
    code = _CV2_TO_RGB[encoding]
    if channels == 1:
        pixels = pixels[:, :, 0]
    # cvtColor needs contiguous rows; a padded step leaves a strided view.
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def image_to_rgb(msg: Any) -> np.ndarray:
    """Convert a `sensor_msgs/msg/Image` (or any object with its fields) to RGB.

    Raises:
        ImageFormatError: See `raw_image_to_rgb`.
    """
    return raw_image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, msg.data)


def compressed_image_to_rgb(msg: Any) -> np.ndarray:
    """Decode a `sensor_msgs/msg/CompressedImage` (JPEG or PNG) to RGB.

    Args:
        msg: Object with `.format` (free text such as "jpeg", "png" or
            "bgr8; jpeg compressed bgr8") and `.data` (the compressed bytes).

    Returns:
        An (H, W, 3) uint8 RGB array. Grey images are expanded to three channels.

    Raises:
        ImageFormatError: The data is empty, is a compressed depth image, or
            OpenCV cannot decode it.
    """
    image_format = str(getattr(msg, "format", ""))
    buffer = _as_uint8_buffer(msg.data)
    if _COMPRESSED_DEPTH_MARKER in image_format.replace(" ", "").lower():
        raise ImageFormatError(
            f"unsupported CompressedImage format {image_format!r}; compressed depth images "
            "are not camera frames. Select the colour image topic instead."
        )
    if buffer.size == 0:
        raise ImageFormatError(
            f"empty CompressedImage data (format {image_format!r}); expected JPEG or PNG bytes."
        )
    bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageFormatError(
            f"failed to decode CompressedImage of {buffer.size} bytes with format "
            f"{image_format!r}; expected JPEG or PNG data that OpenCV can read."
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def message_to_rgb(msg: Any) -> np.ndarray:
    """Convert an Image or a CompressedImage message to RGB, chosen by its fields.

    Raises:
        TypeError: The object has neither an `encoding` nor a `format` field.
        ImageFormatError: The message cannot be converted.
    """
    if hasattr(msg, "encoding"):
        return image_to_rgb(msg)
    if hasattr(msg, "format"):
        return compressed_image_to_rgb(msg)
    raise TypeError(
        f"expected a sensor_msgs/msg/Image or CompressedImage, got {type(msg).__name__} "
        "without an 'encoding' or 'format' field."
    )


def rgb_to_image_fields(rgb: np.ndarray) -> tuple[int, int, str, int, bytes]:
    """Pack an RGB array into the fields of an rgb8 `sensor_msgs/msg/Image`.

    Args:
        rgb: (H, W, 3) uint8 array.

    Returns:
        (height, width, encoding, step, data), with encoding "rgb8", step
        width x 3 bytes (no row padding) and data of height x step bytes.

    Raises:
        TypeError: `rgb` is not a uint8 numpy array.
        ValueError: `rgb` is not (H, W, 3) with positive H and W.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
        raise TypeError(
            f"expected an (H, W, 3) uint8 numpy array, got "
            f"{type(rgb).__name__} of dtype {getattr(rgb, 'dtype', None)}; convert with "
            "np.asarray(image, dtype=np.uint8)."
        )
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(
            f"invalid RGB array shape {rgb.shape}; expected (H, W, 3) with H and W positive."
        )
    height, width = int(rgb.shape[0]), int(rgb.shape[1])
    return height, width, "rgb8", width * 3, np.ascontiguousarray(rgb).tobytes()


def _as_uint8_buffer(data: Any) -> np.ndarray:
    """View message data as a flat uint8 array without copying where possible."""
    if isinstance(data, np.ndarray):
        if data.dtype.itemsize != 1:
            raise ImageFormatError(
                f"invalid image data dtype {data.dtype}; expected a uint8 byte buffer."
            )
        return data.reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    # rclpy exposes uint8[] fields as array.array('B') or a list of ints.
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)
