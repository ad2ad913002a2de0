"""Non-liquid controllers that stand in for the NCP in comparisons: an LSTM and a feedforward MLP.

Both take the same CNN features as the liquid cells and expose the same streaming and
sequence API as :class:`~liquid_driver.model.base.WiredCell` (``initial_state``,
``reset_state``, ``step``, ``forward``, ``export_step``, ``count_parameters``), so the
trainer, the evaluator, the perception node and the exporters run them unchanged.

* :class:`LSTMController` is a discrete-time recurrent baseline. It checks ``dt`` like
  the liquid cells but ignores its value: each frame is one step, whatever the time
  between frames. The state is the hidden vector followed by the memory cell.
* :class:`FeedforwardController` has no state at all. It is the dense part of a
  PilotNet-style network (Bojarski et al., "End to end learning for self-driving cars",
  2016: fully connected layers of 100, 50 and 10 units after the convolutions), so
  every frame is steered on its own. Its state has zero columns.

Neither has a wiring: ``wiring`` is None, and the plots and counts that need synapses
skip them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import ParameterCount, RestingStateMixin, TimeStep, check_input, dt_column, dt_matrix

__all__ = ["FeedforwardController", "LSTMController"]


class _BaselineController(RestingStateMixin, nn.Module):
    """Shared checks and state handling of the baseline controllers."""

    wiring = None  # no synapse wiring to plot or count

    def __init__(self, input_size: int, output_size: int, state_size: int, time_scale_s: float) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("output_size", output_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: use an int >= 1")
        self.input_size = input_size
        self.output_size = output_size
        self.state_size = state_size
        # Kept so that exporters and callers can convert dt the same way for every controller.
        self.time_scale_s = float(time_scale_s)

    def _check_step(self, x: Any, state: Any, dt: TimeStep) -> None:
        check_input("x", x, 2, self.input_size)
        self._check_state(state, x.shape[0])
        dt_column(dt, x.shape[0], x)  # raises on a negative, non-finite or misshapen dt

    def _check_sequence(self, x: Any, dt: TimeStep, state: torch.Tensor | None) -> torch.Tensor:
        check_input("x", x, 3, self.input_size)
        batch_size, steps = x.shape[0], x.shape[1]
        if steps == 0:
            raise ValueError("x has 0 time steps. Pass a sequence of at least one step.")
        dt_matrix(dt, batch_size, steps, x)
        if state is None:
            state = self.initial_state(batch_size, device=x.device, dtype=x.dtype)
        return self._check_state(state, batch_size)

    def count_parameters(self) -> ParameterCount:
        """Count parameters. Every entry is effective, and there are no wired synapses."""
        total = sum(parameter.numel() for parameter in self.parameters())
        return ParameterCount(total, total, 0, 0)


class LSTMController(_BaselineController):
    """An LSTM layer of ``units`` cells with a linear readout to ``output_size`` outputs.

    Args:
        input_size: CNN features per frame.
        units: LSTM hidden size. The state has ``2 * units`` columns: hidden, then cell.
        output_size: Outputs of the readout, of which the policy uses the first.
        time_scale_s: Stored for callers that convert dt; the LSTM ignores dt.
    """

    def __init__(self, input_size: int, units: int, output_size: int = 1, time_scale_s: float = 0.05) -> None:
        if isinstance(units, bool) or not isinstance(units, int) or units < 1:
            raise ValueError(f"units={units!r} is invalid: use an int >= 1")
        super().__init__(input_size, output_size, 2 * units, time_scale_s)
        self.units = units
        self.lstm = nn.LSTM(input_size, units, batch_first=True)
        self.readout = nn.Linear(units, output_size)
        with torch.no_grad():
            # Forget-gate bias of 1, a common start that keeps the memory early in training.
            # PyTorch orders the gates input, forget, cell, output.
            self.lstm.bias_hh_l0[units : 2 * units] += 1.0

    def _split(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, cell = state.split(self.units, dim=1)  # (batch, units) each
        return hidden.unsqueeze(0).contiguous(), cell.unsqueeze(0).contiguous()  # (1, batch, units)

    def _run(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return readouts (batch, time, output_size) and the final (batch, 2 * units) state."""
        hidden_states, (hidden, cell) = self.lstm(x, self._split(state))
        return self.readout(hidden_states), torch.cat([hidden[0], cell[0]], dim=1)

    def step(self, x: torch.Tensor, state: torch.Tensor, dt: TimeStep) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance one frame: ``(output (batch, output_size), new_state)``; ``dt`` is checked but not used."""
        self._check_step(x, state, dt)
        outputs, new_state = self._run(x.unsqueeze(1), state)  # (batch, input) -> (batch, 1, input)
        return outputs[:, 0], new_state

    def forward(
        self, x: torch.Tensor, dt: TimeStep, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run a sequence (batch, time, input_size): ``(outputs (batch, time, output_size), final_state)``."""
        state = self._check_sequence(x, dt, state)
        return self._run(x, state)

    def export_step(self, x: torch.Tensor, state: torch.Tensor, time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance one frame with PyTorch operators only, for export. ``time`` does not change the result."""
        outputs, new_state = self._run(x.unsqueeze(1), state)
        return _keep_time_input(outputs[:, 0], time), new_state


class FeedforwardController(_BaselineController):
    """Fully connected layers with ReLU between them and a linear output, without state.

    Args:
        input_size: CNN features per frame.
        hidden_layers: Widths of the hidden layers, for example (100, 50, 10).
        output_size: Outputs of the last layer, of which the policy uses the first.
        time_scale_s: Stored for callers that convert dt; the network ignores dt.
    """

    def __init__(
        self,
        input_size: int,
        hidden_layers: tuple[int, ...] = (100, 50, 10),
        output_size: int = 1,
        time_scale_s: float = 0.05,
    ) -> None:
        super().__init__(input_size, output_size, 0, time_scale_s)
        widths = tuple(hidden_layers)
        if any(isinstance(width, bool) or not isinstance(width, int) or width < 1 for width in widths):
            raise ValueError(f"hidden_layers={hidden_layers!r} is invalid: use ints >= 1, or () for none")
        layers: list[nn.Module] = []
        previous = input_size
        for width in widths:
            layers += [nn.Linear(previous, width), nn.ReLU()]
            previous = width
        layers.append(nn.Linear(previous, output_size))
        self.layers = nn.Sequential(*layers)
        self.hidden_layers = widths

    def step(self, x: torch.Tensor, state: torch.Tensor, dt: TimeStep) -> tuple[torch.Tensor, torch.Tensor]:
        """Map one frame's features to ``(output (batch, output_size), state)``. The empty state passes through."""
        self._check_step(x, state, dt)
        return self.layers(x), state

    def forward(
        self, x: torch.Tensor, dt: TimeStep, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map each frame of (batch, time, input_size): ``(outputs (batch, time, output_size), state)``."""
        state = self._check_sequence(x, dt, state)
        return self.layers(x), state

    def export_step(self, x: torch.Tensor, state: torch.Tensor, time: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map one frame with PyTorch operators only, for export. The empty state passes through."""
        return _keep_time_input(self.layers(x), time), state


def _keep_time_input(output: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
    """Return ``output`` unchanged, but computed from ``time``.

    The ONNX exporter drops graph inputs that no operator reads, and every exported
    policy must take (image, state, dt), so the baselines add zero times the cell time.
    """
    return output + 0.0 * time
