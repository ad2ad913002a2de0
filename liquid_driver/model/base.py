"""Shared machinery of the wired liquid cells: time steps, input checks, parameter counts.

Every cell exposes the same streaming and sequence API:

* ``initial_state(batch_size) -> (batch, state_size)`` zeros;
* ``step(x, state, dt) -> (output, new_state)`` for one time step;
* ``forward(x, dt, state=None) -> (outputs, final_state)`` for ``x`` of shape
  (batch, time, input_size);
* ``reset_state(state, done)`` to restart chosen batch entries from rest.

The state has ``units`` columns, or ``2 * units`` with mixed memory: the neuron states
followed by the memory cell of the LSTM gate.

``dt`` is the elapsed time in seconds. A step accepts a python float, a 0-d tensor or a
tensor of shape (batch,) or (batch, 1). A sequence accepts a float, a 0-d tensor or a
tensor of shape (batch, time). Other shapes raise instead of broadcasting, because a 1-d
``dt`` whose length equals the number of neurons would otherwise be spread along the
neuron axis without any error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from . import fast
from .wiring import Wiring

TimeStep = Union[float, torch.Tensor]

# Cell time is dt / time_scale_s. With 0.05 s (one frame at 20 Hz) the time gates and
# ODE capacitances start in a useful range at camera frame rates. The value is stored in
# the checkpoint's config, so a trained cell keeps its time base.
DEFAULT_TIME_SCALE_S = 0.05


@dataclass(frozen=True)
class ParameterCount:
    """Parameter and synapse counts of a module, with masked-out weights excluded."""

    total: int  # every stored parameter entry, masked or not
    effective: int  # entries that can change the output (masked-out weights excluded)
    synapses: int  # neuron-to-neuron synapses of the wiring
    sensory_synapses: int  # input-to-neuron synapses of the wiring

    def __add__(self, other: ParameterCount) -> ParameterCount:
        return ParameterCount(
            self.total + other.total,
            self.effective + other.effective,
            self.synapses + other.synapses,
            self.sensory_synapses + other.sensory_synapses,
        )


def check_dt_float(dt: float) -> float:
    """Return ``dt`` as a float, or raise unless it is finite and >= 0 seconds."""
    value = float(dt)
    if not math.isfinite(value) or value < 0.0:
        raise ValueError(f"dt={dt!r} s is invalid: the elapsed time must be finite and >= 0")
    return value


def _check_dt_tensor(dt: torch.Tensor) -> None:
    if not dt.is_floating_point():
        raise TypeError(f"dt must be a floating point tensor in seconds, got dtype {dt.dtype}")
    valid = (dt >= 0.0) & torch.isfinite(dt)
    if not bool(valid.all()):
        bad = dt[~valid].flatten()[:3].tolist()
        raise ValueError(f"dt contains {bad} s, but every elapsed time must be finite and >= 0")


def dt_column(dt: TimeStep, batch_size: int, like: torch.Tensor) -> torch.Tensor:
    """Convert a step's ``dt`` to a (batch, 1) tensor in seconds on ``like``'s device.

    Raises:
        ValueError: wrong shape, negative or non-finite values.
        TypeError: an integer tensor.
    """
    if not isinstance(dt, torch.Tensor):
        return torch.full((batch_size, 1), check_dt_float(dt), dtype=like.dtype, device=like.device)
    _check_dt_tensor(dt)
    dt = dt.to(dtype=like.dtype, device=like.device)
    if dt.dim() == 0:
        return dt.expand(batch_size, 1)
    if dt.shape == (batch_size,):
        return dt.reshape(batch_size, 1)  # (batch,) -> (batch, 1)
    if dt.shape == (batch_size, 1):
        return dt
    raise ValueError(
        f"dt has shape {tuple(dt.shape)} for a batch of {batch_size}. A step takes a float, "
        f"a 0-d tensor or a tensor of shape ({batch_size},) or ({batch_size}, 1)"
    )


def dt_matrix(dt: TimeStep, batch_size: int, steps: int, like: torch.Tensor) -> torch.Tensor:
    """Convert a sequence's ``dt`` to a (batch, time) tensor in seconds.

    Raises:
        ValueError: wrong shape, negative or non-finite values.
        TypeError: an integer tensor.
    """
    if not isinstance(dt, torch.Tensor):
        value = check_dt_float(dt)
        return torch.full((batch_size, steps), value, dtype=like.dtype, device=like.device)
    _check_dt_tensor(dt)
    dt = dt.to(dtype=like.dtype, device=like.device)
    if dt.dim() == 0:
        return dt.expand(batch_size, steps)
    if dt.shape == (batch_size, steps):
        return dt
    raise ValueError(
        f"dt has shape {tuple(dt.shape)} for {batch_size} sequences of {steps} steps. A "
        f"sequence takes a float, a 0-d tensor or a tensor of shape ({batch_size}, {steps})"
    )


def check_input(name: str, x: Any, dims: int, last: int | None = None) -> torch.Tensor:
    """Raise unless ``x`` is a floating point tensor with ``dims`` dimensions.

    ``last`` is the required size of the last dimension, when given.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if x.dim() != dims or (last is not None and x.shape[-1] != last):
        expected = f"{dims} dimensions" + ("" if last is None else f" ending in {last}")
        raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {expected}")
    return x


def _clear_caches_after_load(module: WiredCell, incompatible_keys: Any) -> None:
    """Drop cached weights after ``load_state_dict``, which may replace the parameters."""
    module._clear_caches()


class RestingStateMixin:
    """State handling of a controller whose resting state is zeros: ``initial_state``,
    ``reset_state`` and the shape check of a state.

    The class that uses it is an ``nn.Module`` with at least one parameter and an int
    ``state_size``.
    """

    state_size: int

    def initial_state(
        self,
        batch_size: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Return the resting state, zeros of shape (batch_size, state_size)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is invalid: use an int >= 1")
        reference = next(self.parameters())
        return torch.zeros(
            batch_size,
            self.state_size,
            device=reference.device if device is None else device,
            dtype=reference.dtype if dtype is None else dtype,
        )

    def reset_state(self, state: torch.Tensor, done: torch.Tensor | None = None) -> torch.Tensor:
        """Return ``state`` with the rows where ``done`` is True set to the resting state.

        Args:
            state: States (batch, state_size).
            done: Booleans of shape (batch,), or None to reset every row.

        Returns:
            A new tensor. ``state`` itself is not modified.
        """
        check_input("state", state, 2, self.state_size)
        if done is None:
            return torch.zeros_like(state)
        if not isinstance(done, torch.Tensor) or done.dtype != torch.bool or done.shape != state.shape[:1]:
            shape = tuple(done.shape) if isinstance(done, torch.Tensor) else type(done).__name__
            raise ValueError(
                f"done must be a bool tensor of shape ({state.shape[0]},) with one flag per "
                f"batch entry, got {shape}"
            )
        return state.masked_fill(done.reshape(-1, 1), 0.0)

    def _check_state(self, state: Any, batch_size: int) -> torch.Tensor:
        check_input("state", state, 2, self.state_size)
        if state.shape[0] != batch_size:
            raise ValueError(
                f"state has batch size {state.shape[0]} but the input has {batch_size}. "
                "Use initial_state(batch_size) for a new batch."
            )
        return state


class WiredCell(RestingStateMixin, nn.Module):
    """Base class of cells whose synapses follow a :class:`~liquid_driver.model.wiring.Wiring`.

    Subclasses implement ``_compute_weights()`` (the masked effective weights, computed
    once per sequence) and ``_step(x, state, time, weights, static_unfolds=False)`` where
    ``time`` is ``dt / time_scale_s`` with shape (batch, 1) and ``static_unfolds`` requests
    a loop whose length does not depend on ``time`` (for export). Subclasses that
    have compiled kernels (see :mod:`.fast`) also implement ``_kernel_supported``,
    ``_build_plan`` and ``_kernel_run``.

    Mixed memory. With ``mixed_memory`` an LSTM cell runs ahead of the liquid cell at
    every step, as proposed by Lechner and Hasani, "Learning long-term dependencies in
    irregularly-sampled time series", 2020: it reads the input and the neuron states
    and hands its output to the liquid cell as the previous neuron states. Its forget
    gate bias starts at 1 so that the memory cell starts by keeping its content.

    Attributes:
        fast_path: Use the compiled kernels where :mod:`.fast` allows it. Set it to False
            to run the PyTorch operators, which are the reference implementation.

    Args:
        wiring: The wiring, which is built here when ``input_size`` is given.
        input_size: Number of input features, or None if the wiring is already built.
        time_scale_s: Seconds that make one unit of cell time.
        mixed_memory: Add an LSTM gate ahead of the liquid cell.
    """

    def __init__(
        self,
        wiring: Wiring,
        input_size: int | None = None,
        time_scale_s: float = DEFAULT_TIME_SCALE_S,
        mixed_memory: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(wiring, Wiring):
            raise TypeError(f"wiring must be a Wiring, got {type(wiring).__name__}")
        if input_size is not None:
            wiring.build(input_size)
        wiring.require_built()
        if not (math.isfinite(time_scale_s) and time_scale_s > 0.0):
            raise ValueError(f"time_scale_s={time_scale_s!r} is invalid: use a positive number of seconds")
        self.wiring = wiring
        self.input_size = int(wiring.input_size)  # type: ignore[arg-type]
        self.units = wiring.units
        self.output_size = wiring.output_size
        self.time_scale_s = float(time_scale_s)
        self.mixed_memory = bool(mixed_memory)
        self.state_size = 2 * self.units if self.mixed_memory else self.units
        self.memory: nn.LSTMCell | None = None
        if self.mixed_memory:
            self.memory = nn.LSTMCell(self.input_size, self.units)
            with torch.no_grad():
                # PyTorch orders the gates input, forget, cell, output.
                self.memory.bias_ih[self.units : 2 * self.units] += 1.0
        self.fast_path = True
        # Parameter name -> name of a buffer with 1 where the entry is used, 0 where masked.
        self._live_masks: dict[str, str] = {}
        self._weights_cache: tuple[list[int], Any] | None = None
        self._plan_cache: tuple[list[int], Any] | None = None
        self.register_load_state_dict_post_hook(_clear_caches_after_load)

    # -- subclass hooks -----------------------------------------------------------------

    def _compute_weights(self) -> Any:
        raise NotImplementedError

    def _step(
        self, x: torch.Tensor, state: torch.Tensor, time: torch.Tensor, weights: Any, static_unfolds: bool = False
    ) -> torch.Tensor:
        raise NotImplementedError

    def _kernel_supported(self) -> bool:
        """Return whether this cell's configuration has compiled kernels."""
        return False

    def _build_plan(self) -> Any:
        """Return the kernels' numpy weights. Called with gradients disabled."""
        raise NotImplementedError

    def _kernel_run(
        self, x: np.ndarray, state: np.ndarray, time: np.ndarray, plan: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return states (batch, time, units) and outputs (batch, time, output_size).

        Args:
            x: Inputs (batch, time, input_size).
            state: Initial state (batch, units).
            time: Cell time (batch, time).
            plan: The output of :meth:`_build_plan`.
        """
        raise NotImplementedError

    # -- weights ------------------------------------------------------------------------

    def _parameter_key(self) -> list[int]:
        """Return the version counters of the cell's own parameters.

        A counter grows with every in-place change (optimizer steps, ``load_state_dict``).
        Moves and dtype changes go through :meth:`_apply`, and a load that replaces the
        parameters runs :func:`_clear_caches_after_load`, which both clear the caches.
        Assigning ``parameter.data`` directly is not detected.
        """
        return [parameter._version for parameter in self._parameters.values()]

    def _clear_caches(self) -> None:
        self._weights_cache = None
        self._plan_cache = None

    def _apply(self, fn: Any, recurse: bool = True) -> WiredCell:
        self._clear_caches()
        return super()._apply(fn, recurse)

    def _weights(self) -> Any:
        """Return the effective weights, cached while gradients are off and weights unchanged.

        See :meth:`_parameter_key` for what invalidates the cache. ``_compute_weights`` must
        read only the cell's own parameters.
        """
        if torch.is_grad_enabled():
            self._weights_cache = None
            return self._compute_weights()
        key = self._parameter_key()
        if self._weights_cache is None or self._weights_cache[0] != key:
            self._weights_cache = (key, self._compute_weights())
        return self._weights_cache[1]

    def _plan(self) -> Any:
        """Return the kernels' weights, cached under the same key as :meth:`_weights`."""
        key = self._parameter_key()
        if self._plan_cache is None or self._plan_cache[0] != key:
            with torch.no_grad():
                self._plan_cache = (key, self._build_plan())
        return self._plan_cache[1]

    def _use_kernels(self, x: torch.Tensor) -> bool:
        return (
            self.fast_path
            and self.memory is None
            and self._kernel_supported()
            and fast.kernels_usable(x)
        )

    def train(self, mode: bool = True) -> WiredCell:
        self._clear_caches()
        return super().train(mode)

    # -- API ----------------------------------------------------------------------------

    def step(
        self, x: torch.Tensor, state: torch.Tensor, dt: TimeStep
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance the cell by one time step.

        With gradients disabled this runs a compiled kernel where :mod:`.fast` allows it,
        which gives the same numbers as the PyTorch operators to float32 rounding.

        Args:
            x: Input features, shape (batch, input_size).
            state: Cell state, shape (batch, state_size).
            dt: Elapsed time since the previous step in seconds: a float or a tensor of
                shape (batch,) or (batch, 1).

        Returns:
            ``(output, new_state)``: the motor neuron outputs, shape (batch, output_size),
            and the new state, shape (batch, state_size).
        """
        check_input("x", x, 2, self.input_size)
        batch_size = x.shape[0]
        state = self._check_state(state, batch_size)
        if not torch.is_grad_enabled() and self._use_kernels(x):
            time = self._kernel_time(dt, batch_size, 1, x)
            plan = self._plan()
            inputs = fast.as_array(x)[:, None, :]  # (batch, input_size) -> (batch, 1, input_size)
            states, outputs = self._kernel_run(inputs, fast.as_array(state), time, plan)
            # (batch, 1, n) -> (batch, n)
            return torch.from_numpy(outputs[:, 0]), torch.from_numpy(states[:, 0])
        if isinstance(dt, torch.Tensor):
            time = dt_column(dt, batch_size, x) / self.time_scale_s
        else:
            # One tensor op fewer than dt_column(...) / time_scale_s on the per-frame path.
            scaled = check_dt_float(dt) / self.time_scale_s
            time = torch.full((batch_size, 1), scaled, dtype=x.dtype, device=x.device)
        new_state = self._advance(x, state, time, self._weights())
        return self._output(new_state), new_state

    def _kernel_time(self, dt: TimeStep, batch_size: int, steps: int, like: torch.Tensor) -> np.ndarray:
        """Return the cell time (batch, steps) as float32 numpy, checked like the PyTorch path."""
        if isinstance(dt, torch.Tensor):
            if steps == 1 and dt.dim() > 0:
                seconds = dt_column(dt, batch_size, like)
            else:
                seconds = dt_matrix(dt, batch_size, steps, like)
            return np.ascontiguousarray((seconds / self.time_scale_s).numpy(), dtype=np.float32)
        time = np.empty((batch_size, steps), np.float32)
        # Divide in float64 and round once, as the PyTorch path does for a float dt.
        time.fill(check_dt_float(dt) / self.time_scale_s)
        return time

    def _advance(
        self, x: torch.Tensor, state: torch.Tensor, time: torch.Tensor, weights: Any, static_unfolds: bool = False
    ) -> torch.Tensor:
        """Run the mixed-memory LSTM gate, if any, then one liquid step."""
        if self.memory is None:
            return self._step(x, state, time, weights, static_unfolds)
        hidden, cell = state.split(self.units, dim=1)  # (batch, units) each
        hidden, cell = self.memory(x, (hidden, cell))
        hidden = self._step(x, hidden, time, weights, static_unfolds)
        return torch.cat([hidden, cell], dim=1)

    def export_step(self, x: torch.Tensor, state: torch.Tensor, time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance one step with PyTorch operators only and no input checks, for export.

        Args:
            x: Input features (batch, input_size).
            state: Cell state (batch, state_size).
            time: Cell time ``dt / time_scale_s``, shape (batch, 1).

        Returns:
            ``(output, new_state)`` as from :meth:`step`. Loops have a fixed length, so a
            traced graph is valid for every ``dt``.
        """
        new_state = self._advance(x, state, time, self._compute_weights(), static_unfolds=True)
        return self._output(new_state), new_state

    def forward(
        self, x: torch.Tensor, dt: TimeStep, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the cell over a sequence.

        With gradients disabled this runs a compiled kernel where :mod:`.fast` allows it.
        A CfC, and an LTC with the semi-implicit solver, also train through kernels (see
        :class:`~liquid_driver.model.fast.CfCSequence` and :class:`~liquid_driver.model.fast.LTCSequence`).

        Args:
            x: Input features, shape (batch, time, input_size).
            dt: Elapsed time before each step in seconds: a float or a tensor of shape
                (batch, time).
            state: Initial state (batch, state_size), or None for zeros.

        Returns:
            ``(outputs, final_state)`` with shapes (batch, time, output_size) and
            (batch, state_size).
        """
        check_input("x", x, 3, self.input_size)
        batch_size, steps = x.shape[0], x.shape[1]
        if steps == 0:
            raise ValueError("x has 0 time steps. Pass a sequence of at least one step.")
        if state is None:
            state = self.initial_state(batch_size, device=x.device, dtype=x.dtype)
        state = self._check_state(state, batch_size)
        if not torch.is_grad_enabled() and self._use_kernels(x):
            plan = self._plan()
            time_array = self._kernel_time(dt, batch_size, steps, x)
            states_array, outputs = self._kernel_run(fast.as_array(x), fast.as_array(state), time_array, plan)
            return torch.from_numpy(outputs), torch.from_numpy(states_array[:, -1])
        time = dt_matrix(dt, batch_size, steps, x) / self.time_scale_s
        states = self._run_sequence(x, state, time)
        outputs = self._output(states)  # (batch, time, state_size) -> (batch, time, output_size)
        return outputs, states[:, -1]

    def _run_sequence(self, x: torch.Tensor, state: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """Return the states after each step, (batch, time, state_size).

        Subclasses may precompute input terms or run a kernel.
        """
        weights = self._weights()
        states = []
        for index in range(x.shape[1]):
            state = self._advance(x[:, index], state, time[:, index : index + 1], weights)
            states.append(state)
        return torch.stack(states, dim=1)

    def _output(self, state: torch.Tensor) -> torch.Tensor:
        """Select the motor neurons, the last ``output_size`` of the ``units`` neuron states."""
        return state.narrow(-1, self.units - self.output_size, self.output_size)

    # -- introspection ------------------------------------------------------------------

    def count_parameters(self) -> ParameterCount:
        """Count parameters, leaving out weight entries that the wiring masks out."""
        total = 0
        effective = 0
        for name, parameter in self.named_parameters():
            total += parameter.numel()
            mask_name = self._live_masks.get(name)
            if mask_name is None:
                effective += parameter.numel()
            else:
                effective += int(torch.count_nonzero(getattr(self, mask_name)))
        return ParameterCount(
            total, effective, self.wiring.synapse_count, self.wiring.sensory_synapse_count
        )

    def synapse_strengths(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the learned strength of each synapse, for plots.

        Returns:
            ``(sensory, neuron)`` with shapes (input_size, units) and (units, units),
            indexed ``[source, destination]`` like the wiring. Entries without a synapse
            are zero.
        """
        raise NotImplementedError

    def synapse_polarities(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the learned sign of each synapse, for plots.

        Returns:
            ``(sensory, neuron)`` like :meth:`synapse_strengths`, with +1 for an
            excitatory synapse, -1 for an inhibitory one and 0 where there is none.
        """
        raise NotImplementedError
