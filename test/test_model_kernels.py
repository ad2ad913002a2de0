"""The compiled kernels against the PyTorch operators they replace.

Every case runs a cell twice, once with ``fast_path=False`` (PyTorch, the reference) and
once with the kernels, and compares outputs, states and gradients.
"""

import pytest
import torch

from liquid_driver.model import NCP, AutoNCP, CfCCell, DrivingPolicy, FullyConnected, LTCCell, PolicyConfig, Random
from liquid_driver.model import fast

pytest.importorskip("numba")

INPUT_SIZE = 8
CLOSE = {"rtol": 1e-5, "atol": 2e-6}

WIRINGS = {
    "auto_ncp": lambda: AutoNCP(19, 1),
    "ncp-2-motors": lambda: NCP(6, 4, 2, sensory_fanout=3, inter_fanout=2, recurrent_command_synapses=5, motor_fanin=3),
    "fully_connected": lambda: FullyConnected(7, 2),
    "random": lambda: Random(9, 2, sparsity=0.6, seed=3),
}
MODES = ["default", "no_gate", "pure"]


def _run_both(cell, function):
    """Return function(cell) with PyTorch operators, then with kernels."""
    cell.fast_path = False
    reference = function(cell)
    cell.fast_path = True
    return reference, function(cell)


def _assert_all_close(reference, actual):
    for expected, value in zip(reference, actual):
        torch.testing.assert_close(value, expected, **CLOSE)


@pytest.fixture(autouse=True)
def _kernels_present():
    assert fast.load_kernels() is not None


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wiring", sorted(WIRINGS))
def test_cfc_inference_matches(wiring, mode):
    torch.manual_seed(0)
    cell = CfCCell(WIRINGS[wiring](), INPUT_SIZE, mode).eval()
    x = torch.randn(5, 6, INPUT_SIZE)
    dt = torch.rand(5, 6) * 0.1
    state = 0.3 * torch.randn(5, cell.units)

    def run(cell):
        with torch.no_grad():
            outputs, final = cell(x, dt, state)
            output, stepped = cell.step(x[:, 0], state, dt[:, 0])
        return outputs, final, output, stepped

    _assert_all_close(*_run_both(cell, run))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("wiring", sorted(WIRINGS))
def test_cfc_gradients_match(wiring, mode):
    torch.manual_seed(1)
    cell = CfCCell(WIRINGS[wiring](), INPUT_SIZE, mode, self_connections=wiring != "random")
    x = torch.randn(4, 5, INPUT_SIZE, requires_grad=True)
    dt = torch.rand(4, 5) * 0.2
    initial = (0.3 * torch.randn(4, cell.units)).requires_grad_()

    def run(cell):
        cell.zero_grad()
        x.grad = None
        initial.grad = None
        outputs, final = cell(x, dt, initial)
        # A loss that reaches every state, not only the motor outputs.
        (outputs.square().sum() + final.sin().sum()).backward()
        gradients = [parameter.grad.clone() for parameter in cell.parameters()]
        return [outputs.detach(), final.detach(), x.grad.clone(), initial.grad.clone(), *gradients]

    reference, actual = _run_both(cell, run)
    assert len(reference) > 4
    _assert_all_close(reference, actual)


@pytest.mark.parametrize("solver", ["semi_implicit", "euler", "rk4"])
@pytest.mark.parametrize("max_substep_s", [None, 0.01], ids=["fixed", "adaptive"])
def test_ltc_inference_matches(solver, max_substep_s):
    torch.manual_seed(2)
    cell = LTCCell(AutoNCP(19, 2), INPUT_SIZE, solver=solver, max_substep_s=max_substep_s, ode_unfolds=4).eval()
    x = torch.randn(5, 6, INPUT_SIZE)
    dt = torch.rand(5, 6) * 0.1
    state = 0.3 * torch.randn(5, cell.units)

    def run(cell):
        with torch.no_grad():
            outputs, final = cell(x, dt, state)
            output, stepped = cell.step(x[:, 0], state, 0.03)
        return outputs, final, output, stepped

    _assert_all_close(*_run_both(cell, run))


def _ltc_dt(kind, batch_size, steps):
    """Return a dt in seconds: one float, one value per step, or one per sample and step."""
    if kind == "float":
        return 0.05
    if kind == "per_step":
        return (0.02 + torch.rand(1, steps) * 0.08).expand(batch_size, steps)
    return 0.02 + torch.rand(batch_size, steps) * 0.08


def _ltc_training_run(x, dt, initial):
    """Return a function that runs an LTC forward and backward and collects the results."""

    def run(cell):
        cell.zero_grad()
        x.grad = None
        initial.grad = None
        outputs, final = cell(x, dt, initial)
        # A loss that reaches every state, not only the motor outputs.
        (outputs.square().sum() + final.sin().sum()).backward()
        gradients = [parameter.grad.clone() for parameter in cell.parameters()]
        return [outputs.detach(), final.detach(), x.grad.clone(), initial.grad.clone(), *gradients]

    return run


@pytest.mark.parametrize("enforce_polarity", [True, False], ids=["polarity", "learned_erev"])
@pytest.mark.parametrize("dt_kind", ["float", "per_step", "per_sample"])
@pytest.mark.parametrize("batch_size", [1, 4, 19])
def test_ltc_gradients_match(batch_size, dt_kind, enforce_polarity):
    torch.manual_seed(3)
    cell = LTCCell(AutoNCP(19, 2), INPUT_SIZE, enforce_polarity=enforce_polarity)
    x = torch.randn(batch_size, 5, INPUT_SIZE, requires_grad=True)
    initial = (0.3 * torch.randn(batch_size, cell.units)).requires_grad_()
    dt = _ltc_dt(dt_kind, batch_size, 5)

    reference, actual = _run_both(cell, _ltc_training_run(x, dt, initial))
    expected_count = 4 + 13 if enforce_polarity else 4 + 15
    assert len(reference) == expected_count
    _assert_all_close(reference, actual)


def test_ltc_gradients_match_float64_reference():
    """The kernels compute in float64, so they also match a float64 PyTorch run."""
    torch.manual_seed(4)
    cell = LTCCell(NCP(6, 4, 2, sensory_fanout=3, inter_fanout=2, recurrent_command_synapses=5, motor_fanin=3), INPUT_SIZE)
    x = torch.randn(4, 6, INPUT_SIZE, dtype=torch.float64, requires_grad=True)
    initial = (0.3 * torch.randn(4, cell.units, dtype=torch.float64)).requires_grad_()
    dt = _ltc_dt("per_sample", 4, 6)

    cell.double()
    cell.fast_path = False
    reference = _ltc_training_run(x, dt, initial)(cell)
    cell.float()
    cell.fast_path = True
    x32 = x.detach().float().requires_grad_()
    initial32 = initial.detach().float().requires_grad_()
    actual = _ltc_training_run(x32, dt.float(), initial32)(cell)
    for expected, value in zip(reference, actual):
        torch.testing.assert_close(value.double(), expected, rtol=1e-5, atol=1e-6)


def test_ltc_adaptive_substep_gradients_match():
    """With max_substep_s, samples of one step take different substep counts."""
    torch.manual_seed(5)
    cell = LTCCell(AutoNCP(19, 1), INPUT_SIZE, max_substep_s=0.01, max_unfolds=8)
    x = torch.randn(4, 5, INPUT_SIZE, requires_grad=True)
    initial = (0.3 * torch.randn(4, cell.units)).requires_grad_()
    dt = 0.005 + torch.rand(4, 5) * 0.1  # 1 to 8 substeps of at most 0.01 s, some capped

    _assert_all_close(*_run_both(cell, _ltc_training_run(x, dt, initial)))


def test_ltc_training_uses_kernels(monkeypatch):
    torch.manual_seed(6)
    cell = LTCCell(AutoNCP(19, 1), INPUT_SIZE)

    def forbidden(*args, **kwargs):
        raise AssertionError("the PyTorch step ran")

    monkeypatch.setattr(cell, "_step", forbidden)
    outputs, _ = cell(torch.randn(3, 4, INPUT_SIZE), 0.05)
    outputs.sum().backward()
    assert cell.sensory_weight.grad is not None
    assert cell.sensory_weight.grad.abs().sum() > 0


@pytest.mark.parametrize("solver", ["euler", "rk4"])
def test_ltc_other_solvers_train_through_pytorch(solver, monkeypatch):
    torch.manual_seed(7)
    cell = LTCCell(AutoNCP(19, 1), INPUT_SIZE, solver=solver)

    def forbidden(*args, **kwargs):
        raise AssertionError("the training kernel ran")

    monkeypatch.setattr(fast.LTCSequence, "apply", forbidden)
    outputs, _ = cell(torch.randn(3, 4, INPUT_SIZE), 0.05)
    outputs.sum().backward()
    assert cell.sensory_weight.grad.abs().sum() > 0


def test_ltc_dt_gradient_uses_pytorch():
    """The kernels compute no gradient for dt, so a dt that requires one uses PyTorch."""
    torch.manual_seed(8)
    cell = LTCCell(AutoNCP(19, 1), INPUT_SIZE)
    dt = torch.full((2, 3), 0.05, requires_grad=True)
    outputs, _ = cell(torch.randn(2, 3, INPUT_SIZE), dt)
    outputs.sum().backward()
    assert dt.grad is not None
    assert dt.grad.abs().sum() > 0


@pytest.mark.parametrize("batch_size", [1, 4, 12])
def test_kernel_step_per_sample_dt(batch_size):
    """Batch 12 equals the inter layer width of AutoNCP(19, 1)."""
    torch.manual_seed(4)
    cell = CfCCell(AutoNCP(19, 1), INPUT_SIZE).eval()
    assert cell.wiring.layers[0].size == 12
    x = torch.randn(batch_size, INPUT_SIZE)
    state = 0.3 * torch.randn(batch_size, cell.units)
    dt = torch.rand(batch_size) * 0.2
    with torch.no_grad():
        _, batched = cell.step(x, state, dt)
        for sample in range(batch_size):
            _, alone = cell.step(x[sample : sample + 1], state[sample : sample + 1], float(dt[sample]))
            torch.testing.assert_close(batched[sample : sample + 1], alone, **CLOSE)


def test_kernel_handles_non_contiguous_inputs():
    torch.manual_seed(5)
    cell = CfCCell(AutoNCP(19, 1), INPUT_SIZE).eval()
    x = torch.randn(INPUT_SIZE, 3, 4).permute(1, 2, 0)  # (batch, time, input), not contiguous
    assert not x.is_contiguous()
    with torch.no_grad():
        expected, _ = cell(x.contiguous(), 0.05)
        actual, _ = cell(x, 0.05)
    torch.testing.assert_close(actual, expected)


def test_kernel_plan_sees_weight_updates():
    torch.manual_seed(6)
    cell = CfCCell(AutoNCP(19, 1), INPUT_SIZE).eval()
    x = torch.randn(2, INPUT_SIZE)
    state = 0.3 * torch.randn(2, cell.units)
    with torch.no_grad():
        _, before = cell.step(x, state, 0.05)
        cell.bias += 0.5
        _, after = cell.step(x, state, 0.05)
        cell.fast_path = False
        _, reference = cell.step(x, state, 0.05)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, reference, **CLOSE)


def test_kernel_plan_sees_load_state_dict():
    torch.manual_seed(7)
    cell = LTCCell(AutoNCP(19, 1), INPUT_SIZE).eval()
    other = LTCCell(AutoNCP(19, 1), INPUT_SIZE).eval()
    x = torch.randn(2, INPUT_SIZE)
    state = cell.initial_state(2)
    with torch.no_grad():
        cell.step(x, state, 0.05)  # fills the plan cache
        cell.load_state_dict(other.state_dict(), assign=True)
        actual, _ = cell.step(x, state, 0.05)
        expected, _ = other.step(x, state, 0.05)
    torch.testing.assert_close(actual, expected)


def test_kernels_not_used_with_gradients_in_step():
    """step() with gradients enabled must stay differentiable (PyTorch path)."""
    torch.manual_seed(8)
    cell = CfCCell(AutoNCP(19, 1), INPUT_SIZE)
    x = torch.randn(1, INPUT_SIZE, requires_grad=True)
    output, _ = cell.step(x, cell.initial_state(1), 0.05)
    output.sum().backward()
    assert x.grad is not None


def test_mixed_memory_falls_back_to_pytorch():
    torch.manual_seed(9)
    cell = CfCCell(AutoNCP(19, 1), INPUT_SIZE, mixed_memory=True).eval()
    assert not cell._use_kernels(torch.zeros(1, INPUT_SIZE))
    with torch.no_grad():
        outputs, state = cell(torch.randn(2, 3, INPUT_SIZE), 0.05)
    assert state.shape == (2, 2 * cell.units)


def test_float64_falls_back_to_pytorch():
    cell = CfCCell(AutoNCP(19, 1), INPUT_SIZE).double().eval()
    x = torch.randn(2, 3, INPUT_SIZE, dtype=torch.float64)
    assert not cell._use_kernels(x)
    with torch.no_grad():
        outputs, _ = cell(x, 0.05)
    assert outputs.dtype == torch.float64


def test_shipped_model_kernels_match(tmp_path):
    """The shipped checkpoint gives the same curvature on both paths, if it is present."""
    from pathlib import Path

    from liquid_driver.model import load_checkpoint

    path = Path(__file__).resolve().parents[1] / "models" / "lane_keeper.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    policy, _ = load_checkpoint(path)
    images = torch.rand(2, 4, 3, *policy.input_size)
    dt = 0.02 + torch.rand(2, 4) * 0.06
    policy.controller.fast_path = False
    with torch.no_grad():
        expected, _ = policy(images, dt)
        policy.controller.fast_path = True
        actual, _ = policy(images, dt)
    torch.testing.assert_close(actual, expected, **CLOSE)


def test_policy_step_uses_kernels(monkeypatch):
    """In eval mode without gradients, policy.step runs the kernel, not the PyTorch step."""
    policy = DrivingPolicy(PolicyConfig()).eval()

    def forbidden(*args, **kwargs):
        raise AssertionError("the PyTorch step ran")

    monkeypatch.setattr(policy.controller, "_step", forbidden)
    with torch.inference_mode():
        curvature, state = policy.step(torch.rand(1, 3, *policy.input_size), policy.initial_state(1), 0.05)
    assert curvature.shape == (1, 1)
    assert state.shape == (1, 19)
