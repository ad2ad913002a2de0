"""LSTM and feedforward controllers: the baselines that the NCP is compared with."""

import json

import numpy as np
import pytest
import torch

from liquid_driver.data.dataset import load_episodes
from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.data.synthetic import BarSceneConfig, write_bar_bag
from liquid_driver.model import (
    ControllerConfig,
    DrivingPolicy,
    OnnxPolicy,
    PolicyConfig,
    export_onnx,
    load_checkpoint,
    save_checkpoint,
)
from liquid_driver.model.baselines import FeedforwardController, LSTMController
from liquid_driver.model.wiring import AutoNCP
from liquid_driver.train.cli import main as train_main
from liquid_driver.train.loop import rollout


def make_policy(cell, units=19, seed=0):
    torch.manual_seed(seed)
    return DrivingPolicy(PolicyConfig(controller=ControllerConfig(cell=cell, units=units))).eval()


def test_lstm_steps_match_sequence():
    controller = LSTMController(8, 16)
    x = torch.randn(3, 7, 8)
    with torch.no_grad():
        outputs, final = controller(x, 0.05)
        state = controller.initial_state(3)
        stepped = []
        for index in range(7):
            output, state = controller.step(x[:, index], state, 0.05)
            stepped.append(output)
    assert final.shape == (3, 32)
    assert torch.allclose(torch.stack(stepped, dim=1), outputs, atol=1e-6)
    assert torch.allclose(state, final, atol=1e-6)


def test_lstm_ignores_dt_value():
    controller = LSTMController(8, 16)
    x = torch.randn(2, 5, 8)
    with torch.no_grad():
        fast, _ = controller(x, 0.01)
        slow, _ = controller(x, 0.5)
    assert torch.equal(fast, slow)


def test_cfc_uses_dt_value():
    policy = make_policy("cfc")
    features = torch.randn(2, 5, policy.config.cnn.feature_size)
    with torch.no_grad():
        fast, _ = policy.controller(features, 0.01)
        slow, _ = policy.controller(features, 0.5)
    assert not torch.allclose(fast, slow, atol=1e-4)


@pytest.mark.parametrize("cell", ["lstm", "feedforward"])
def test_baseline_rejects_negative_dt(cell):
    policy = make_policy(cell)
    image = torch.rand(1, 3, 48, 128)
    with pytest.raises(ValueError, match="dt"):
        policy.step(image, policy.initial_state(1), -0.05)


def test_feedforward_has_no_memory():
    controller = FeedforwardController(8, (12, 6))
    x = torch.randn(1, 6, 8)
    with torch.no_grad():
        outputs, state = controller(x, 0.05)
        reversed_outputs, _ = controller(x.flip(1), 0.05)
    assert state.shape == (1, 0)
    assert torch.allclose(outputs.flip(1), reversed_outputs, atol=1e-6)


def test_feedforward_layer_widths():
    controller = FeedforwardController(32, (100, 50, 10))
    linear = [module for module in controller.layers if isinstance(module, torch.nn.Linear)]
    assert [layer.out_features for layer in linear] == [100, 50, 10, 1]
    assert controller.count_parameters().total == 32 * 100 + 100 + 100 * 50 + 50 + 50 * 10 + 10 + 10 + 1


def test_lstm_parameter_count():
    counts = make_policy("lstm", units=64).count_parameters()
    expected = 4 * 64 * (32 + 64 + 2) + 64 + 1  # gates, then the linear readout
    assert counts["controller"].total == expected
    assert counts["controller"].synapses == 0
    assert counts["total"].total == counts["cnn"].total + expected


def test_lstm_reset_state_rows():
    controller = LSTMController(4, 3)
    state = torch.ones(2, 6)
    reset = controller.reset_state(state, torch.tensor([True, False]))
    assert torch.equal(reset[0], torch.zeros(6))
    assert torch.equal(reset[1], torch.ones(6))


def test_baseline_rejects_wiring():
    wiring = AutoNCP(19, 1, 0.5, 22)
    wiring.build(32)
    config = PolicyConfig(controller=ControllerConfig(cell="lstm", units=64))
    with pytest.raises(ValueError, match="no wiring"):
        DrivingPolicy(config, wiring=wiring)


def test_invalid_hidden_layers():
    with pytest.raises(ValueError, match="hidden_layers"):
        FeedforwardController(8, (10, 0))


@pytest.mark.parametrize("cell,units", [("lstm", 64), ("feedforward", 19)])
def test_baseline_checkpoint_round_trip(cell, units, tmp_path):
    policy = make_policy(cell, units)
    path = tmp_path / f"{cell}.safetensors"
    save_checkpoint(path, policy)
    loaded, metadata = load_checkpoint(path)
    assert metadata["wiring"] is None
    assert metadata["policy_config"]["controller"]["cell"] == cell
    image = torch.rand(1, 3, 48, 128)
    with torch.no_grad():
        expected, _ = policy.step(image, policy.initial_state(1), 0.05)
        actual, _ = loaded.step(image, loaded.initial_state(1), 0.05)
    assert torch.equal(expected, actual)


@pytest.mark.parametrize("cell,units", [("lstm", 64), ("feedforward", 19)])
def test_baseline_onnx_matches_torch(cell, units, tmp_path):
    policy = make_policy(cell, units)
    path = export_onnx(policy, tmp_path / f"{cell}.onnx")
    exported = OnnxPolicy(path)
    images = torch.rand(4, 1, 3, 48, 128)
    onnx_state = exported.initial_state()
    torch_state = policy.initial_state(1)
    for image in images:
        curvature, onnx_state = exported.step(image.numpy(), onnx_state, 0.05)
        with torch.no_grad():
            expected, torch_state = policy.step(image, torch_state, 0.05)
        assert curvature == pytest.approx(float(expected), abs=1e-5)
    assert onnx_state.shape == (1, policy.state_size)


@pytest.fixture(scope="module")
def bar_bags(tmp_path_factory):
    """Three recordings of the synthetic bar scene, 240 frames each."""
    folder = tmp_path_factory.mktemp("bar_bags")
    paths = []
    for seed in range(3):
        path = folder / f"drive{seed}"
        write_bar_bag(path, 240, BarSceneConfig(), seed=seed, start_s=100.0 * (seed + 1))
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("cell", ["lstm", "feedforward"])
def test_trainer_fits_baseline(cell, bar_bags, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    run_dir = tmp_path / cell
    arguments = [
        *bar_bags, "--out", str(run_dir), "--cell", cell, "--units", "16", "--hidden-layers", "16,8",
        "--epochs", "3", "--crop-top", "0", "--input-height", "24", "--input-width", "32",
        "--cnn-channels", "8,16,16", "--cnn-lr", "3e-3", "--batch-size", "8", "--threads", "2",
        "--no-progress",
    ]
    assert train_main(arguments) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["policy"]["controller"]["cell"] == cell

    policy, metadata = load_checkpoint(run_dir / "model.safetensors")
    episodes, _ = load_episodes(bar_bags[:1], Preprocessing.from_dict(metadata["preprocessing"]))
    predicted = rollout(policy, episodes[0])
    demonstrated = episodes[0].curvature
    constant_error = np.mean(np.abs(demonstrated - demonstrated.mean()))
    assert np.mean(np.abs(predicted - demonstrated)) < 0.6 * constant_error


@pytest.mark.parametrize("cell,units,state_size", [("lstm", 64, 128), ("feedforward", 19, 0)])
def test_runner_debug_and_saliency(cell, units, state_size, tmp_path):
    from liquid_driver.inference import PolicyRunner

    path = tmp_path / f"{cell}.safetensors"
    save_checkpoint(path, make_policy(cell, units))
    runner = PolicyRunner(path)
    assert cell in runner.description
    rgb = np.random.default_rng(0).integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    first = runner.predict(rgb, 10.0, debug=True, saliency=True)
    second = runner.predict(rgb, 10.05, debug=True, saliency=True)
    assert np.isfinite(second.curvature)
    assert second.neuron_states.shape == (state_size,)
    assert second.saliency.shape == (48, 128)
    assert second.saliency.min() >= 0.0
    assert second.saliency.max() <= 1.0
    if cell == "feedforward":
        assert second.curvature == pytest.approx(first.curvature, abs=1e-6)
