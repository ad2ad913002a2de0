"""Tests of the CNN head and the driving policy: shapes, inputs, configs and a short fit."""

import pytest
import torch

from liquid_driver.model import (
    ControllerConfig,
    ConvHead,
    ConvHeadConfig,
    DrivingPolicy,
    PolicyConfig,
    standardize_images,
)
from liquid_driver.model.plot import plot_wiring

HEIGHT, WIDTH = 48, 128


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return DrivingPolicy(PolicyConfig()).eval()


def test_default_input_size(policy):
    assert policy.input_size == (HEIGHT, WIDTH)
    assert policy.wiring.units == 19
    assert policy.wiring.input_size == 32


@pytest.mark.parametrize("batch_size", [1, 4, 19, 32])
def test_step_and_sequence_shapes(policy, batch_size):
    images = torch.rand(batch_size, 2, 3, HEIGHT, WIDTH)
    with torch.no_grad():
        curvature, state = policy(images, 0.05)
        assert curvature.shape == (batch_size, 2, 1)
        assert state.shape == (batch_size, 19)
        step_curvature, step_state = policy.step(images[:, 0], policy.initial_state(batch_size), 0.05)
    assert step_curvature.shape == (batch_size, 1)
    assert step_state.shape == (batch_size, 19)


def test_step_matches_sequence(policy):
    images = torch.rand(3, 5, 3, HEIGHT, WIDTH)
    dt = torch.rand(3, 5) * 0.1
    with torch.no_grad():
        sequence, final = policy(images, dt)
        state = policy.initial_state(3)
        for index in range(5):
            curvature, state = policy.step(images[:, index], state, dt[:, index])
            torch.testing.assert_close(curvature, sequence[:, index], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, final, rtol=1e-5, atol=1e-6)


def test_curvature_within_output_scale(policy):
    with torch.no_grad():
        curvature, _ = policy(torch.rand(4, 6, 3, HEIGHT, WIDTH), 0.05)
    assert curvature.abs().max() < policy.output_scale


def test_brightness_and_contrast_invariance(policy):
    images = torch.rand(2, 3, 3, HEIGHT, WIDTH) * 0.5 + 0.2
    with torch.no_grad():
        original, _ = policy(images, 0.05)
        changed, _ = policy(images * 0.6 + 0.1, 0.05)
    torch.testing.assert_close(original, changed, rtol=1e-4, atol=1e-5)


def test_standardize_uniform_image_is_zero():
    images = torch.full((2, 3, 4, 5), 0.7)
    assert torch.equal(standardize_images(images), torch.zeros_like(images))


@pytest.mark.parametrize(
    "images, error, match",
    [
        (torch.rand(1, 3, HEIGHT, WIDTH + 1), ValueError, "Crop and resize"),
        (torch.rand(1, 1, HEIGHT, WIDTH), ValueError, "expected"),
        (torch.zeros(1, 3, HEIGHT, WIDTH, dtype=torch.uint8), TypeError, "divided by 255"),
        (torch.rand(3, HEIGHT, WIDTH), ValueError, "dimensions"),
    ],
)
def test_invalid_images_raise(policy, images, error, match):
    with pytest.raises(error, match=match):
        policy.step(images, policy.initial_state(1), 0.05)


def test_conv_head_output_size():
    config = ConvHeadConfig(input_height=32, input_width=64, feature_size=8)
    head = ConvHead(config)
    assert head(torch.rand(2, 3, 32, 64)).shape == (2, 8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"channels": (8, 8), "kernel_sizes": (3,), "strides": (2,)}, "equal length"),
        ({"strides": (2, 0, 2, 2)}, "strides"),
        ({"dropout": 1.0}, "dropout"),
        ({"feature_size": 0}, "feature_size"),
    ],
)
def test_invalid_conv_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ConvHeadConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"cell": "gru"}, "cell"),
        ({"mode": "fast"}, "mode"),
        ({"wiring": "grid"}, "wiring"),
        ({"output_scale": 0.0}, "output_scale"),
        ({"wiring": "ncp"}, "needs"),
        (
            {
                "wiring": "ncp", "units": 10, "inter_neurons": 4, "command_neurons": 3, "sensory_fanout": 2,
                "inter_fanout": 2, "recurrent_command_synapses": 2, "motor_fanin": 2,
            },
            "units=8",
        ),
    ],
)
def test_invalid_controller_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ControllerConfig(**kwargs)


def test_config_dict_round_trip():
    config = PolicyConfig(
        cnn=ConvHeadConfig(channels=(8, 16, 16, 32), feature_size=16),
        controller=ControllerConfig(cell="ltc", units=12, output_size=2, seed=5),
    )
    assert PolicyConfig.from_dict(config.to_dict()) == config


def test_config_unknown_key_raises():
    data = PolicyConfig().to_dict()
    data["controller"]["neurons"] = 19
    with pytest.raises(ValueError, match="neurons"):
        PolicyConfig.from_dict(data)


@pytest.mark.parametrize(
    "controller",
    [
        ControllerConfig(cell="ltc", ode_unfolds=2),
        ControllerConfig(wiring="random", units=10),
        ControllerConfig(wiring="fully_connected", units=8, enforce_polarity=False, backbone_layers=1),
        ControllerConfig(
            wiring="ncp", units=9, inter_neurons=5, command_neurons=3, sensory_fanout=2,
            inter_fanout=2, recurrent_command_synapses=3, motor_fanin=2,
        ),
    ],
    ids=["ltc", "random", "dense-backbone", "ncp"],
)
def test_policy_variants_run(controller):
    policy = DrivingPolicy(PolicyConfig(controller=controller))
    curvature, state = policy(torch.rand(2, 3, 3, HEIGHT, WIDTH), 0.05)
    assert curvature.shape == (2, 3, 1)
    assert state.shape == (2, controller.units)


def test_policy_parameter_count(policy):
    counts = policy.count_parameters()
    assert counts["total"].effective == counts["cnn"].effective + counts["controller"].effective
    assert counts["controller"].effective < counts["controller"].total
    assert counts["cnn"].total == sum(p.numel() for p in policy.cnn.parameters())


def test_policy_fits_simple_target():
    """The policy learns curvature = +1 or -1 1/m from which image half is bright."""
    torch.manual_seed(0)
    config = PolicyConfig(cnn=ConvHeadConfig(input_height=16, input_width=32, channels=(8, 16), kernel_sizes=(3, 3), strides=(2, 2)))
    policy = DrivingPolicy(config)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    batch_size, steps = 16, 4
    side = torch.randint(0, 2, (batch_size, steps))
    images = torch.full((batch_size, steps, 3, 16, 32), 0.2)
    for sample in range(batch_size):
        for index in range(steps):
            column = slice(0, 16) if side[sample, index] == 0 else slice(16, 32)
            images[sample, index, :, :, column] = 0.9
    target = (side.float() * 2.0 - 1.0).unsqueeze(-1)  # (batch, time, 1) in 1/m

    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        curvature, _ = policy(images, 0.05)
        loss = torch.nn.functional.mse_loss(curvature, target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


def test_plot_wiring_writes_png(policy, tmp_path):
    path = plot_wiring(policy.controller, tmp_path / "wiring.png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    bare = plot_wiring(policy.wiring, tmp_path / "bare.png")
    assert bare.stat().st_size > 1000


@pytest.mark.parametrize("cell", ["cfc", "ltc"])
def test_enforced_polarities_follow_wiring(cell):
    torch.manual_seed(0)
    policy = DrivingPolicy(PolicyConfig(controller=ControllerConfig(cell=cell)))
    sensory, neuron = policy.controller.synapse_polarities()
    assert (sensory.numpy() == policy.wiring.sensory_adjacency).all()
    assert (neuron.numpy() == policy.wiring.adjacency).all()


@pytest.mark.parametrize("cell", ["cfc", "ltc"])
def test_free_polarities_are_learned(cell):
    torch.manual_seed(0)
    config = ControllerConfig(cell=cell, enforce_polarity=False)
    policy = DrivingPolicy(PolicyConfig(controller=config))
    with torch.no_grad():
        for parameter in policy.controller.parameters():
            parameter.neg_()  # flips the free weights' signs and the LTC reversal potentials
    sensory, neuron = policy.controller.synapse_polarities()
    present = policy.wiring.adjacency != 0
    assert set(neuron.numpy()[present].tolist()) <= {-1.0, 1.0}
    assert (neuron.numpy()[~present] == 0).all()
    assert (neuron.numpy()[present] != policy.wiring.adjacency[present]).any()
    assert sensory.shape == tuple(policy.wiring.sensory_adjacency.shape)
