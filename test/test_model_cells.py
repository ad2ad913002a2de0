"""Tests of the wired CfC and LTC cells: shapes, time steps, masks, polarity and solver."""

import math

import pytest
import torch

from liquid_driver.model import NCP, AutoNCP, CfCCell, FullyConnected, LTCCell, Random

INPUT_SIZE = 32
UNITS = 19


def _wiring(seed=22):
    return AutoNCP(UNITS, 1, sparsity_level=0.5, seed=seed)


def _make(cell_type, mode="default", **kwargs):
    torch.manual_seed(0)
    if cell_type == "ltc":
        return LTCCell(_wiring(), INPUT_SIZE, **kwargs)
    return CfCCell(_wiring(), INPUT_SIZE, mode, **kwargs)


CELLS = [("cfc", "default"), ("cfc", "no_gate"), ("cfc", "pure"), ("ltc", None)]
CELL_IDS = ["cfc-default", "cfc-no_gate", "cfc-pure", "ltc"]


def _cell(spec, **kwargs):
    cell_type, mode = spec
    return _make(cell_type, mode or "default", **kwargs)


# Batch sizes include 1, a layer width (12 inter neurons), the unit count and the input size.
@pytest.mark.parametrize("batch_size", [1, 4, 12, UNITS, INPUT_SIZE])
@pytest.mark.parametrize("spec", CELLS, ids=CELL_IDS)
def test_shapes_for_batch_sizes(spec, batch_size):
    cell = _cell(spec)
    x = torch.randn(batch_size, 3, INPUT_SIZE)
    dt = torch.rand(batch_size, 3) * 0.1
    outputs, state = cell(x, dt)
    assert outputs.shape == (batch_size, 3, 1)
    assert state.shape == (batch_size, UNITS)
    output, new_state = cell.step(x[:, 0], cell.initial_state(batch_size), dt[:, 0])
    assert output.shape == (batch_size, 1)
    assert new_state.shape == (batch_size, UNITS)
    assert torch.isfinite(outputs).all()


@pytest.mark.parametrize("spec", CELLS, ids=CELL_IDS)
def test_step_matches_sequence(spec):
    cell = _cell(spec)
    x = torch.randn(5, 6, INPUT_SIZE)
    dt = torch.rand(5, 6) * 0.1
    state0 = torch.randn(5, UNITS) * 0.3
    outputs, final = cell(x, dt, state0)
    state = state0
    for index in range(6):
        output, state = cell.step(x[:, index], state, dt[:, index])
        torch.testing.assert_close(output, outputs[:, index], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, final, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", CELLS, ids=CELL_IDS)
def test_scalar_dt_equals_per_sample_dt(spec):
    cell = _cell(spec)
    x = torch.randn(UNITS, 4, INPUT_SIZE)
    scalar, _ = cell(x, 0.04)
    matrix, _ = cell(x, torch.full((UNITS, 4), 0.04))
    zero_dim, _ = cell(x, torch.tensor(0.04))
    torch.testing.assert_close(scalar, matrix)
    torch.testing.assert_close(scalar, zero_dim)
    state = cell.initial_state(UNITS)
    by_float, _ = cell.step(x[:, 0], state, 0.04)
    by_vector, _ = cell.step(x[:, 0], state, torch.full((UNITS,), 0.04))
    by_column, _ = cell.step(x[:, 0], state, torch.full((UNITS, 1), 0.04))
    torch.testing.assert_close(by_float, by_vector)
    torch.testing.assert_close(by_float, by_column)


# Batch == units is the case where a (batch,) dt could be broadcast along the neuron axis,
# and 12 is the width of the inter layer.
@pytest.mark.parametrize("batch_size", [1, 4, 12, UNITS])
@pytest.mark.parametrize("spec", CELLS, ids=CELL_IDS)
def test_per_sample_dt_equals_single_runs(spec, batch_size):
    cell = _cell(spec)
    x = torch.randn(batch_size, 4, INPUT_SIZE)
    dt = torch.rand(batch_size, 4) * 0.2
    batched, _ = cell(x, dt)
    for sample in range(batch_size):
        alone, _ = cell(x[sample : sample + 1], dt[sample : sample + 1])
        torch.testing.assert_close(batched[sample : sample + 1], alone, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", CELLS, ids=CELL_IDS)
def test_dt_changes_output(spec):
    cell = _cell(spec)
    x = torch.randn(2, 3, INPUT_SIZE)
    short, _ = cell(x, 0.01)
    long, _ = cell(x, 0.5)
    assert not torch.allclose(short, long)


@pytest.mark.parametrize(
    "dt, match",
    [
        (-0.1, "finite and >= 0"),
        (math.nan, "finite and >= 0"),
        (math.inf, "finite and >= 0"),
        (torch.tensor([0.1, -0.1, 0.1, 0.1]), "finite and >= 0"),
        (torch.full((UNITS,), 0.05), "shape"),
        (torch.full((4, 3), 0.05), "shape"),
    ],
)
def test_invalid_step_dt_raises(dt, match):
    cell = _make("cfc")
    with pytest.raises(ValueError, match=match):
        cell.step(torch.randn(4, INPUT_SIZE), cell.initial_state(4), dt)


def test_sequence_rejects_one_dimensional_dt():
    cell = _make("cfc")
    x = torch.randn(4, 4, INPUT_SIZE)
    with pytest.raises(ValueError, match="shape"):
        cell(x, torch.full((4,), 0.05))


def test_integer_dt_tensor_raises():
    cell = _make("cfc")
    with pytest.raises(TypeError, match="floating point"):
        cell.step(torch.randn(2, INPUT_SIZE), cell.initial_state(2), torch.tensor([1, 1]))


@pytest.mark.parametrize(
    "x, state, match",
    [
        (torch.randn(2, INPUT_SIZE + 1), torch.zeros(2, UNITS), "x has shape"),
        (torch.randn(2, INPUT_SIZE), torch.zeros(3, UNITS), "batch size 3"),
        (torch.randn(2, INPUT_SIZE), torch.zeros(2, UNITS + 1), "state has shape"),
    ],
)
def test_invalid_step_shapes_raise(x, state, match):
    cell = _make("cfc")
    with pytest.raises(ValueError, match=match):
        cell.step(x, state, 0.05)


def _input_jacobian(cell, x, state):
    """d new_state / d x, shape (units, input_size), for a single sample."""
    return torch.autograd.functional.jacobian(lambda inputs: cell.step(inputs, state, 0.05)[1], x)[0, :, 0]


def _state_jacobian(cell, x, state):
    """d new_state / d old_state, shape (units, units) indexed [destination, source]."""
    return torch.autograd.functional.jacobian(lambda old: cell.step(x, old, 0.05)[1], state)[0, :, 0]


def test_cfc_sensory_mask_limits_input_influence():
    cell = _make("cfc")
    jacobian = _input_jacobian(cell, torch.randn(1, INPUT_SIZE), torch.randn(1, UNITS) * 0.3)
    inter = cell.wiring.layers[0]
    sensory = torch.as_tensor(cell.wiring.sensory_adjacency != 0).T  # (units, inputs)
    inter_jacobian = jacobian[inter.start : inter.stop]
    assert torch.all(inter_jacobian[~sensory[inter.start : inter.stop]] == 0)
    assert torch.all(inter_jacobian[sensory[inter.start : inter.stop]] != 0)


def test_cfc_recurrent_mask_and_command_synapses():
    cell = _make("cfc", self_connections=False)
    jacobian = _state_jacobian(cell, torch.randn(1, INPUT_SIZE), torch.randn(1, UNITS) * 0.3)
    inter, command, _ = cell.wiring.layers
    # Inter neurons have no recurrent synapses, so without self-connections they forget.
    assert torch.all(jacobian[inter.start : inter.stop] == 0)
    # Command neurons read the previous command states exactly through the wiring's
    # recurrent command synapses.
    synapses = torch.as_tensor(cell.wiring.adjacency != 0).T  # [destination, source]
    block = (slice(command.start, command.stop), slice(command.start, command.stop))
    assert synapses[block].any()
    assert torch.equal(jacobian[block] != 0, synapses[block])


def test_cfc_self_connections_give_memory():
    cell = _make("cfc", self_connections=True)
    jacobian = _state_jacobian(cell, torch.randn(1, INPUT_SIZE), torch.randn(1, UNITS) * 0.3)
    assert torch.all(jacobian.diagonal() != 0)


def test_cfc_recurrent_command_synapse_changes_state():
    cell = _make("cfc", self_connections=False)
    command = cell.wiring.layers[1]
    sources, destinations = torch.nonzero(
        torch.as_tensor(cell.wiring.adjacency[command.start : command.stop, command.start : command.stop])
    ).T
    source, destination = command.start + int(sources[0]), command.start + int(destinations[0])
    x = torch.randn(2, INPUT_SIZE)
    state = torch.randn(2, UNITS) * 0.3
    _, before = cell.step(x, state, 0.05)
    with torch.no_grad():
        cell.recurrent_weight[:, destination, source] += 2.0
    _, after = cell.step(x, state, 0.05)
    assert not torch.allclose(before[:, destination], after[:, destination])


@pytest.mark.parametrize("spec", CELLS, ids=CELL_IDS)
def test_masked_weights_get_no_gradient(spec):
    cell = _cell(spec)
    outputs, state = cell(torch.randn(3, 4, INPUT_SIZE), 0.05)
    (outputs.sum() + state.sum()).backward()
    checked = 0
    for name, mask_name in cell._live_masks.items():
        gradient = getattr(cell, name).grad
        mask = getattr(cell, mask_name).expand_as(gradient)
        assert torch.all(gradient[mask == 0] == 0), name
        assert gradient[mask != 0].abs().sum() > 0, name
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("spec", CELLS, ids=CELL_IDS)
def test_masked_weights_have_no_effect(spec):
    cell = _cell(spec)
    x = torch.randn(3, 4, INPUT_SIZE)
    before, _ = cell(x, 0.05)
    with torch.no_grad():
        for name, mask_name in cell._live_masks.items():
            parameter = getattr(cell, name)
            mask = getattr(cell, mask_name).expand_as(parameter)
            parameter[mask == 0] = 1e3
    after, _ = cell(x, 0.05)
    torch.testing.assert_close(before, after)


def test_cfc_polarity_signs():
    cell = _make("cfc")
    sensory, recurrent = cell.effective_weights()
    sensory_polarity = torch.as_tensor(cell.wiring.sensory_adjacency, dtype=torch.float32).T
    polarity = torch.as_tensor(cell.wiring.adjacency, dtype=torch.float32).T
    for head in (0, 1):  # ff1 and ff2
        present = sensory_polarity != 0
        assert torch.all(torch.sign(sensory[head][present]) == sensory_polarity[present])
        present = polarity != 0
        assert torch.all(torch.sign(recurrent[head][present]) == polarity[present])


def test_cfc_polarity_survives_training():
    cell = _make("cfc")
    optimizer = torch.optim.SGD(cell.parameters(), lr=10.0)
    for _ in range(5):
        optimizer.zero_grad()
        outputs, _ = cell(torch.randn(4, 3, INPUT_SIZE), 0.05)
        # Push every weight hard in one direction to try to flip the signs.
        (outputs.sum() * 100.0).backward()
        optimizer.step()
    sensory, _ = cell.effective_weights()
    polarity = torch.as_tensor(cell.wiring.sensory_adjacency, dtype=torch.float32).T
    present = polarity != 0
    # A weight may shrink to 0 (softplus underflow) but never takes the opposite sign.
    assert torch.all(sensory[0][present] * polarity[present] >= 0)
    assert torch.any(sensory[0][present] != 0)


def test_cfc_ignoring_polarity_allows_both_signs():
    cell = _make("cfc", enforce_polarity=False)
    sensory, _ = cell.effective_weights()
    polarity = torch.as_tensor(cell.wiring.sensory_adjacency, dtype=torch.float32).T
    present = polarity != 0
    agree = torch.sign(sensory[0][present]) == polarity[present]
    assert agree.any()
    assert (~agree).any()


def test_ltc_erev_follows_polarity():
    cell = _make("ltc")
    polarity = torch.as_tensor(cell.wiring.adjacency, dtype=torch.float32)
    assert torch.equal(cell.erev, polarity)
    assert "erev" not in dict(cell.named_parameters())
    free = _make("ltc", enforce_polarity=False)
    assert "erev" in dict(free.named_parameters())


def test_cfc_parameter_count_excludes_masked():
    cell = _make("cfc")
    wiring = cell.wiring
    self_entries = int((torch.as_tensor(wiring.adjacency).diagonal() == 0).sum())
    per_head = wiring.sensory_synapse_count + wiring.synapse_count + self_entries
    count = cell.count_parameters()
    assert count.effective == 4 * per_head + 4 * UNITS
    assert count.total == 4 * UNITS * (INPUT_SIZE + UNITS) + 4 * UNITS
    assert count.synapses == wiring.synapse_count
    assert count.sensory_synapses == wiring.sensory_synapse_count


def test_ltc_parameter_count_excludes_masked():
    cell = _make("ltc")
    wiring = cell.wiring
    count = cell.count_parameters()
    synaptic = 3 * (wiring.sensory_synapse_count + wiring.synapse_count)
    per_neuron = 3 * UNITS  # gleak, vleak, cm
    mappings = 2 * INPUT_SIZE + 2 * 1
    assert count.effective == synaptic + per_neuron + mappings
    assert count.total > count.effective


def test_fully_connected_counts_everything():
    cell = CfCCell(FullyConnected(6, 1), 4, enforce_polarity=False)
    count = cell.count_parameters()
    assert count.effective == count.total


def test_backbone_requires_fully_connected():
    with pytest.raises(ValueError, match="backbone"):
        CfCCell(_wiring(), INPUT_SIZE, backbone_layers=1)
    with pytest.raises(ValueError, match="enforce_polarity=False"):
        CfCCell(FullyConnected(8, 1), INPUT_SIZE, backbone_layers=1)
    cell = CfCCell(FullyConnected(8, 1), INPUT_SIZE, backbone_layers=2, backbone_units=16, enforce_polarity=False)
    outputs, state = cell(torch.randn(8, 3, INPUT_SIZE), torch.rand(8, 3))
    assert outputs.shape == (8, 3, 1)
    assert state.shape == (8, 8)


def test_random_wiring_cell_runs():
    cell = CfCCell(Random(10, 2, sparsity=0.5, seed=1), 6)
    outputs, _ = cell(torch.randn(10, 3, 6), torch.rand(10, 3))
    assert outputs.shape == (10, 3, 2)


def test_explicit_ncp_layers_propagate_in_one_step():
    wiring = NCP(4, 3, 1, sensory_fanout=2, inter_fanout=2, recurrent_command_synapses=2, motor_fanin=2)
    cell = CfCCell(wiring, 5, self_connections=False)
    state = cell.initial_state(1)
    jacobian = torch.autograd.functional.jacobian(lambda x: cell.step(x, state, 0.05)[0], torch.randn(1, 5))
    # Sensory input reaches the motor neuron within one step via inter and command.
    assert jacobian.abs().sum() > 0


def test_eval_cache_sees_weight_updates():
    cell = _make("cfc").eval()
    x = torch.randn(2, INPUT_SIZE)
    state = torch.randn(2, UNITS) * 0.3
    with torch.no_grad():
        _, before = cell.step(x, state, 0.05)
        cell.bias += 0.5
        _, after = cell.step(x, state, 0.05)
    assert not torch.allclose(before, after)


def test_ltc_state_stays_bounded():
    torch.manual_seed(1)
    cell = _make("ltc")
    with torch.no_grad():
        cell.vleak.uniform_(-0.5, 0.5)
        bound = max(1.0, float(cell.vleak.abs().max()))
        state = torch.empty(8, UNITS).uniform_(-bound, bound)
        for dt in (0.0, 0.01, 1.0, 100.0):
            x = torch.randn(8, 20, INPUT_SIZE) * 10.0
            _, final = cell(x, dt, state)
            assert torch.isfinite(final).all()
            assert final.abs().max() <= bound + 1e-5


def test_ltc_zero_dt_keeps_state():
    cell = _make("ltc")
    state = torch.randn(3, UNITS) * 0.5
    _, new_state = cell.step(torch.randn(3, INPUT_SIZE), state, 0.0)
    torch.testing.assert_close(new_state, state, atol=1e-4, rtol=0)


def test_ltc_more_unfolds_converge():
    torch.manual_seed(2)
    x = torch.randn(2, 5, INPUT_SIZE)
    reference_cell = _make("ltc", ode_unfolds=512)
    errors = []
    with torch.no_grad():
        reference, _ = reference_cell(x, 0.2)
        for unfolds in (1, 4, 16, 64):
            cell = _make("ltc", ode_unfolds=unfolds)
            cell.load_state_dict(reference_cell.state_dict())
            outputs, _ = cell(x, 0.2)
            errors.append(float((outputs - reference).abs().max()))
    assert errors[0] > 0
    for coarse, fine in zip(errors, errors[1:]):
        assert fine < coarse
    assert errors[-1] < errors[0] / 10


def test_ltc_invalid_unfolds_raise():
    with pytest.raises(ValueError, match="ode_unfolds"):
        LTCCell(_wiring(), INPUT_SIZE, ode_unfolds=0)


def test_invalid_mode_raises():
    with pytest.raises(ValueError, match="mode"):
        CfCCell(_wiring(), INPUT_SIZE, "exact")


def test_matches_ncps_reference_cell():
    ncps_torch = pytest.importorskip("ncps.torch")
    torch.manual_seed(3)
    for mode in ("default", "no_gate", "pure"):
        reference = ncps_torch.CfCCell(
            6, 10, mode, backbone_activation="tanh", backbone_units=16, backbone_layers=1
        )
        cell = CfCCell(
            FullyConnected(10, 10), 6, mode, enforce_polarity=False, backbone_layers=1,
            backbone_units=16, backbone_activation="tanh", time_scale_s=1.0,
        )
        with torch.no_grad():
            cell.backbone[0].weight.copy_(reference.backbone[0].weight)
            cell.backbone[0].bias.copy_(reference.backbone[0].bias)
            names = ["ff1"] if mode == "pure" else ["ff1", "ff2", "time_a", "time_b"]
            cell.head.weight.copy_(torch.cat([getattr(reference, n).weight for n in names]))
            cell.head.bias.copy_(torch.cat([getattr(reference, n).bias for n in names]))
            if mode == "pure":
                cell.tau_weight.copy_(reference.w_tau[0])
                cell.amplitude.copy_(reference.A[0])
        x = torch.randn(3, 6)
        state = torch.randn(3, 10) * 0.5
        elapsed = torch.tensor([[0.5], [1.0], [2.0]])
        expected, _ = reference(x, state, elapsed)
        _, actual = cell.step(x, state, elapsed[:, 0])
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


# -- LTC solvers and substeps ----------------------------------------------------------


def _ltc_like(reference, **kwargs):
    cell = LTCCell(_wiring(), INPUT_SIZE, **kwargs)
    cell.load_state_dict(reference.state_dict())
    return cell


@pytest.mark.parametrize("solver", ["euler", "rk4"])
def test_ltc_solvers_converge_to_fine_solution(solver):
    torch.manual_seed(5)
    reference_cell = _make("ltc", solver="rk4", ode_unfolds=256)
    x = torch.randn(2, 4, INPUT_SIZE)
    errors = []
    with torch.no_grad():
        reference, _ = reference_cell(x, 0.05)
        for unfolds in (2, 8, 32):
            outputs, _ = _ltc_like(reference_cell, solver=solver, ode_unfolds=unfolds)(x, 0.05)
            errors.append(float((outputs - reference).abs().max()))
    assert errors[0] > errors[1] > errors[2]
    # Euler's error shrinks about 16 times over 16 times more substeps, RK4's far more.
    assert errors[-1] < errors[0] / 8


def test_ltc_rk4_beats_euler_per_substep():
    torch.manual_seed(6)
    reference_cell = _make("ltc", solver="rk4", ode_unfolds=256)
    x = torch.randn(2, 4, INPUT_SIZE)
    with torch.no_grad():
        reference, _ = reference_cell(x, 0.05)
        euler, _ = _ltc_like(reference_cell, solver="euler", ode_unfolds=8)(x, 0.05)
        rk4, _ = _ltc_like(reference_cell, solver="rk4", ode_unfolds=8)(x, 0.05)
    assert (rk4 - reference).abs().max() < (euler - reference).abs().max() / 10


def test_ltc_all_solvers_agree_on_fine_steps():
    torch.manual_seed(7)
    reference_cell = _make("ltc", solver="semi_implicit", ode_unfolds=512)
    x = torch.randn(2, 3, INPUT_SIZE)
    with torch.no_grad():
        semi_implicit, _ = reference_cell(x, 0.05)
        rk4, _ = _ltc_like(reference_cell, solver="rk4", ode_unfolds=64)(x, 0.05)
    torch.testing.assert_close(semi_implicit, rk4, atol=2e-3, rtol=0)


def test_ltc_adaptive_unfolds_follow_dt():
    """With max_substep_s, a step of dt takes ceil(dt / max_substep_s) substeps."""
    torch.manual_seed(8)
    adaptive = _make("ltc", max_substep_s=0.01)
    x = torch.randn(3, INPUT_SIZE)
    state = 0.3 * torch.randn(3, UNITS)
    dt = torch.tensor([0.005, 0.03, 0.07])
    with torch.no_grad():
        _, batched = adaptive.step(x, state, dt)
        for sample, unfolds in enumerate((1, 3, 7)):
            fixed = _ltc_like(adaptive, ode_unfolds=unfolds)
            _, expected = fixed.step(x[sample : sample + 1], state[sample : sample + 1], float(dt[sample]))
            torch.testing.assert_close(batched[sample : sample + 1], expected, rtol=1e-5, atol=1e-6)


def test_ltc_adaptive_unfolds_capped():
    torch.manual_seed(9)
    adaptive = _make("ltc", max_substep_s=0.001, max_unfolds=4)
    capped = _ltc_like(adaptive, ode_unfolds=4)
    x = torch.randn(2, 3, INPUT_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(adaptive(x, 0.5)[0], capped(x, 0.5)[0])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"solver": "midpoint"}, "solver"),
        ({"max_substep_s": 0.0}, "max_substep_s"),
        ({"max_substep_s": math.inf}, "max_substep_s"),
        ({"max_unfolds": 0}, "max_unfolds"),
    ],
)
def test_ltc_invalid_solver_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LTCCell(_wiring(), INPUT_SIZE, **kwargs)


# -- mixed memory -------------------------------------------------------------------------


@pytest.mark.parametrize("spec", CELLS, ids=CELL_IDS)
def test_mixed_memory_state_and_step(spec):
    cell = _cell(spec, mixed_memory=True)
    assert cell.state_size == 2 * UNITS
    x = torch.randn(3, 4, INPUT_SIZE)
    dt = torch.rand(3, 4) * 0.1
    outputs, final = cell(x, dt)
    assert outputs.shape == (3, 4, 1)
    assert final.shape == (3, 2 * UNITS)
    state = cell.initial_state(3)
    for index in range(4):
        output, state = cell.step(x[:, index], state, dt[:, index])
        torch.testing.assert_close(output, outputs[:, index], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state, final, rtol=1e-5, atol=1e-6)


def test_mixed_memory_cell_carries_information():
    torch.manual_seed(10)
    cell = _make("cfc", mixed_memory=True)
    x = torch.randn(1, INPUT_SIZE)
    state = cell.initial_state(1)
    _, state = cell.step(x, state, 0.05)
    memory = state[:, UNITS:]
    assert memory.abs().sum() > 0
    # Changing only the memory cell changes the next output.
    altered = state.clone()
    altered[:, UNITS:] += 1.0
    first, _ = cell.step(x, state, 0.05)
    second, _ = cell.step(x, altered, 0.05)
    assert not torch.allclose(first, second)


def test_mixed_memory_forget_bias_starts_at_one():
    torch.manual_seed(11)
    cell = _make("cfc", mixed_memory=True)
    plain = _make("cfc", mixed_memory=True)
    forget = slice(UNITS, 2 * UNITS)
    difference = cell.memory.bias_ih[forget] - plain.memory.bias_ih[forget]
    assert torch.allclose(difference, torch.zeros(UNITS))  # same seed, same draw
    assert cell.memory.bias_ih[forget].mean() > 0.5


def test_mixed_memory_counts_lstm_parameters():
    plain = _make("cfc")
    mixed = _make("cfc", mixed_memory=True)
    lstm = 4 * UNITS * (INPUT_SIZE + UNITS) + 8 * UNITS
    assert mixed.count_parameters().effective == plain.count_parameters().effective + lstm


# -- state reset ----------------------------------------------------------------------------


def test_reset_state_rows():
    cell = _make("cfc")
    state = torch.randn(4, UNITS)
    done = torch.tensor([False, True, False, True])
    reset = cell.reset_state(state, done)
    assert torch.equal(reset[done], torch.zeros(2, UNITS))
    assert torch.equal(reset[~done], state[~done])
    assert torch.equal(cell.reset_state(state), torch.zeros(4, UNITS))


@pytest.mark.parametrize("done", [torch.tensor([1, 0, 1, 0]), torch.tensor([True, False]), [True] * 4])
def test_reset_state_invalid_done_raises(done):
    cell = _make("cfc")
    with pytest.raises(ValueError, match="done"):
        cell.reset_state(torch.randn(4, UNITS), done)
