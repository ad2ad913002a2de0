"""Image message conversion: every encoding, padded rows, compressed frames, bad input."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from liquid_driver.data.images import (
    ImageFormatError,
    compressed_image_to_rgb,
    image_to_rgb,
    message_to_rgb,
    raw_image_to_rgb,
    rgb_to_image_fields,
)
from liquid_driver.data.synthetic import compressed_image_message, image_message

HEIGHT, WIDTH = 5, 8


@pytest.fixture
def rgb():
    """Known RGB frame; pixel pairs share a colour so YUV 4:2:2 loses no chroma."""
    rng = np.random.default_rng(7)
    half = rng.integers(0, 256, size=(HEIGHT, WIDTH // 2, 3), dtype=np.uint8)
    return np.repeat(half, 2, axis=1)


def _packed(rgb, encoding):
    """Return the pixels of `rgb` in `encoding`'s byte layout."""
    if encoding == "rgb8":
        return rgb
    if encoding in ("bgr8", "8UC3"):
        return rgb[:, :, ::-1]
    if encoding == "rgba8":
        return np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    if encoding == "bgra8":
        return np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 17, np.uint8)])
    if encoding in ("yuv422_yuy2", "yuyv"):
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_YUYV)
    if encoding in ("yuv422", "uyvy"):
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_UYVY)
    raise AssertionError(encoding)


# Largest per-channel error after a YUV 4:2:2 round trip, in 8-bit levels. The
# limited-range YUV quantisation loses a few levels; swapped byte orders lose over 50.
YUV_TOLERANCE = 6


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "8UC3", "rgba8", "bgra8"])
@pytest.mark.parametrize("padding", [0, 3, 16])
def test_colour_encodings_exact(rgb, encoding, padding):
    packed = _packed(rgb, encoding)
    step = WIDTH * packed.shape[2] + padding
    msg = image_message(packed, 1.0, encoding, step=step)
    converted = image_to_rgb(msg)
    assert converted.shape == (HEIGHT, WIDTH, 3)
    assert converted.dtype == np.uint8
    np.testing.assert_array_equal(converted, rgb)


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
@pytest.mark.parametrize("padding", [0, 5])
def test_mono_expands_to_grey_rgb(rgb, encoding, padding):
    grey = rgb[:, :, 1]
    msg = image_message(grey, 1.0, encoding, step=WIDTH + padding)
    converted = image_to_rgb(msg)
    np.testing.assert_array_equal(converted, np.dstack([grey, grey, grey]))


@pytest.mark.parametrize("encoding", ["yuv422_yuy2", "yuyv", "yuv422", "uyvy"])
@pytest.mark.parametrize("padding", [0, 4])
def test_yuv422_round_trip(rgb, encoding, padding):
    packed = _packed(rgb, encoding)
    msg = image_message(packed, 1.0, encoding, step=WIDTH * 2 + padding)
    converted = image_to_rgb(msg).astype(int)
    assert converted.shape == (HEIGHT, WIDTH, 3)
    assert np.abs(converted - rgb.astype(int)).max() <= YUV_TOLERANCE


def test_yuv422_means_uyvy_order(rgb):
    """sensor_msgs "yuv422" is UYVY, so YUYV bytes under that name decode wrongly."""
    yuyv_bytes = _packed(rgb, "yuyv")
    msg = image_message(yuyv_bytes, 1.0, "yuv422")
    error = np.abs(image_to_rgb(msg).astype(int) - rgb.astype(int)).max()
    assert error > 50


def test_result_owns_memory(rgb):
    msg = image_message(rgb, 1.0, "rgb8")
    converted = image_to_rgb(msg)
    converted[0, 0] = 0
    assert converted.flags.writeable
    assert msg.data[0] == rgb[0, 0, 0]


@pytest.mark.parametrize("data_type", [bytes, bytearray, memoryview, list])
def test_data_buffer_types(rgb, data_type):
    data = rgb.tobytes()
    buffer = list(data) if data_type is list else data_type(data)
    converted = raw_image_to_rgb("rgb8", HEIGHT, WIDTH, WIDTH * 3, buffer)
    np.testing.assert_array_equal(converted, rgb)


MALFORMED = {
    "unknown encoding": ("rgb16", HEIGHT, WIDTH, WIDTH * 6, HEIGHT * WIDTH * 6),
    "bayer encoding": ("bayer_rggb8", HEIGHT, WIDTH, WIDTH, HEIGHT * WIDTH),
    "zero height": ("rgb8", 0, WIDTH, WIDTH * 3, 0),
    "zero width": ("rgb8", HEIGHT, 0, 0, 0),
    "step too small": ("rgb8", HEIGHT, WIDTH, WIDTH * 3 - 1, HEIGHT * (WIDTH * 3 - 1)),
    "data too short": ("rgb8", HEIGHT, WIDTH, WIDTH * 3, HEIGHT * WIDTH * 3 - 1),
    "data too long": ("bgr8", HEIGHT, WIDTH, WIDTH * 3, HEIGHT * WIDTH * 3 + 3),
    "padding missing from data": ("rgb8", HEIGHT, WIDTH, WIDTH * 3 + 4, HEIGHT * WIDTH * 3),
    "odd yuv width": ("yuyv", HEIGHT, 7, 14, HEIGHT * 14),
    "mono step too small": ("mono8", HEIGHT, WIDTH, WIDTH - 1, HEIGHT * (WIDTH - 1)),
}


@pytest.mark.parametrize("case", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_image_raises(case):
    encoding, height, width, step, length = case
    with pytest.raises(ImageFormatError) as error:
        raw_image_to_rgb(encoding, height, width, step, bytes(length))
    message = str(error.value)
    assert encoding in message
    assert "expected" in message


def test_malformed_error_names_sizes():
    pattern = r"116 bytes for a 8x5 rgb8 image with step 24; expected height x step = 120"
    with pytest.raises(ImageFormatError, match=pattern):
        raw_image_to_rgb("rgb8", 5, 8, 24, bytes(116))


def test_image_format_error_is_value_error():
    assert issubclass(ImageFormatError, ValueError)


@pytest.mark.parametrize("image_format", ["png", "jpeg"])
def test_compressed_image_decodes(rgb, image_format):
    large = cv2.resize(rgb, (64, 40), interpolation=cv2.INTER_NEAREST)
    msg = compressed_image_message(large, 2.0, image_format)
    converted = compressed_image_to_rgb(msg)
    assert converted.shape == large.shape
    if image_format == "png":
        np.testing.assert_array_equal(converted, large)
    else:
        # JPEG is lossy; a colour swap would still show as a large mean error.
        assert np.abs(converted.astype(int) - large.astype(int)).mean() < 12


def test_message_dispatch(rgb):
    raw = image_message(rgb, 1.0, "rgb8")
    compressed = compressed_image_message(rgb, 1.0, "png")
    np.testing.assert_array_equal(message_to_rgb(raw), rgb)
    np.testing.assert_array_equal(message_to_rgb(compressed), rgb)
    with pytest.raises(TypeError, match="encoding"):
        message_to_rgb(SimpleNamespace(data=b""))


@pytest.mark.parametrize(
    "image_format, data",
    [("jpeg", b""), ("png", b"not an image at all"), ("16UC1; compressedDepth png", b"\x00" * 20)],
    ids=["empty", "garbage", "compressed depth"],
)
def test_malformed_compressed_raises(image_format, data):
    with pytest.raises(ImageFormatError, match="CompressedImage"):
        compressed_image_to_rgb(SimpleNamespace(format=image_format, data=data))


def test_rgb_to_image_fields_round_trip(rgb):
    height, width, encoding, step, data = rgb_to_image_fields(rgb)
    assert (height, width, encoding, step) == (HEIGHT, WIDTH, "rgb8", WIDTH * 3)
    assert len(data) == height * step
    np.testing.assert_array_equal(raw_image_to_rgb(encoding, height, width, step, data), rgb)


def test_rgb_to_image_fields_non_contiguous(rgb):
    flipped = rgb[:, ::-1]
    height, width, encoding, step, data = rgb_to_image_fields(flipped)
    np.testing.assert_array_equal(raw_image_to_rgb(encoding, height, width, step, data), flipped)


@pytest.mark.parametrize(
    "bad, error",
    [
        (np.zeros((4, 4, 3), np.float32), TypeError),
        (np.zeros((4, 4), np.uint8), ValueError),
        (np.zeros((4, 4, 4), np.uint8), ValueError),
        (np.zeros((0, 4, 3), np.uint8), ValueError),
        ([[0, 0, 0]], TypeError),
    ],
    ids=["float", "2-d", "four channels", "empty", "list"],
)
def test_rgb_to_image_fields_rejects(bad, error):
    with pytest.raises(error):
        rgb_to_image_fields(bad)
