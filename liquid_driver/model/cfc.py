"""Closed-form continuous-time (CfC) cell whose synapses follow a wiring.

The cell implements the CfC of Hasani et al., "Closed-form continuous-time neural
networks", Nature Machine Intelligence 4, 2022. Each neuron has linear heads over its
synaptic inputs. With ``tau = dt / time_scale_s`` (cell time, shape (batch, 1)):

* ``default``: ``gate = sigmoid(time_a * tau + time_b)`` and
  ``h = (1 - gate) * tanh(ff1) + gate * tanh(ff2)``;
* ``no_gate``: ``h = tanh(ff1) + gate * tanh(ff2)``;
* ``pure``: ``h = amplitude - amplitude * exp(-tau * (|tau_weight| + |ff1|)) * ff1``.

Wiring. Every head (``ff1``, ``ff2``, ``time_a``, ``time_b``) is masked by the wiring:
the sensory adjacency masks the input weights and the neuron adjacency masks the
recurrent weights, command-to-command synapses included. With ``enforce_polarity`` the
synapse weights of the output heads ``ff1`` and ``ff2`` are
``polarity * softplus(raw)``, so an excitatory synapse can only raise its target and an
inhibitory one only lower it. The time-gate heads use ``raw`` on the same mask without a
sign, because a synapse changes a neuron's time constant whatever its polarity.

Self-connections. With ``self_connections`` (the default) each neuron also reads its own
previous state through an unsigned weight, even where the wiring has no self-synapse.
It plays the role of the membrane memory of an LTC neuron. Without it, inter and motor
neurons of an NCP have no recurrent input and forget everything between steps.

Layers. Neurons are updated layer by layer in the wiring's order (inter, command, motor
for an NCP). A synapse from an earlier layer carries the source's value from this step,
and a synapse within a layer or towards an earlier layer carries the previous step's
value. An image therefore reaches the motor neuron in the same step. A wiring with one
layer (fully connected, random) is an ordinary recurrent cell.

Backbone. With ``backbone_layers > 0`` the heads read a dense MLP over
``[input, state]`` instead of the raw synaptic inputs. A dense backbone mixes every input,
so it is only allowed on a :class:`FullyConnected` wiring with ``enforce_polarity=False``.

Differences from ncps 1.0.1. Its wired CfC feeds each layer only the previous layer's
output plus the layer's own previous states, so it never uses the recurrent command
synapses of an NCP. Its masks cover ``ff1`` and ``ff2`` but not the time heads, and it
ignores synapse polarity. Its ``lecun_tanh`` uses 0.666 where this module uses 2/3.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import fast
from .base import DEFAULT_TIME_SCALE_S, WiredCell
from .wiring import FullyConnected, Wiring

logger = logging.getLogger(__name__)

MODES = ("default", "no_gate", "pure")
# Mode numbers of the compiled kernels, see kernels.py.
_KERNEL_MODES = {"default": 0, "no_gate": 1, "pure": 2}

# Head order along the heads axis. Only ff1 exists in "pure" mode.
FF1, FF2, TIME_A, TIME_B = 0, 1, 2, 3
_OUTPUT_HEADS = (FF1, FF2)


class LeCunTanh(nn.Module):
    """Scaled tanh ``1.7159 * tanh(2/3 * x)`` from LeCun et al., "Efficient BackProp", 1998."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.7159 * torch.tanh(x * (2.0 / 3.0))


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "lecun_tanh": LeCunTanh,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
}


class CfCWeights(NamedTuple):
    """Effective weights of a wired CfC, rows grouped by layer, then head, then neuron."""

    input_weight: torch.Tensor  # (heads * units, input_size)
    recurrent_weight: torch.Tensor  # (heads * units, units), previous-step synapses only
    step_weight_t: torch.Tensor  # (input_size + units, heads * units), both, transposed
    bias: torch.Tensor  # (heads * units,)
    # Per layer: transposed weights (sources, heads * layer size) of the same-step
    # synapses from earlier layers, or None where the layer has none. The sources are
    # the neurons of layers forward_sources[layer] onwards, up to the layer itself.
    forward_weights_t: tuple[torch.Tensor | None, ...]


def effective_weight(raw: torch.Tensor, sign: torch.Tensor, free: torch.Tensor) -> torch.Tensor:
    """Return ``raw * free + sign * softplus(raw)``: unsigned, signed or masked-out entries."""
    return raw * free + sign * F.softplus(raw)


def inverse_softplus(value: torch.Tensor) -> torch.Tensor:
    """Return ``raw`` such that ``softplus(raw) == value`` for ``value > 0``."""
    return value + torch.log(-torch.expm1(-value))


class CfCCell(WiredCell):
    """Wired CfC cell with streaming ``step`` and sequence ``forward``.

    Args:
        wiring: Synapse wiring. The last ``wiring.output_size`` neurons are the outputs.
        input_size: Number of input features, or None if the wiring is already built.
        mode: ``"default"``, ``"no_gate"`` or ``"pure"`` (see the module docstring).
        enforce_polarity: Make output-head synapse weights ``polarity * softplus(raw)``.
            When False, every synapse weight is ``raw`` on the wiring's mask.
        self_connections: Let each neuron read its own previous state (unsigned weight).
        backbone_units: Width of each backbone layer (used when ``backbone_layers > 0``).
        backbone_layers: Number of dense backbone layers. 0 keeps the wiring exact.
        backbone_activation: One of :data:`ACTIVATIONS`.
        backbone_dropout: Dropout probability after each backbone layer but the first.
        time_scale_s: Seconds that make one unit of cell time.
        mixed_memory: Add an LSTM gate ahead of the cell (see :class:`WiredCell`).
    """

    def __init__(
        self,
        wiring: Wiring,
        input_size: int | None = None,
        mode: str = "default",
        *,
        enforce_polarity: bool = True,
        self_connections: bool = True,
        backbone_units: int = 64,
        backbone_layers: int = 0,
        backbone_activation: str = "lecun_tanh",
        backbone_dropout: float = 0.0,
        time_scale_s: float = DEFAULT_TIME_SCALE_S,
        mixed_memory: bool = False,
    ) -> None:
        super().__init__(wiring, input_size, time_scale_s, mixed_memory)
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is invalid. Valid modes: {MODES}")
        self.mode = mode
        self.heads = 1 if mode == "pure" else 4
        self.enforce_polarity = bool(enforce_polarity)
        self.self_connections = bool(self_connections)
        self._layer_ranges = tuple((layer.start, layer.stop) for layer in wiring.layers)

        self.backbone: nn.Sequential | None = None
        if backbone_layers < 0:
            raise ValueError(f"backbone_layers={backbone_layers} is invalid: use 0 or more")
        if backbone_layers > 0:
            self._build_backbone(
                backbone_units, backbone_layers, backbone_activation, backbone_dropout
            )
        else:
            self._build_wired()

        if mode == "pure":
            self.tau_weight = nn.Parameter(torch.zeros(self.units))
            self.amplitude = nn.Parameter(torch.ones(self.units))

    # -- construction -------------------------------------------------------------------

    def _build_backbone(self, units: int, layers: int, activation: str, dropout: float) -> None:
        if not isinstance(self.wiring, FullyConnected) or self.enforce_polarity:
            raise ValueError(
                f"backbone_layers={layers} needs a FullyConnected wiring with "
                f"enforce_polarity=False, got {type(self.wiring).__name__} with "
                f"enforce_polarity={self.enforce_polarity}: a dense backbone mixes all inputs "
                "and would bypass the synapse masks. Set backbone_layers=0 to keep the wiring."
            )
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"backbone_activation={activation!r} is invalid. Valid: {sorted(ACTIVATIONS)}"
            )
        if units < 1:
            raise ValueError(f"backbone_units={units} is invalid: use 1 or more")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"backbone_dropout={dropout} is invalid: use a value in [0, 1)")
        modules: list[nn.Module] = []
        width = self.input_size + self.units
        for index in range(layers):
            modules += [nn.Linear(width, units), ACTIVATIONS[activation]()]
            if index > 0 and dropout > 0.0:
                modules.append(nn.Dropout(dropout))
            width = units
        self.backbone = nn.Sequential(*modules)
        self.head = nn.Linear(units, self.heads * self.units)
        self._head_sizes = [[self.units] * self.heads]

    def _build_wired(self) -> None:
        heads, units, inputs = self.heads, self.units, self.input_size
        sensory_polarity = torch.as_tensor(self.wiring.sensory_adjacency, dtype=torch.float32).T
        neuron_polarity = torch.as_tensor(self.wiring.adjacency, dtype=torch.float32).T
        # Both polarity matrices are now indexed [destination, source], like weights.

        sensory_sign, sensory_free = self._head_masks(sensory_polarity)
        recurrent_sign, recurrent_free = self._head_masks(neuron_polarity)
        if self.self_connections:
            diagonal = torch.eye(units) * (neuron_polarity.diagonal() == 0).float()
            recurrent_free = torch.maximum(recurrent_free, diagonal.expand(heads, units, units))

        self.register_buffer("sensory_sign", sensory_sign, persistent=False)
        self.register_buffer("sensory_free", sensory_free, persistent=False)
        self.register_buffer("recurrent_sign", recurrent_sign, persistent=False)
        self.register_buffer("recurrent_free", recurrent_free, persistent=False)
        self.register_buffer("sensory_live", (sensory_sign != 0) | (sensory_free != 0), persistent=False)
        self.register_buffer(
            "recurrent_live", (recurrent_sign != 0) | (recurrent_free != 0), persistent=False
        )
        self._live_masks = {"sensory_weight": "sensory_live", "recurrent_weight": "recurrent_live"}

        # delayed[destination, source] = 1 where the source is in the destination's layer
        # or a later one, so the synapse carries the previous step's value.
        delayed = torch.zeros(units, units)
        for start, stop in self._layer_ranges:
            delayed[start:stop, start:] = 1.0
        self.register_buffer("delayed", delayed, persistent=False)

        # Rows of the fused weight matrix: layer blocks, each ordered head-major.
        order = [
            head * units + neuron
            for start, stop in self._layer_ranges
            for head in range(heads)
            for neuron in range(start, stop)
        ]
        self.register_buffer("row_order", torch.tensor(order, dtype=torch.long), persistent=False)
        # For each layer, the first earlier layer that sends it same-step synapses (None if
        # no earlier layer does). For an NCP this is the previous layer, so the update reads
        # that layer's new state directly instead of concatenating all earlier layers.
        live = self.recurrent_live
        forward_sources: list[int | None] = []
        for index, (start, stop) in enumerate(self._layer_ranges):
            senders = [
                earlier
                for earlier, (source_start, source_stop) in enumerate(self._layer_ranges[:index])
                if live[:, start:stop, source_start:source_stop].any()
            ]
            forward_sources.append(senders[0] if senders else None)
        self._forward_sources = tuple(forward_sources)
        # Split sizes for Tensor.split_with_sizes, which costs about half of Tensor.split
        # per call in torch 2.13. Such per-op overhead dominates the streaming step.
        self._block_sizes = [self.heads * (stop - start) for start, stop in self._layer_ranges]
        self._head_sizes = [[stop - start] * self.heads for start, stop in self._layer_ranges]

        self.sensory_weight = nn.Parameter(torch.empty(heads, units, inputs))
        self.recurrent_weight = nn.Parameter(torch.empty(heads, units, units))
        self.bias = nn.Parameter(torch.zeros(heads, units))
        self.reset_synapse_weights()
        self._structure = self._kernel_structure()
        self._delayed_index = torch.from_numpy(self._structure.delayed_flat)
        self._forward_index = torch.from_numpy(self._structure.forward_flat)

    def _kernel_structure(self) -> fast.CfCStructure:
        """List the live recurrent weights as sparse entries for the kernels."""
        units = self.units
        layer_of = np.empty(units, dtype=np.int64)
        for index, (start, stop) in enumerate(self._layer_ranges):
            layer_of[start:stop] = index
        heads, destinations, sources = np.nonzero(self.recurrent_live.numpy())
        rows = heads * units + destinations
        flat = (heads * units + destinations) * units + sources
        is_forward = layer_of[sources] < layer_of[destinations]
        # Forward entries grouped by destination layer, in layer order.
        order = np.argsort(layer_of[destinations[is_forward]], kind="stable")
        forward_layers = layer_of[destinations[is_forward]][order]
        forward_start = np.searchsorted(forward_layers, np.arange(len(self._layer_ranges) + 1))
        layer_bounds = [start for start, _ in self._layer_ranges] + [units]
        return fast.CfCStructure(
            mode=_KERNEL_MODES[self.mode],
            units=units,
            heads=self.heads,
            layer_bounds=np.asarray(layer_bounds, dtype=np.int64),
            delayed_source=np.ascontiguousarray(sources[~is_forward], dtype=np.int64),
            delayed_row=np.ascontiguousarray(rows[~is_forward], dtype=np.int64),
            delayed_flat=np.ascontiguousarray(flat[~is_forward], dtype=np.int64),
            forward_source=np.ascontiguousarray(sources[is_forward][order], dtype=np.int64),
            forward_row=np.ascontiguousarray(rows[is_forward][order], dtype=np.int64),
            forward_flat=np.ascontiguousarray(flat[is_forward][order], dtype=np.int64),
            forward_start=np.ascontiguousarray(forward_start, dtype=np.int64),
        )

    def _head_masks(self, polarity: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (sign, free) masks of shape (heads, destinations, sources)."""
        present = (polarity != 0).float()
        sign = torch.zeros(self.heads, *polarity.shape)
        free = present.expand(self.heads, *polarity.shape).clone()
        if self.enforce_polarity:
            for head in _OUTPUT_HEADS[: self.heads]:
                sign[head] = polarity
                free[head] = 0.0
        return sign, free

    @torch.no_grad()
    def reset_synapse_weights(self) -> None:
        """Draw synapse weights with standard deviation about ``1 / sqrt(fan_in)``.

        Unsigned weights are uniform in ``±sqrt(3 / fan_in)``. Signed weights get a
        magnitude uniform in ``[0.5, 1.5] / sqrt(fan_in)``, so both kinds have a second
        moment near ``1 / fan_in``.
        """
        live = torch.cat([self.sensory_live, self.recurrent_live], dim=2)
        sign = torch.cat([self.sensory_sign, self.recurrent_sign], dim=2)
        fan_in = live.sum(dim=2, keepdim=True).clamp(min=1).float()  # (heads, units, 1)
        scale = fan_in.rsqrt()
        uniform = torch.rand(live.shape)
        unsigned = (2.0 * uniform - 1.0) * math.sqrt(3.0) * scale
        signed = inverse_softplus((0.5 + uniform) * scale)
        raw = torch.where(sign != 0, signed, unsigned) * live
        self.sensory_weight.copy_(raw[..., : self.input_size])
        self.recurrent_weight.copy_(raw[..., self.input_size :])
        self.bias.zero_()

    # -- weights ------------------------------------------------------------------------

    def effective_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the effective (sensory, recurrent) weights, shapes (heads, units, inputs|units).

        Entries are indexed ``[head, destination, source]``, and masked entries are exactly 0.
        """
        if self.backbone is not None:
            raise RuntimeError("a CfC with a dense backbone has no per-synapse weights")
        sensory = effective_weight(self.sensory_weight, self.sensory_sign, self.sensory_free)
        recurrent = effective_weight(self.recurrent_weight, self.recurrent_sign, self.recurrent_free)
        return sensory, recurrent

    def _compute_weights(self) -> CfCWeights | None:
        if self.backbone is not None:
            return None
        heads, units = self.heads, self.units
        sensory, recurrent = self.effective_weights()
        order = self.row_order
        input_weight = sensory.reshape(heads * units, self.input_size).index_select(0, order)
        delayed = (recurrent * self.delayed).reshape(heads * units, units).index_select(0, order)
        forward_weights_t = []
        for (start, stop), first_sender in zip(self._layer_ranges, self._forward_sources):
            if first_sender is None:
                forward_weights_t.append(None)
                continue
            source_start = self._layer_ranges[first_sender][0]
            block = recurrent[:, start:stop, source_start:start]  # (heads, layer size, sources)
            block = block.reshape(heads * (stop - start), start - source_start)
            forward_weights_t.append(block.t().contiguous())  # (sources, heads * layer size)
        return CfCWeights(
            input_weight=input_weight,
            recurrent_weight=delayed,
            step_weight_t=torch.cat([input_weight, delayed], dim=1).t().contiguous(),
            bias=self.bias.reshape(heads * units).index_select(0, order),
            forward_weights_t=tuple(forward_weights_t),
        )

    # -- dynamics -----------------------------------------------------------------------

    def _step(
        self,
        x: torch.Tensor,
        state: torch.Tensor,
        time: torch.Tensor,
        weights: CfCWeights | None,
        static_unfolds: bool = False,
    ) -> torch.Tensor:
        if weights is None:
            return self._backbone_step(x, state, time)
        inputs = torch.cat([x, state], dim=1)  # (batch, input_size + units)
        drive = torch.addmm(weights.bias, inputs, weights.step_weight_t)  # (batch, heads * units)
        return self._propagate(drive, time, weights)

    def _run_sequence(self, x: torch.Tensor, state: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        if self.backbone is not None or self.memory is not None:
            return super()._run_sequence(x, state, time)
        if not time.requires_grad and self._use_kernels(x):
            return self._kernel_training_sequence(x, state, time)
        weights = self._weights()
        batch_size, steps, _ = x.shape
        # The input term does not depend on the state: compute it for every step at once.
        flat = x.reshape(batch_size * steps, self.input_size)  # (batch * time, input_size)
        input_drive = F.linear(flat, weights.input_weight, weights.bias)
        input_drive = input_drive.reshape(batch_size, steps, -1)  # (batch, time, heads * units)
        recurrent_t = weights.recurrent_weight.t()
        states = []
        for index in range(steps):
            drive = torch.addmm(input_drive[:, index], state, recurrent_t)
            state = self._propagate(drive, time[:, index : index + 1], weights)
            states.append(state)
        return torch.stack(states, dim=1)

    # -- compiled kernels ---------------------------------------------------------------

    def _kernel_supported(self) -> bool:
        return self.backbone is None

    def _unused_pure_parameters(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mode == "pure":
            return self.tau_weight, self.amplitude
        zeros = like.new_zeros(self.units)
        return zeros, zeros

    def _kernel_training_sequence(self, x: torch.Tensor, state: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """Run the sequence through :class:`~liquid_driver.model.fast.CfCSequence`."""
        batch_size, steps, _ = x.shape
        rows = self.heads * self.units
        sensory, recurrent = self.effective_weights()
        flat = x.reshape(batch_size * steps, self.input_size)  # (batch * time, input_size)
        input_drive = F.linear(flat, sensory.reshape(rows, self.input_size), self.bias.reshape(rows))
        input_drive = input_drive.reshape(batch_size, steps, rows)  # (batch, time, heads * units)
        recurrent_flat = recurrent.reshape(-1)  # (heads * units * units,)
        tau_weight, amplitude = self._unused_pure_parameters(x)
        return fast.CfCSequence.apply(
            input_drive,
            recurrent_flat[self._delayed_index],
            recurrent_flat[self._forward_index],
            state,
            tau_weight,
            amplitude,
            time.detach(),
            self._structure,
        )

    def _build_plan(self) -> fast.CfCPlan:
        rows = self.heads * self.units
        sensory, recurrent = self.effective_weights()
        recurrent_flat = fast.as_array(recurrent).reshape(-1)  # (heads * units * units,)
        tau_weight, amplitude = self._unused_pure_parameters(self.bias)
        return fast.CfCPlan(
            input_weight_t=fast.as_array(sensory.reshape(rows, self.input_size).t()),
            bias=fast.as_array(self.bias.reshape(rows)),
            delayed_weight=np.ascontiguousarray(recurrent_flat[self._structure.delayed_flat]),
            forward_weight=np.ascontiguousarray(recurrent_flat[self._structure.forward_flat]),
            tau=np.abs(fast.as_array(tau_weight)),
            amplitude=fast.as_array(amplitude),
        )

    def _kernel_run(
        self, x: np.ndarray, state: np.ndarray, time: np.ndarray, plan: fast.CfCPlan
    ) -> tuple[np.ndarray, np.ndarray]:
        states = fast.run_cfc(self._structure, plan, x, state, time)
        return states, states[..., self.units - self.output_size :]

    def _propagate(self, drive: torch.Tensor, time: torch.Tensor, weights: CfCWeights) -> torch.Tensor:
        """Update the layers in order from ``drive``, (batch, heads * units) in layer blocks."""
        layer_states: list[torch.Tensor] = []
        blocks = drive.split_with_sizes(self._block_sizes, dim=1)  # (batch, heads * layer size) each
        for block, (start, stop), head_sizes, first_sender, forward_weight_t in zip(
            blocks, self._layer_ranges, self._head_sizes, self._forward_sources, weights.forward_weights_t
        ):
            if forward_weight_t is not None:
                senders = layer_states[first_sender:]
                sources = senders[0] if len(senders) == 1 else torch.cat(senders, dim=1)
                block = torch.addmm(block, sources, forward_weight_t)
            # Views of (batch, layer size) per head, in head order.
            layer_states.append(self._combine(block.split_with_sizes(head_sizes, dim=1), time, start, stop))
        if len(layer_states) == 1:
            return layer_states[0]
        return torch.cat(layer_states, dim=1)

    def _backbone_step(self, x: torch.Tensor, state: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        assert self.backbone is not None
        features = self.backbone(torch.cat([x, state], dim=1))  # (batch, backbone_units)
        heads = self.head(features)  # (batch, heads * units), head-major
        return self._combine(heads.split_with_sizes(self._head_sizes[0], dim=1), time, 0, self.units)

    def _combine(
        self, heads: tuple[torch.Tensor, ...], time: torch.Tensor, start: int, stop: int
    ) -> torch.Tensor:
        """Apply the closed-form solution to per-head values (batch, n) at time (batch, 1)."""
        if self.mode == "pure":
            ff1 = heads[FF1]
            amplitude = self.amplitude[start:stop]
            rate = self.tau_weight[start:stop].abs() + ff1.abs()  # (batch, n), 1 / cell time
            return amplitude - amplitude * torch.exp(-time * rate) * ff1
        ff1, ff2, time_a, time_b = heads
        gate = torch.sigmoid(torch.addcmul(time_b, time_a, time))
        if self.mode == "no_gate":
            return torch.addcmul(torch.tanh(ff1), gate, torch.tanh(ff2))
        return torch.lerp(torch.tanh(ff1), torch.tanh(ff2), gate)

    # -- introspection ------------------------------------------------------------------

    @torch.no_grad()
    def synapse_polarities(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the learned sign of each synapse, +1, -1 or 0 where there is none, indexed [source, destination].

        The sign is that of the synapse's mean weight over the output heads. With
        ``enforce_polarity`` it equals the wiring's polarity.
        """
        if self.backbone is not None:
            raise RuntimeError("a CfC with a dense backbone has no per-synapse weights")
        sensory, recurrent = self.effective_weights()
        output_heads = list(_OUTPUT_HEADS[: self.heads])
        sensory_sign = torch.sign(sensory[output_heads].mean(dim=0).T)  # (inputs, units)
        neuron_sign = torch.sign(recurrent[output_heads].mean(dim=0).T)  # (units, units)
        present = torch.as_tensor(self.wiring.adjacency != 0, device=neuron_sign.device)
        return sensory_sign.contiguous(), (neuron_sign * present).contiguous()

    @torch.no_grad()
    def synapse_strengths(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return mean |weight| of the output heads per synapse, indexed [source, destination]."""
        if self.backbone is not None:
            raise RuntimeError("a CfC with a dense backbone has no per-synapse weights")
        sensory, recurrent = self.effective_weights()
        output_heads = list(_OUTPUT_HEADS[: self.heads])
        sensory_strength = sensory[output_heads].abs().mean(dim=0).T  # (inputs, units)
        neuron_strength = recurrent[output_heads].abs().mean(dim=0).T  # (units, units)
        present = torch.as_tensor(self.wiring.adjacency != 0, device=neuron_strength.device)
        return sensory_strength.contiguous(), (neuron_strength * present).contiguous()
