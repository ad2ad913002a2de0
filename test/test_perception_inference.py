"""Command shaping, saliency and backends of the perception node, without ROS 2."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.inference import CommandLimits, CommandShaper, PolicyRunner
from liquid_driver.model import DrivingPolicy, PolicyConfig, save_checkpoint
from liquid_driver.saliency import conv_activations, saliency_overlay, visual_backprop

CAMERA_PERIOD_S = 0.05


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "random.safetensors"
    save_checkpoint(path, DrivingPolicy(PolicyConfig()), metadata={
        "preprocessing": Preprocessing().to_dict(),
        "training": {"median_dt": CAMERA_PERIOD_S},
    })
    return path


def test_shaper_clamps_steering_angle():
    shaper = CommandShaper(CommandLimits(wheelbase=0.25, max_steering_angle=0.3))
    command = shaper.shape(10.0, CAMERA_PERIOD_S)
    assert command.steering_angle == pytest.approx(0.3)
    assert command.curvature == pytest.approx(math.tan(0.3) / 0.25)
    assert command.yaw_rate == pytest.approx(command.speed * command.curvature)


def test_shaper_limits_steering_rate():
    shaper = CommandShaper(CommandLimits(max_steering_rate=2.0))
    shaper.shape(0.0, CAMERA_PERIOD_S)
    command = shaper.shape(-5.0, CAMERA_PERIOD_S)
    assert command.steering_angle == pytest.approx(-2.0 * CAMERA_PERIOD_S)
    shaper.reset()
    assert shaper.shape(-5.0, CAMERA_PERIOD_S).steering_angle == pytest.approx(-0.4)


def test_shaper_curvature_schedule_slows_in_bends():
    limits = CommandLimits(speed_mode="curvature", speed=1.5, min_speed=0.4,
                           max_lateral_acceleration=1.0)
    straight = CommandShaper(limits).shape(0.0, CAMERA_PERIOD_S)
    bend = CommandShaper(limits).shape(1.0, CAMERA_PERIOD_S)
    assert straight.speed == pytest.approx(1.5)
    # Steady turn: speed^2 x curvature = lateral acceleration.
    assert bend.speed == pytest.approx(math.sqrt(1.0 / bend.curvature))
    assert 0.4 <= bend.speed < 1.5


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_shaper_rejects_nonfinite_curvature(value):
    with pytest.raises(ValueError, match="must be finite"):
        CommandShaper(CommandLimits()).shape(value, CAMERA_PERIOD_S)


@pytest.mark.parametrize("changes,message", [
    ({"min_speed": 2.0}, "min_speed <= speed <= max_speed"),
    ({"speed": 3.0}, "min_speed <= speed <= max_speed"),
    ({"speed_mode": "turbo"}, "speed_mode='turbo' is invalid"),
    ({"max_steering_angle": 2.0}, "max_steering_angle=2.0 rad is invalid"),
    ({"wheelbase": 0.0}, "wheelbase=0.0 m is invalid"),
])
def test_limits_validate_names_bad_value(changes, message):
    reason = CommandLimits(**changes).validate()
    assert reason is not None
    assert message in reason
    with pytest.raises(ValueError):
        CommandShaper(CommandLimits(**changes))


def test_runner_debug_outputs_and_saliency(random_checkpoint):
    runner = PolicyRunner(random_checkpoint)
    rgb = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    plain = runner.predict(rgb, 1.0)
    assert plain.features is None
    assert plain.saliency is None
    runner.reset()
    debug = runner.predict(rgb, 1.0, debug=True, saliency=True)
    assert debug.curvature == pytest.approx(plain.curvature, abs=1e-6)
    assert debug.features.shape == (PolicyConfig().cnn.feature_size,)
    assert debug.neuron_states.shape == (PolicyConfig().controller.units,)
    assert debug.saliency.shape == (48, 128)
    assert debug.saliency.min() >= 0.0
    assert debug.saliency.max() <= 1.0
    assert debug.frame.shape == (48, 128, 3)


def test_visual_backprop_follows_active_region():
    # A deep map active only on the left half marks the left half of the input.
    shallow = torch.ones(24, 64)
    deep = torch.zeros(3, 8)
    deep[:, :4] = 1.0
    mask = visual_backprop([shallow, deep], (48, 128))
    assert mask.shape == (48, 128)
    assert mask[:, :40].mean() > 0.9
    assert mask[:, 90:].max() == 0.0
    overlay = saliency_overlay(np.zeros((48, 128, 3), np.uint8), mask)
    assert overlay[:, :40, 0].mean() > 100
    assert overlay[:, 90:].max() == 0


def test_conv_activations_one_map_per_layer():
    policy = DrivingPolicy(PolicyConfig()).eval()
    with torch.inference_mode():
        features, maps = conv_activations(policy.cnn, torch.rand(1, 3, 48, 128))
    assert features.shape == (1, PolicyConfig().cnn.feature_size)
    assert [tuple(m.shape) for m in maps] == [(24, 64), (12, 32), (6, 16), (3, 8)]


def test_onnx_runner_matches_torch(random_checkpoint, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx backend needs onnxruntime")
    pytest.importorskip("onnx", reason="exporting needs the onnx package")
    from liquid_driver.model import load_checkpoint
    from liquid_driver.model.export import export_onnx

    policy, metadata = load_checkpoint(random_checkpoint)
    onnx_path = tmp_path / "random.onnx"
    export_onnx(policy.eval(), onnx_path, metadata)
    torch_runner = PolicyRunner(random_checkpoint)
    onnx_runner = PolicyRunner(onnx_path, backend="onnx")
    rng = np.random.default_rng(1)
    for i in range(5):
        rgb = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        expected = torch_runner.predict(rgb, i * CAMERA_PERIOD_S).curvature
        actual = onnx_runner.predict(rgb, i * CAMERA_PERIOD_S).curvature
        assert actual == pytest.approx(expected, abs=1e-4)
    assert "onnx backend" in onnx_runner.description


def test_runner_rejects_unknown_backend(random_checkpoint):
    with pytest.raises(ValueError, match="backend='tflite' is invalid"):
        PolicyRunner(random_checkpoint, backend="tflite")
