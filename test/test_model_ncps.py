"""Equivalence with the reference library ncps 1.0.1 where ncps is correct.

Weights are copied from ncps models into ours, then outputs are compared to 1e-5 on:
batch-1 timespans, fully connected wirings, dense backbones, LTC on an NCP wiring and
mixed memory. Both the PyTorch operators and the compiled kernels are checked. The
module is skipped when ncps is not installed.
"""

import numpy as np
import pytest
import torch

from liquid_driver.model import NCP, CfCCell, FullyConnected, LTCCell
from liquid_driver.model.cfc import inverse_softplus

ncps_torch = pytest.importorskip("ncps.torch")
ncps_wirings = pytest.importorskip("ncps.wirings")

INPUT_SIZE = 6
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
HEAD_NAMES = ("ff1", "ff2", "time_a", "time_b")


def _paths(cell):
    """Yield the cell once per implementation: PyTorch operators, then kernels."""
    for fast_path in (False, True):
        cell.fast_path = fast_path
        yield "kernels" if fast_path else "pytorch"


def _copy_wired_cfc(reference_cell, cell):
    """Copy one ncps CfCCell layer (no backbone) into a one-layer CfCCell."""
    heads = ["ff1"] if cell.mode == "pure" else list(HEAD_NAMES)
    with torch.no_grad():
        for index, name in enumerate(heads):
            linear = getattr(reference_cell, name)
            cell.sensory_weight[index].copy_(linear.weight[:, :INPUT_SIZE])
            cell.recurrent_weight[index].copy_(linear.weight[:, INPUT_SIZE:])
            cell.bias[index].copy_(linear.bias)
        if cell.mode == "pure":
            cell.tau_weight.copy_(reference_cell.w_tau[0])
            cell.amplitude.copy_(reference_cell.A[0])


@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
def test_fully_connected_cfc_matches(mode):
    torch.manual_seed(0)
    units = 8
    reference = ncps_torch.CfC(INPUT_SIZE, ncps_wirings.FullyConnected(units, 2), mode=mode)
    cell = CfCCell(FullyConnected(units, 2), INPUT_SIZE, mode, enforce_polarity=False, time_scale_s=1.0)
    _copy_wired_cfc(reference.rnn_cell.layer_0, cell)

    x = torch.randn(4, 5, INPUT_SIZE)
    initial = 0.5 * torch.randn(4, units)
    with torch.no_grad():
        _, expected = reference(x, initial)  # elapsed time 1 per step
        for path in _paths(cell):
            _, actual = cell(x, 1.0, initial)
            torch.testing.assert_close(actual, expected, **TOLERANCE, msg=path)


@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
def test_batch_one_timespans_match(mode):
    torch.manual_seed(1)
    units = 7
    reference = ncps_torch.CfC(INPUT_SIZE, ncps_wirings.FullyConnected(units, 1), mode=mode)
    cell = CfCCell(FullyConnected(units, 1), INPUT_SIZE, mode, enforce_polarity=False, time_scale_s=1.0)
    _copy_wired_cfc(reference.rnn_cell.layer_0, cell)

    x = torch.randn(1, 6, INPUT_SIZE)
    timespans = torch.rand(1, 6) + 0.2
    with torch.no_grad():
        _, expected = reference(x, timespans=timespans)
        for path in _paths(cell):
            _, actual = cell(x, timespans)
            torch.testing.assert_close(actual, expected, **TOLERANCE, msg=path)


@pytest.mark.parametrize("activation", ["tanh", "relu", "silu", "gelu"])
@pytest.mark.parametrize("mode", ["default", "no_gate", "pure"])
def test_dense_backbone_cfc_matches(mode, activation):
    torch.manual_seed(2)
    units = 10
    reference = ncps_torch.CfC(
        INPUT_SIZE, units, mode=mode, activation=activation, backbone_units=16, backbone_layers=2
    )
    cell = CfCCell(
        FullyConnected(units, units), INPUT_SIZE, mode, enforce_polarity=False, backbone_layers=2,
        backbone_units=16, backbone_activation=activation, time_scale_s=1.0,
    )
    layers = [module for module in reference.rnn_cell.backbone if isinstance(module, torch.nn.Linear)]
    ours = [module for module in cell.backbone if isinstance(module, torch.nn.Linear)]
    heads = ["ff1"] if mode == "pure" else list(HEAD_NAMES)
    with torch.no_grad():
        for source, destination in zip(layers, ours):
            destination.weight.copy_(source.weight)
            destination.bias.copy_(source.bias)
        cell.head.weight.copy_(torch.cat([getattr(reference.rnn_cell, name).weight for name in heads]))
        cell.head.bias.copy_(torch.cat([getattr(reference.rnn_cell, name).bias for name in heads]))
        if mode == "pure":
            cell.tau_weight.copy_(reference.rnn_cell.w_tau[0])
            cell.amplitude.copy_(reference.rnn_cell.A[0])

    x = torch.randn(1, 5, INPUT_SIZE)
    timespans = torch.rand(1, 5) + 0.5
    with torch.no_grad():
        expected, expected_state = reference(x, timespans=timespans)
        actual, actual_state = cell(x, timespans)
    torch.testing.assert_close(actual, expected, **TOLERANCE)
    torch.testing.assert_close(actual_state, expected_state, **TOLERANCE)


def _reference_ncp(seed):
    return ncps_wirings.NCP(
        inter_neurons=5, command_neurons=4, motor_neurons=2, sensory_fanout=3, inter_fanout=2,
        recurrent_command_synapses=4, motor_fanin=3, seed=seed,
    )


def _our_ncp(reference):
    """Return our NCP with the synapses of a built ncps NCP, and the neuron permutation.

    ncps numbers neurons motor, command, inter. Ours are inter, command, motor, so the
    matrices are permuted. Call this after the ncps model is created, because ncps
    draws its sensory synapses again each time ``build`` runs.
    """
    ours = NCP(5, 4, 2, sensory_fanout=3, inter_fanout=2, recurrent_command_synapses=4, motor_fanin=3)
    ours.build(INPUT_SIZE)
    motor, command = 2, 4
    inter = reference.units - motor - command
    permutation = np.empty(reference.units, dtype=np.int64)  # ncps index -> our index
    permutation[:motor] = inter + command + np.arange(motor)
    permutation[motor : motor + command] = inter + np.arange(command)
    permutation[motor + command :] = np.arange(inter)
    adjacency = np.zeros_like(ours.adjacency)
    adjacency[np.ix_(permutation, permutation)] = reference.adjacency_matrix
    sensory = np.zeros_like(ours.sensory_adjacency)
    sensory[:, permutation] = reference.sensory_adjacency_matrix
    ours.adjacency = adjacency
    ours.sensory_adjacency = sensory
    return ours, permutation


def _copy_ltc(reference_cell, cell, permutation):
    """Copy an ncps LTCCell into ours, whose conductances are softplus of the parameters."""
    parameters = reference_cell._params
    both = np.ix_(permutation, permutation)

    def raw(name):
        if reference_cell._implicit_param_constraints:  # ncps applies softplus too
            return parameters[name]
        return inverse_softplus(parameters[name])

    with torch.no_grad():
        for name in ("sensory_mu", "sensory_sigma", "sensory_erev"):
            getattr(cell, name)[:, permutation] = parameters[name]
        cell.sensory_weight[:, permutation] = raw("sensory_w")
        for name in ("mu", "sigma", "erev"):
            getattr(cell, name)[both] = parameters[name]
        cell.weight[both] = raw("w")
        cell.gleak[permutation] = raw("gleak")
        cell.cm[permutation] = raw("cm")
        cell.vleak[permutation] = parameters["vleak"]
        cell.input_weight.copy_(parameters["input_w"])
        cell.input_bias.copy_(parameters["input_b"])
        cell.output_weight.copy_(parameters["output_w"])
        cell.output_bias.copy_(parameters["output_b"])


@pytest.mark.parametrize("implicit", [True, False], ids=["softplus", "raw"])
@pytest.mark.parametrize("mixed_memory", [False, True], ids=["plain", "mixed-memory"])
def test_ltc_on_ncp_wiring_matches(mixed_memory, implicit):
    torch.manual_seed(3)
    reference_wiring = _reference_ncp(seed=5)
    reference = ncps_torch.LTC(
        INPUT_SIZE, reference_wiring, mixed_memory=mixed_memory, implicit_param_constraints=implicit
    )
    wiring, permutation = _our_ncp(reference_wiring)
    cell = LTCCell(wiring, enforce_polarity=False, time_scale_s=1.0, mixed_memory=mixed_memory)
    _copy_ltc(reference.rnn_cell, cell, permutation)
    if mixed_memory:
        _copy_lstm(reference.lstm, cell.memory, permutation)

    x = torch.randn(1, 6, INPUT_SIZE)
    timespans = torch.rand(1, 6) + 0.5
    units = wiring.units
    with torch.no_grad():
        expected, expected_state = reference(x, timespans=timespans)
        for path in _paths(cell):
            actual, actual_state = cell(x, timespans)
            torch.testing.assert_close(actual, expected, **TOLERANCE, msg=path)
            hidden = expected_state[0] if mixed_memory else expected_state
            torch.testing.assert_close(actual_state[:, permutation], hidden, **TOLERANCE, msg=path)
            if mixed_memory:
                memory = actual_state[:, units:][:, permutation]
                torch.testing.assert_close(memory, expected_state[1], **TOLERANCE, msg=path)


def _copy_lstm(reference, lstm, permutation):
    """Copy ncps's LSTM gate into torch.nn.LSTMCell, whose gates are ordered i, f, g, o.

    ncps orders its chunks (candidate, input gate, forget gate, output gate) and adds 1
    to the forget gate's pre-activation, which goes into our forget bias.
    """
    units = len(permutation)
    order = [1, 2, 0, 3]  # our gate k is ncps chunk order[k]
    ncps_neuron = torch.from_numpy(np.argsort(permutation))  # our index -> ncps index

    def gates(matrix):
        chunks = matrix.chunk(4, dim=0)
        return torch.cat([chunks[index][ncps_neuron] for index in order])

    with torch.no_grad():
        lstm.weight_ih.copy_(gates(reference.input_map.weight))
        recurrent = gates(reference.recurrent_map.weight)
        lstm.weight_hh.copy_(recurrent[:, ncps_neuron])
        bias = gates(reference.input_map.bias.unsqueeze(1)).squeeze(1)
        bias[units : 2 * units] += 1.0
        lstm.bias_ih.copy_(bias)
        lstm.bias_hh.zero_()


@pytest.mark.parametrize("mode", ["default", "pure"])
def test_mixed_memory_cfc_matches(mode):
    torch.manual_seed(4)
    units = 6
    reference = ncps_torch.CfC(INPUT_SIZE, ncps_wirings.FullyConnected(units, 1), mode=mode, mixed_memory=True)
    cell = CfCCell(
        FullyConnected(units, 1), INPUT_SIZE, mode, enforce_polarity=False, time_scale_s=1.0, mixed_memory=True
    )
    _copy_wired_cfc(reference.rnn_cell.layer_0, cell)
    _copy_lstm(reference.lstm, cell.memory, np.arange(units))

    x = torch.randn(3, 5, INPUT_SIZE)
    with torch.no_grad():
        _, (hidden, memory) = reference(x)
        _, state = cell(x, 1.0)
    torch.testing.assert_close(state[:, :units], hidden, **TOLERANCE)
    torch.testing.assert_close(state[:, units:], memory, **TOLERANCE)


def test_ncps_wired_cfc_ignores_command_recurrence():
    """Document the reference's gap: its wired CfC never reads the recurrent command synapses."""
    torch.manual_seed(5)
    wiring = ncps_wirings.NCP(
        inter_neurons=5, command_neurons=4, motor_neurons=1, sensory_fanout=3, inter_fanout=2,
        recurrent_command_synapses=6, motor_fanin=3,
    )
    reference = ncps_torch.CfC(INPUT_SIZE, wiring)
    command = reference.rnn_cell.layer_1
    # The command layer's recurrent block of the mask is all ones, whatever the wiring contains.
    recurrent_mask = command.sparsity_mask[:, -command.hidden_size :]
    assert torch.all(recurrent_mask == 1)
    # The time heads are not masked at all.
    assert getattr(command.time_a, "sparsity_mask", None) is None
