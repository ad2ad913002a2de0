"""Liquid time-constant (LTC) cell on a wiring, with three ODE solvers.

The model is that of Hasani et al., "Liquid time-constant networks", AAAI 2021. Neuron
``i`` has potential ``v_i`` and obeys

    cm_i dv_i/dt = gleak_i (vleak_i - v_i) + sum_j w_ji s_ji(v_j) (erev_ji - v_i)

with synaptic activations ``s_ji(v) = sigmoid(sigma_ji (v - mu_ji))`` over the wiring's
synapses (sensory synapses use the mapped inputs in place of ``v_j``). One call to
``step`` splits the elapsed time into equal substeps of length ``h`` and applies the
solver to each:

* ``semi_implicit`` (default): the fused semi-implicit Euler step of Hasani et al.,

      v <- (cm/h * v + gleak * vleak + sum_j w_ji s_ji erev_ji)
           / (cm/h + gleak + sum_j w_ji s_ji)

  The conductances ``w``, ``gleak`` and ``cm`` are ``softplus`` of raw parameters, so
  each update is a convex combination of ``v``, ``vleak`` and the reversal potentials.
  The state therefore stays within the range of those values for any ``dt``.
* ``euler``: explicit Euler, ``v <- v + h dv/dt``. Cheapest per substep, but it
  diverges once ``h`` exceeds about ``2 cm / (gleak + sum_j w_ji s_ji)``.
* ``rk4``: the classical fourth-order Runge-Kutta method, four evaluations of
  ``dv/dt`` per substep. The most accurate of the three per substep, and also only
  stable for small ``h``.

Substeps. By default every step takes ``ode_unfolds`` substeps. With ``max_substep_s``
set, each batch entry takes ``ceil(dt / max_substep_s)`` substeps instead, at least 1
and at most ``max_unfolds``, so a long gap between frames is integrated as finely as a
short one.

Polarity. With ``enforce_polarity`` the reversal potential of each synapse is fixed to
its polarity (+1 excitatory, -1 inhibitory). Otherwise the reversal potentials are
learned, starting from the polarity. Masked-out synapses contribute nothing in either
case. Unlike the CfC cell, all synapses use the current substep's potentials, so signals
cross one layer per substep.
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
from .cfc import inverse_softplus
from .wiring import Wiring

logger = logging.getLogger(__name__)

SOLVERS = ("semi_implicit", "euler", "rk4")
# Solver numbers of the compiled kernels, see kernels.py.
_KERNEL_SOLVERS = {"semi_implicit": 0, "euler": 1, "rk4": 2}

# Smallest cell time per step. A step with dt == 0 then leaves the state (almost)
# unchanged instead of dividing by zero.
_MIN_TIME = 1e-6


class LTCWeights(NamedTuple):
    """Positive, masked LTC parameters for one sequence."""

    sensory_weight: torch.Tensor  # (input_size, units) conductances, 0 where masked
    sensory_erev: torch.Tensor  # (input_size, units)
    weight: torch.Tensor  # (units, units) conductances, 0 where masked
    erev: torch.Tensor  # (units, units)
    gleak: torch.Tensor  # (units,)
    cm: torch.Tensor  # (units,)


class LTCPlan(NamedTuple):
    """LTC parameters as numpy arrays for the kernels, synapses as sparse entry lists."""

    input_weight: np.ndarray  # (input_size,)
    input_bias: np.ndarray  # (input_size,)
    output_weight: np.ndarray  # (output_size,)
    output_bias: np.ndarray  # (output_size,)
    sensory_source: np.ndarray  # (sensory synapses,) input index
    sensory_destination: np.ndarray  # (sensory synapses,) neuron index
    sensory_weight: np.ndarray  # (sensory synapses,) conductance
    sensory_mu: np.ndarray
    sensory_sigma: np.ndarray
    sensory_erev: np.ndarray
    source: np.ndarray  # (synapses,) neuron index
    destination: np.ndarray  # (synapses,) neuron index
    weight: np.ndarray  # (synapses,) conductance
    mu: np.ndarray
    sigma: np.ndarray
    erev: np.ndarray
    gleak: np.ndarray  # (units,)
    vleak: np.ndarray  # (units,)
    cm: np.ndarray  # (units,)


def _uniform(shape: tuple[int, ...], low: float, high: float) -> torch.Tensor:
    return torch.empty(shape).uniform_(low, high)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} is invalid: use an int >= 1")
    return value


class LTCCell(WiredCell):
    """Wired LTC cell with streaming ``step`` and sequence ``forward``.

    Args:
        wiring: Synapse wiring. The last ``wiring.output_size`` neurons are the outputs.
        input_size: Number of input features, or None if the wiring is already built.
        ode_unfolds: Solver substeps per call of ``step``, at least 1, used when
            ``max_substep_s`` is None.
        solver: ``"semi_implicit"``, ``"euler"`` or ``"rk4"`` (see the module docstring).
        max_substep_s: Maximum substep in seconds. When set, the number of substeps of
            each step is ``ceil(dt / max_substep_s)`` within [1, ``max_unfolds``].
        max_unfolds: Cap on the substeps per step when ``max_substep_s`` is set. An
            exported model always runs this many substeps (the surplus ones change
            nothing), so keep it near the largest count that real frame gaps need.
        enforce_polarity: Fix reversal potentials to the synapse polarity.
        epsilon: Added to the semi-implicit solver's denominator, which is positive by
            construction.
        time_scale_s: Seconds that make one unit of cell time.
        mixed_memory: Add an LSTM gate ahead of the cell (see :class:`WiredCell`).
    """

    def __init__(
        self,
        wiring: Wiring,
        input_size: int | None = None,
        *,
        ode_unfolds: int = 6,
        solver: str = "semi_implicit",
        max_substep_s: float | None = None,
        max_unfolds: int = 32,
        enforce_polarity: bool = True,
        epsilon: float = 1e-8,
        time_scale_s: float = DEFAULT_TIME_SCALE_S,
        mixed_memory: bool = False,
    ) -> None:
        super().__init__(wiring, input_size, time_scale_s, mixed_memory)
        self.ode_unfolds = _check_count("ode_unfolds", ode_unfolds)
        if solver not in SOLVERS:
            raise ValueError(f"solver={solver!r} is invalid. Valid solvers: {SOLVERS}")
        self.solver = solver
        if max_substep_s is not None and not (math.isfinite(max_substep_s) and max_substep_s > 0.0):
            raise ValueError(
                f"max_substep_s={max_substep_s!r} is invalid: use a positive number of seconds, "
                "or None for a fixed ode_unfolds"
            )
        self.max_substep_s = None if max_substep_s is None else float(max_substep_s)
        self.max_unfolds = _check_count("max_unfolds", max_unfolds)
        self.enforce_polarity = bool(enforce_polarity)
        self.epsilon = float(epsilon)
        inputs, units, outputs = self.input_size, self.units, self.output_size

        sensory_polarity = torch.as_tensor(wiring.sensory_adjacency, dtype=torch.float32)
        polarity = torch.as_tensor(wiring.adjacency, dtype=torch.float32)
        self.register_buffer("sensory_mask", (sensory_polarity != 0).float(), persistent=False)
        self.register_buffer("mask", (polarity != 0).float(), persistent=False)

        # Affine input and output mappings, one weight and bias per feature.
        self.input_weight = nn.Parameter(torch.ones(inputs))
        self.input_bias = nn.Parameter(torch.zeros(inputs))
        self.output_weight = nn.Parameter(torch.ones(outputs))
        self.output_bias = nn.Parameter(torch.zeros(outputs))

        self.sensory_weight = nn.Parameter(inverse_softplus(_uniform((inputs, units), 0.01, 1.0)))
        self.sensory_mu = nn.Parameter(_uniform((inputs, units), 0.3, 0.8))
        self.sensory_sigma = nn.Parameter(_uniform((inputs, units), 3.0, 8.0))
        self.weight = nn.Parameter(inverse_softplus(_uniform((units, units), 0.01, 1.0)))
        self.mu = nn.Parameter(_uniform((units, units), 0.3, 0.8))
        self.sigma = nn.Parameter(_uniform((units, units), 3.0, 8.0))
        self.gleak = nn.Parameter(inverse_softplus(_uniform((units,), 0.001, 1.0)))
        self.vleak = nn.Parameter(_uniform((units,), -0.2, 0.2))
        self.cm = nn.Parameter(inverse_softplus(_uniform((units,), 0.4, 0.6)))
        if self.enforce_polarity:
            self.register_buffer("sensory_erev", sensory_polarity, persistent=False)
            self.register_buffer("erev", polarity, persistent=False)
        else:
            self.sensory_erev = nn.Parameter(sensory_polarity.clone())
            self.erev = nn.Parameter(polarity.clone())

        sensory_names = ["sensory_weight", "sensory_mu", "sensory_sigma"]
        neuron_names = ["weight", "mu", "sigma"]
        if not self.enforce_polarity:
            sensory_names.append("sensory_erev")
            neuron_names.append("erev")
        self._live_masks = {
            **{name: "sensory_mask" for name in sensory_names},
            **{name: "mask" for name in neuron_names},
        }
        # Synapses as (source, destination) index arrays for the kernels.
        self._sensory_entries = np.nonzero(wiring.sensory_adjacency)
        self._neuron_entries = np.nonzero(wiring.adjacency)
        # The same synapses as indices into the flattened (source, destination) matrices.
        self._sensory_index = torch.from_numpy(np.ravel_multi_index(self._sensory_entries, (inputs, units)))
        self._neuron_index = torch.from_numpy(np.ravel_multi_index(self._neuron_entries, (units, units)))

    def _compute_weights(self) -> LTCWeights:
        return LTCWeights(
            sensory_weight=F.softplus(self.sensory_weight) * self.sensory_mask,
            sensory_erev=self.sensory_erev,
            weight=F.softplus(self.weight) * self.mask,
            erev=self.erev,
            gleak=F.softplus(self.gleak),
            cm=F.softplus(self.cm),
        )

    def _step(
        self,
        x: torch.Tensor,
        state: torch.Tensor,
        time: torch.Tensor,
        weights: LTCWeights,
        static_unfolds: bool = False,
    ) -> torch.Tensor:
        """Integrate from ``state`` over cell time ``time`` (batch, 1).

        With ``static_unfolds`` the loop always runs ``max_unfolds`` substeps when
        ``max_substep_s`` is set, so that the graph does not depend on ``dt`` (export).
        """
        mapped = x * self.input_weight + self.input_bias  # (batch, inputs)
        # Sensory activations do not depend on v, so they are computed once per step.
        sensory_gate = torch.sigmoid(self.sensory_sigma * (mapped.unsqueeze(2) - self.sensory_mu))
        sensory_activation = weights.sensory_weight * sensory_gate  # (batch, inputs, units)
        sensory_numerator = (sensory_activation * weights.sensory_erev).sum(dim=1)  # (batch, units)
        sensory_denominator = sensory_activation.sum(dim=1)  # (batch, units)

        elapsed = time.clamp_min(_MIN_TIME)  # (batch, 1)
        if self.max_substep_s is None:
            counts = None
            iterations = self.ode_unfolds
            substep = elapsed / self.ode_unfolds
        else:
            # float64, so that the count matches the kernels' exactly.
            limit = self.max_substep_s / self.time_scale_s
            counts = torch.ceil(elapsed.double() / limit).clamp(1, self.max_unfolds).to(elapsed.dtype)
            iterations = self.max_unfolds if static_unfolds else int(counts.max())
            substep = elapsed / counts  # (batch, 1)

        if self.solver == "semi_implicit":
            # Terms that stay fixed over the substeps of this step.
            cm_per_substep = weights.cm / substep  # (units,) / (batch, 1) -> (batch, units)
            base_numerator = sensory_numerator + weights.gleak * self.vleak
            base_denominator = cm_per_substep + weights.gleak + sensory_denominator + self.epsilon

        potential = state
        for index in range(iterations):
            if self.solver == "semi_implicit":
                synaptic_numerator, synaptic_denominator = self._synaptic_terms(potential, weights)
                numerator = cm_per_substep * potential + base_numerator + synaptic_numerator
                updated = numerator / (base_denominator + synaptic_denominator)
            elif self.solver == "euler":
                slope = self._derivative(potential, weights, sensory_numerator, sensory_denominator)
                updated = potential + substep * slope
            else:
                updated = self._rk4_update(potential, substep, weights, sensory_numerator, sensory_denominator)
            # Entries that need fewer substeps keep their state.
            potential = updated if counts is None else torch.where(counts > index, updated, potential)
        return potential

    def _synaptic_terms(self, potential: torch.Tensor, weights: LTCWeights) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``sum_j w s erev`` and ``sum_j w s`` per neuron, each (batch, units)."""
        # (batch, source, 1) against (source, destination) parameters.
        gate = torch.sigmoid(self.sigma * (potential.unsqueeze(2) - self.mu))
        activation = weights.weight * gate  # (batch, source, destination)
        return (activation * weights.erev).sum(dim=1), activation.sum(dim=1)

    def _derivative(
        self,
        potential: torch.Tensor,
        weights: LTCWeights,
        sensory_numerator: torch.Tensor,
        sensory_denominator: torch.Tensor,
    ) -> torch.Tensor:
        """Return dv/d(cell time), (batch, units)."""
        synaptic_numerator, synaptic_denominator = self._synaptic_terms(potential, weights)
        current = weights.gleak * (self.vleak - potential) + sensory_numerator + synaptic_numerator
        current = current - (sensory_denominator + synaptic_denominator) * potential
        return current / weights.cm

    def _rk4_update(
        self,
        potential: torch.Tensor,
        substep: torch.Tensor,
        weights: LTCWeights,
        sensory_numerator: torch.Tensor,
        sensory_denominator: torch.Tensor,
    ) -> torch.Tensor:
        terms = (weights, sensory_numerator, sensory_denominator)
        slope1 = self._derivative(potential, *terms)
        slope2 = self._derivative(potential + 0.5 * substep * slope1, *terms)
        slope3 = self._derivative(potential + 0.5 * substep * slope2, *terms)
        slope4 = self._derivative(potential + substep * slope3, *terms)
        return potential + substep / 6.0 * (slope1 + 2.0 * slope2 + 2.0 * slope3 + slope4)

    def _run_sequence(self, x: torch.Tensor, state: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        # The training kernels cover the semi-implicit solver and no gradient for dt.
        if self.solver == "semi_implicit" and not time.requires_grad and self._use_kernels(x):
            return self._kernel_training_sequence(x, state, time)
        return super()._run_sequence(x, state, time)

    # -- compiled kernels ---------------------------------------------------------------

    def _kernel_supported(self) -> bool:
        return True

    def _kernel_structure(self) -> fast.LTCStructure:
        sensory_source, sensory_destination = self._sensory_entries
        source, destination = self._neuron_entries
        return fast.LTCStructure(
            sensory_source=np.ascontiguousarray(sensory_source, dtype=np.int64),
            sensory_destination=np.ascontiguousarray(sensory_destination, dtype=np.int64),
            source=np.ascontiguousarray(source, dtype=np.int64),
            destination=np.ascontiguousarray(destination, dtype=np.int64),
            unfolds=self.ode_unfolds,
            max_substep=0.0 if self.max_substep_s is None else self.max_substep_s / self.time_scale_s,
            max_unfolds=self.max_unfolds,
            epsilon=self.epsilon,
            min_time=_MIN_TIME,
        )

    def _kernel_training_sequence(self, x: torch.Tensor, state: torch.Tensor, time: torch.Tensor) -> torch.Tensor:
        """Run the sequence through :class:`~liquid_driver.model.fast.LTCSequence`."""
        weights = self._compute_weights()
        mapped = x * self.input_weight + self.input_bias  # (batch, time, inputs)

        def sensory(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.reshape(-1)[self._sensory_index]  # (inputs, units) -> (sensory synapses,)

        def neuron(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.reshape(-1)[self._neuron_index]  # (units, units) -> (synapses,)

        return fast.LTCSequence.apply(
            mapped,
            sensory(weights.sensory_weight),
            sensory(self.sensory_mu),
            sensory(self.sensory_sigma),
            sensory(weights.sensory_erev),
            neuron(weights.weight),
            neuron(self.mu),
            neuron(self.sigma),
            neuron(weights.erev),
            weights.gleak,
            self.vleak,
            weights.cm,
            state,
            time.detach(),
            self._kernel_structure(),
        )

    def _build_plan(self) -> LTCPlan:
        weights = self._compute_weights()
        sensory_source, sensory_destination = self._sensory_entries
        source, destination = self._neuron_entries

        def sensory(tensor: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(fast.as_array(tensor)[sensory_source, sensory_destination])

        def neuron(tensor: torch.Tensor) -> np.ndarray:
            return np.ascontiguousarray(fast.as_array(tensor)[source, destination])

        return LTCPlan(
            input_weight=fast.as_array(self.input_weight),
            input_bias=fast.as_array(self.input_bias),
            output_weight=fast.as_array(self.output_weight),
            output_bias=fast.as_array(self.output_bias),
            sensory_source=np.ascontiguousarray(sensory_source, dtype=np.int64),
            sensory_destination=np.ascontiguousarray(sensory_destination, dtype=np.int64),
            sensory_weight=sensory(weights.sensory_weight),
            sensory_mu=sensory(self.sensory_mu),
            sensory_sigma=sensory(self.sensory_sigma),
            sensory_erev=sensory(weights.sensory_erev),
            source=np.ascontiguousarray(source, dtype=np.int64),
            destination=np.ascontiguousarray(destination, dtype=np.int64),
            weight=neuron(weights.weight),
            mu=neuron(self.mu),
            sigma=neuron(self.sigma),
            erev=neuron(weights.erev),
            gleak=fast.as_array(weights.gleak),
            vleak=fast.as_array(self.vleak),
            cm=fast.as_array(weights.cm),
        )

    def _kernel_run(
        self, x: np.ndarray, state: np.ndarray, time: np.ndarray, plan: LTCPlan
    ) -> tuple[np.ndarray, np.ndarray]:
        kernels = fast.load_kernels()
        assert kernels is not None
        states = np.empty((x.shape[0], x.shape[1], self.units), np.float32)
        outputs = np.empty((x.shape[0], x.shape[1], self.output_size), np.float32)
        max_substep = 0.0 if self.max_substep_s is None else self.max_substep_s / self.time_scale_s
        kernels.ltc_forward(
            x, state, time, plan.input_weight, plan.input_bias,
            plan.sensory_source, plan.sensory_destination, plan.sensory_weight, plan.sensory_mu,
            plan.sensory_sigma, plan.sensory_erev,
            plan.source, plan.destination, plan.weight, plan.mu, plan.sigma, plan.erev,
            plan.gleak, plan.vleak, plan.cm, _KERNEL_SOLVERS[self.solver], self.ode_unfolds,
            max_substep, self.max_unfolds, self.epsilon, _MIN_TIME,
            plan.output_weight, plan.output_bias, states, outputs,
        )
        return states, outputs

    def _output(self, state: torch.Tensor) -> torch.Tensor:
        """Map the motor potentials affinely: ``v * output_weight + output_bias``."""
        motor = state[..., self.units - self.output_size : self.units]
        return motor * self.output_weight + self.output_bias

    @torch.no_grad()
    @torch.no_grad()
    def synapse_polarities(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the sign of each synapse's reversal potential, 0 where there is none, indexed [source, destination].

        The reversal potentials are learned unless ``enforce_polarity`` fixes them to the wiring's polarity.
        """
        weights = self._compute_weights()
        sensory = torch.sign(weights.sensory_erev) * (weights.sensory_weight != 0)
        neuron = torch.sign(weights.erev) * (weights.weight != 0)
        return sensory.contiguous(), neuron.contiguous()

    def synapse_strengths(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the maximum conductance of each synapse, indexed [source, destination]."""
        weights = self._compute_weights()
        return weights.sensory_weight.clone(), weights.weight.clone()
