"""Bridge between the PyTorch cells and the compiled kernels in :mod:`.kernels`.

The cells use the kernels when all of these hold, and their PyTorch code otherwise:

* numba can be imported (:func:`load_kernels` returns the module);
* the cell's ``fast_path`` attribute is True (the default);
* the tensors are float32 on the CPU;
* nothing is being traced, scripted or compiled (exports always see PyTorch operators);
* the cell has no dense backbone and no mixed memory.

With gradients disabled, ``step`` and ``forward`` of both cells run the kernels. With
gradients enabled, the sequence ``forward`` runs :class:`CfCSequence` (CfC) or
:class:`LTCSequence` (LTC with the semi-implicit solver), whose backward passes are
kernels too, unless ``dt`` requires a gradient. The other LTC solvers and ``step`` train
through PyTorch autograd.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np
import torch

logger = logging.getLogger(__name__)

# Set LIQUID_DRIVER_KERNELS=0 to run every cell on its PyTorch code, for example to
# compare speeds or to rule the kernels out while debugging.
KERNELS_ENV = "LIQUID_DRIVER_KERNELS"

_kernels: ModuleType | None = None
_load_attempted = False


def load_kernels() -> ModuleType | None:
    """Import and return :mod:`liquid_driver.model.kernels`, or None without numba.

    The first call imports numba (about 0.3 s). Each kernel compiles on its first call,
    or loads from numba's on-disk cache next to the module.
    """
    global _kernels, _load_attempted
    if _load_attempted:
        return _kernels
    _load_attempted = True
    if os.environ.get(KERNELS_ENV, "1") == "0":
        logger.info("%s=0, so the liquid cells run on PyTorch operators only", KERNELS_ENV)
        return None
    try:
        from . import kernels
    except ImportError as error:
        logger.warning(
            "numba is not available (%s), so the liquid cells run on PyTorch operators "
            "only, which is several times slower at batch 1. Install numba to fix this.",
            error,
        )
        return None
    _kernels = kernels
    return _kernels


def kernels_usable(x: torch.Tensor) -> bool:
    """Return whether a kernel may process ``x`` (see the module docstring)."""
    if x.dtype != torch.float32 or not x.is_cpu:
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling():
        return False
    return load_kernels() is not None


_FLOAT32 = np.dtype(np.float32)


def as_array(tensor: torch.Tensor) -> np.ndarray:
    """Return a C-contiguous float32 numpy view (or copy) of a CPU tensor."""
    array = (tensor.detach() if tensor.requires_grad else tensor).numpy()
    # numpy's built-in dtypes are singletons, and "is" is cheaper than "==".
    if array.dtype is _FLOAT32 and array.flags.c_contiguous:
        return array
    return np.ascontiguousarray(array, dtype=np.float32)


class CfCStructure(NamedTuple):
    """Static sparse layout of a wired CfC's recurrent synapses, for the kernels.

    An entry is one (head, destination, source) weight that the wiring keeps. ``*_row``
    is ``head * units + destination``, the entry's row in the drive vector, and
    ``*_flat`` is the entry's index in the flattened (heads, units, units) recurrent
    weight. Forward entries are sorted by destination layer: those of layer ``l`` are
    ``forward_start[l]:forward_start[l + 1]``.
    """

    mode: int
    units: int
    heads: int
    layer_bounds: np.ndarray  # (layers + 1,) first neuron of each layer, then units
    delayed_source: np.ndarray
    delayed_row: np.ndarray
    delayed_flat: np.ndarray
    forward_source: np.ndarray
    forward_row: np.ndarray
    forward_flat: np.ndarray
    forward_start: np.ndarray


class CfCPlan(NamedTuple):
    """Effective CfC weights as numpy arrays, for inference with the kernels."""

    input_weight_t: np.ndarray  # (input_size, heads * units)
    bias: np.ndarray  # (heads * units,)
    delayed_weight: np.ndarray  # (delayed entries,)
    forward_weight: np.ndarray  # (forward entries,)
    tau: np.ndarray  # (units,) |tau_weight| ("pure" mode) or zeros
    amplitude: np.ndarray  # (units,) ("pure" mode) or zeros


def run_cfc(structure: CfCStructure, plan: CfCPlan, inputs: np.ndarray, initial: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Run the CfC kernel over sequences.

    Args:
        inputs: (batch, time, input_size) features.
        initial: (batch, units) state before the first step.
        time: (batch, time) cell time.

    Returns:
        The states after each step, (batch, time, units), C-contiguous.
    """
    kernels = load_kernels()
    assert kernels is not None
    batch_size, steps, _ = inputs.shape
    states = np.empty((steps, structure.units, batch_size), np.float32)
    # The kernels put the batch last. With batch 1 these transposes are free views.
    kernels.cfc_forward(
        np.ascontiguousarray(inputs.transpose(1, 2, 0)),  # (time, input_size, batch)
        plan.input_weight_t,
        plan.bias,
        np.ascontiguousarray(initial.T),  # (units, batch)
        np.ascontiguousarray(time.T),  # (time, batch)
        structure.mode, structure.units, structure.layer_bounds,
        structure.delayed_source, structure.delayed_row, plan.delayed_weight,
        structure.forward_source, structure.forward_row, plan.forward_weight, structure.forward_start,
        plan.tau, plan.amplitude, states,
    )
    return np.ascontiguousarray(states.transpose(2, 0, 1))  # (batch, time, units)


class CfCSequence(torch.autograd.Function):
    """Differentiable CfC recurrence over a sequence, computed by the kernels.

    Inputs are the input term ``(batch, time, heads * units)`` (bias included), the
    recurrent weights of the delayed and forward entries, the initial state
    ``(batch, units)``, ``tau_weight`` and ``amplitude`` (used in "pure" mode), the cell
    time ``(batch, time)`` and the :class:`CfCStructure`. The output is the state after
    every step, ``(batch, time, units)``. The gradient with respect to the cell time is
    not computed.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        input_drive: torch.Tensor,
        delayed_weight: torch.Tensor,
        forward_weight: torch.Tensor,
        initial: torch.Tensor,
        tau_weight: torch.Tensor,
        amplitude: torch.Tensor,
        time: torch.Tensor,
        structure: CfCStructure,
    ) -> torch.Tensor:
        kernels = load_kernels()
        assert kernels is not None
        batch_size, steps, rows = input_drive.shape
        # (batch, time, n) -> (time, n, batch) for the kernels.
        drive = np.ascontiguousarray(as_array(input_drive).transpose(1, 2, 0))
        arrays = {
            "delayed_weight": as_array(delayed_weight),
            "forward_weight": as_array(forward_weight),
            "initial": np.ascontiguousarray(as_array(initial).T),  # (units, batch)
            "tau_weight": as_array(tau_weight),
            "amplitude": as_array(amplitude),
            "time": np.ascontiguousarray(as_array(time).T),  # (time, batch)
        }
        states = np.empty((steps, structure.units, batch_size), np.float32)
        saved = np.empty((steps, kernels.CFC_SAVED_VALUES, structure.units, batch_size), np.float32)
        kernels.cfc_forward_drive(
            drive, arrays["initial"], arrays["time"], structure.mode, structure.units,
            structure.layer_bounds, structure.delayed_source, structure.delayed_row,
            arrays["delayed_weight"], structure.forward_source, structure.forward_row,
            arrays["forward_weight"], structure.forward_start, np.abs(arrays["tau_weight"]),
            arrays["amplitude"], states, saved,
        )
        ctx.structure = structure
        ctx.arrays = arrays
        ctx.states = states
        ctx.saved = saved
        ctx.rows = rows
        # (time, units, batch) -> (batch, time, units)
        return torch.from_numpy(np.ascontiguousarray(states.transpose(2, 0, 1)))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_states: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        kernels = load_kernels()
        assert kernels is not None
        structure: CfCStructure = ctx.structure
        arrays = ctx.arrays
        states = ctx.states
        steps, units, batch_size = states.shape
        grad_drive = np.empty((steps, ctx.rows, batch_size), np.float32)
        grad_initial = np.empty((units, batch_size), np.float32)
        grad_delayed = np.zeros(structure.delayed_source.shape[0], np.float64)
        grad_forward = np.zeros(structure.forward_source.shape[0], np.float64)
        grad_tau_weight = np.zeros(units, np.float64)
        grad_amplitude = np.zeros(units, np.float64)
        kernels.cfc_backward(
            np.ascontiguousarray(as_array(grad_states).transpose(1, 2, 0)), states, ctx.saved,
            arrays["initial"], arrays["time"], structure.mode, units, structure.layer_bounds,
            structure.delayed_source, structure.delayed_row, arrays["delayed_weight"],
            structure.forward_source, structure.forward_row, arrays["forward_weight"],
            structure.forward_start, arrays["tau_weight"], arrays["amplitude"],
            grad_drive, grad_initial, grad_delayed, grad_forward, grad_tau_weight, grad_amplitude,
        )

        def result(index: int, value: np.ndarray) -> torch.Tensor | None:
            if not ctx.needs_input_grad[index]:
                return None
            return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))

        return (
            result(0, grad_drive.transpose(2, 0, 1)),  # (time, n, batch) -> (batch, time, n)
            result(1, grad_delayed),
            result(2, grad_forward),
            result(3, grad_initial.T),  # (units, batch) -> (batch, units)
            result(4, grad_tau_weight),
            result(5, grad_amplitude),
            None,
            None,
        )


class LTCStructure(NamedTuple):
    """Synapse layout and solver settings of an LTC, for the training kernels."""

    sensory_source: np.ndarray  # (sensory synapses,) input index
    sensory_destination: np.ndarray  # (sensory synapses,) neuron index
    source: np.ndarray  # (synapses,) neuron index
    destination: np.ndarray  # (synapses,) neuron index
    unfolds: int  # substeps per step when max_substep is 0
    max_substep: float  # max substep in cell time, or 0 for a fixed unfolds
    max_unfolds: int
    epsilon: float
    min_time: float  # smallest cell time per step


class LTCSequence(torch.autograd.Function):
    """Differentiable semi-implicit LTC over a sequence, computed by the kernels.

    Inputs are the mapped inputs ``(batch, time, input_size)`` and the sensory synapses'
    conductance, mu, sigma and reversal potential, one entry per synapse. The same four
    follow for the neuron-to-neuron synapses, then ``gleak``, ``vleak`` and ``cm`` of
    shape (units,), the initial state ``(batch, units)``, the cell time
    ``(batch, time)`` and the :class:`LTCStructure`. Conductances, ``gleak`` and ``cm``
    come after softplus. The output is the state after every step,
    ``(batch, time, units)``. The gradient with respect to the cell time is not computed.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        mapped: torch.Tensor,
        sensory_weight: torch.Tensor,
        sensory_mu: torch.Tensor,
        sensory_sigma: torch.Tensor,
        sensory_erev: torch.Tensor,
        weight: torch.Tensor,
        mu: torch.Tensor,
        sigma: torch.Tensor,
        erev: torch.Tensor,
        gleak: torch.Tensor,
        vleak: torch.Tensor,
        cm: torch.Tensor,
        initial: torch.Tensor,
        time: torch.Tensor,
        structure: LTCStructure,
    ) -> torch.Tensor:
        kernels = load_kernels()
        assert kernels is not None
        batch_size, steps, _ = mapped.shape
        units = initial.shape[1]

        # The kernels put the batch last: (batch, time, n) -> (time, n, batch).
        arrays = [
            np.ascontiguousarray(as_array(mapped).transpose(1, 2, 0)),
            np.ascontiguousarray(as_array(initial).T),  # (units, batch)
            np.ascontiguousarray(as_array(time).T),  # (time, batch)
            # Copies, so that an in-place parameter update before backward changes nothing.
            *(
                as_array(tensor).copy()
                for tensor in (
                    sensory_weight, sensory_mu, sensory_sigma, sensory_erev,
                    weight, mu, sigma, erev, gleak, vleak, cm,
                )
            ),
        ]

        max_substeps = structure.max_unfolds if structure.max_substep > 0.0 else structure.unfolds
        states = np.empty((steps, units, batch_size), np.float32)
        saved = (
            np.empty((steps, max_substeps + 1, units, batch_size), np.float64),  # potentials
            np.empty((steps, max_substeps, units, batch_size), np.float64),  # denominators
            np.empty((steps, max_substeps, structure.source.shape[0], batch_size), np.float64),
            np.empty((steps, structure.sensory_source.shape[0], batch_size), np.float64),
        )
        kernels.ltc_semi_implicit_forward(*_ltc_kernel_arguments(arrays, structure), states, *saved)

        ctx.structure = structure
        ctx.arrays = arrays
        ctx.saved = saved
        # (time, units, batch) -> (batch, time, units)
        return torch.from_numpy(np.ascontiguousarray(states.transpose(2, 0, 1)))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_states: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        kernels = load_kernels()
        assert kernels is not None
        structure: LTCStructure = ctx.structure
        arrays = ctx.arrays
        mapped, initial = arrays[0], arrays[1]
        grad_mapped = np.empty(mapped.shape, np.float32)
        grad_initial = np.empty(initial.shape, np.float32)
        # Rows: conductance, mu, sigma, reversal potential.
        grad_sensory = np.zeros((4, structure.sensory_source.shape[0]), np.float64)
        grad_synapse = np.zeros((4, structure.source.shape[0]), np.float64)
        # Rows: gleak, vleak, cm.
        grad_neuron = np.zeros((3, initial.shape[0]), np.float64)
        kernels.ltc_semi_implicit_backward(
            np.ascontiguousarray(as_array(grad_states).transpose(1, 2, 0)),  # (time, units, batch)
            *_ltc_kernel_arguments(arrays, structure), *ctx.saved,
            grad_mapped, grad_initial, grad_sensory, grad_synapse, grad_neuron,
        )

        def result(index: int, value: np.ndarray) -> torch.Tensor | None:
            if not ctx.needs_input_grad[index]:
                return None
            return torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))

        return (
            result(0, grad_mapped.transpose(2, 0, 1)),  # (time, n, batch) -> (batch, time, n)
            *(result(1 + row, grad_sensory[row]) for row in range(4)),
            *(result(5 + row, grad_synapse[row]) for row in range(4)),
            *(result(9 + row, grad_neuron[row]) for row in range(3)),
            result(12, grad_initial.T),  # (units, batch) -> (batch, units)
            None,
            None,
        )


def _ltc_kernel_arguments(arrays: list[np.ndarray], structure: LTCStructure) -> tuple[Any, ...]:
    """Order the arrays of :class:`LTCSequence` as the LTC training kernels take them."""
    (
        mapped, initial, time, sensory_weight, sensory_mu, sensory_sigma, sensory_erev,
        weight, mu, sigma, erev, gleak, vleak, cm,
    ) = arrays
    return (
        mapped, initial, time,
        structure.sensory_source, structure.sensory_destination,
        sensory_weight, sensory_mu, sensory_sigma, sensory_erev,
        structure.source, structure.destination, weight, mu, sigma, erev,
        gleak, vleak, cm, structure.unfolds, structure.max_substep, structure.max_unfolds,
        structure.epsilon, structure.min_time,
    )
