"""Preprocessing: crop and resize, dict round trip, validation, tensor layout."""

import json

import numpy as np
import pytest
import torch

from liquid_driver.data.preprocess import Preprocessing, frames_to_tensor


def test_defaults_drop_sky_and_output_48x128():
    prep = Preprocessing()
    assert prep.output_size == (48, 128)
    assert 0.3 <= prep.crop_top <= 0.4


@pytest.mark.parametrize("source_shape", [(120, 160), (480, 640), (37, 53), (720, 1280), (48, 128)])
def test_apply_any_source_size(source_shape):
    rgb = np.random.default_rng(0).integers(0, 256, size=(*source_shape, 3), dtype=np.uint8)
    output = Preprocessing().apply(rgb)
    assert output.shape == (48, 128, 3)
    assert output.dtype == np.uint8


def test_apply_crops_expected_region():
    # Top 35 % red, the rest blue: after the default crop only blue remains.
    rgb = np.zeros((120, 160, 3), dtype=np.uint8)
    rgb[:42, :, 0] = 255
    rgb[42:, :, 2] = 255
    output = Preprocessing().apply(rgb)
    assert output[:, :, 0].max() == 0
    assert output[:, :, 2].min() == 255


def test_apply_side_crops():
    rgb = np.zeros((100, 100, 3), dtype=np.uint8)
    rgb[:, :10] = 255  # left strip
    rgb[:, 90:] = 128  # right strip
    rgb[80:] = 64  # bottom strip
    prep = Preprocessing(crop_top=0.0, crop_bottom=0.2, crop_left=0.1, crop_right=0.1, height=20, width=20)
    assert prep.crop_box(100, 100) == (0, 80, 10, 90)
    assert prep.apply(rgb).max() == 0


def test_crop_without_resize_is_exact():
    rgb = np.random.default_rng(1).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    prep = Preprocessing(crop_top=0.5, height=20, width=50)
    np.testing.assert_array_equal(prep.apply(rgb), rgb[20:])


def test_dict_round_trip_through_json():
    prep = Preprocessing(crop_top=0.4, crop_bottom=0.05, crop_left=0.02, crop_right=0.03, height=32, width=96)
    rebuilt = Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict())))
    assert rebuilt == prep


def test_from_dict_missing_keys_default():
    assert Preprocessing.from_dict({"height": 24}) == Preprocessing(height=24)


@pytest.mark.parametrize(
    "values, error, pattern",
    [
        ({"crop_top": 1.0}, ValueError, r"crop_top 1.0.*\[0, 1\)"),
        ({"crop_left": -0.1}, ValueError, "crop_left"),
        ({"crop_top": 0.6, "crop_bottom": 0.4}, ValueError, "vertical crop"),
        ({"crop_left": 0.5, "crop_right": 0.5}, ValueError, "horizontal crop"),
        ({"height": 0}, ValueError, "height 0"),
        ({"width": -3}, ValueError, "width -3"),
        ({"width": 12.5}, TypeError, "width"),
        ({"height": True}, TypeError, "height"),
        ({"crop_top": "0.3"}, TypeError, "crop_top"),
        ({"crop_middle": 0.1}, ValueError, "unknown Preprocessing keys"),
    ],
)
def test_from_dict_rejects(values, error, pattern):
    with pytest.raises(error, match=pattern):
        Preprocessing.from_dict(values)


def test_from_dict_rejects_non_mapping():
    with pytest.raises(TypeError, match="mapping"):
        Preprocessing.from_dict([("height", 4)])


def test_crop_leaving_no_pixels_raises():
    prep = Preprocessing(crop_top=0.45, crop_bottom=0.45, height=4, width=4)
    with pytest.raises(ValueError, match="leaves no pixels of a 10x4 source"):
        prep.apply(np.zeros((4, 10, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "bad, error",
    [
        (np.zeros((10, 10, 3), dtype=np.float32), TypeError),
        (np.zeros((10, 10), dtype=np.uint8), ValueError),
        (np.zeros((10, 10, 4), dtype=np.uint8), ValueError),
    ],
    ids=["float", "grey", "rgba"],
)
def test_apply_rejects_bad_frames(bad, error):
    with pytest.raises(error):
        Preprocessing().apply(bad)


def test_frames_to_tensor_layout_and_range():
    frames = np.zeros((2, 3, 4, 5, 3), dtype=np.uint8)  # (B, T, h, w, 3)
    frames[1, 2, 3, 4] = (255, 0, 51)
    tensor = frames_to_tensor(frames)
    assert tensor.shape == (2, 3, 3, 4, 5)
    assert tensor.dtype == torch.float32
    assert tensor[1, 2, :, 3, 4].tolist() == pytest.approx([1.0, 0.0, 0.2])
    assert float(tensor.sum()) == pytest.approx(1.2)


def test_frames_to_tensor_single_frame_and_tensor_input():
    frame = torch.full((4, 5, 3), 255, dtype=torch.uint8)
    tensor = frames_to_tensor(frame)
    assert tensor.shape == (3, 4, 5)
    assert float(tensor.min()) == 1.0


@pytest.mark.parametrize(
    "bad, error",
    [(np.zeros((2, 4, 5, 3), dtype=np.float32), TypeError), (np.zeros((2, 4, 5, 4), dtype=np.uint8), ValueError)],
    ids=["float", "four channels"],
)
def test_frames_to_tensor_rejects(bad, error):
    with pytest.raises(error):
        frames_to_tensor(bad)
