"""Compiled CfC and LTC loops for CPU inference and CfC training, built with numba.

Eager PyTorch spends a few microseconds of dispatch on every operator, and one step of a
19-neuron NCP needs dozens of them, so at batch 1 the overhead is most of the cost.
These kernels run a whole step (or a whole sequence) in one compiled call over numpy
arrays. They compute the same equations as the PyTorch code in ``cfc.py`` and ``ltc.py``,
which stays the reference: the tests compare the two.

Synapses are passed as sparse entry lists rather than dense masked matrices, because an
NCP uses few of the possible synapses. A CfC entry ``e`` adds
``weight[e] * state[source[e]]`` to ``drive[row[e]]``, where ``row = head * units +
destination``. Entries whose source lies in an earlier layer than the destination
("forward" entries) read the state of the current step, and the others ("delayed"
entries) read the previous step's state, as in :class:`~liquid_driver.model.cfc.CfCCell`.

Arithmetic runs in float64 and results are stored as float32, so the kernels agree with
the float32 PyTorch code to float32 rounding. This module imports numba at import time.
Use :func:`liquid_driver.model.fast.load_kernels` to import it only when numba exists.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

CFC_DEFAULT, CFC_NO_GATE, CFC_PURE = 0, 1, 2
LTC_SEMI_IMPLICIT, LTC_EULER, LTC_RK4 = 0, 1, 2

# Saved activations per neuron for the CfC backward pass: tanh(ff1), tanh(ff2) and the
# time gate, or ff1 and the decay factor in "pure" mode.
CFC_SAVED_VALUES = 3


# -- CfC --------------------------------------------------------------------------------
#
# CfC arrays put the batch last, (time, n, batch), so that the loops over the batch are
# innermost and contiguous, which LLVM vectorises.


@njit(cache=True, nogil=True, inline="always")
def _sigmoid(value):
    return 1.0 / (1.0 + math.exp(-value))


@njit(cache=True, nogil=True, inline="always")
def _tanh(value):
    # Through exp, which costs about a quarter of libm's tanh. In float64 the absolute
    # error stays below 1e-15, far below float32 resolution.
    decay = math.exp(-2.0 * abs(value))
    magnitude = (1.0 - decay) / (1.0 + decay)
    return magnitude if value >= 0.0 else -magnitude


@njit(cache=True, nogil=True)
def _cfc_update(
    drive, previous, time, mode, units, layer_bounds,
    delayed_source, delayed_row, delayed_weight,
    forward_source, forward_row, forward_weight, forward_start,
    tau, amplitude, state, saved, save,
):
    """Advance a batch by one step.

    Args:
        drive: (heads * units, batch) float64 input term, modified in place.
        previous: (units, batch) state before the step.
        time: (batch,) cell time of the step.
        state: (units, batch) output, the new state.
        saved: (CFC_SAVED_VALUES, units, batch) output, written when ``save`` is True.
    """
    batch_size = drive.shape[1]
    for entry in range(delayed_source.shape[0]):
        row = delayed_row[entry]
        source = delayed_source[entry]
        weight = delayed_weight[entry]
        for sample in range(batch_size):
            drive[row, sample] += weight * previous[source, sample]
    for layer in range(layer_bounds.shape[0] - 1):
        for entry in range(forward_start[layer], forward_start[layer + 1]):
            row = forward_row[entry]
            source = forward_source[entry]
            weight = forward_weight[entry]
            for sample in range(batch_size):
                drive[row, sample] += weight * state[source, sample]
        for neuron in range(layer_bounds[layer], layer_bounds[layer + 1]):
            for sample in range(batch_size):
                ff1 = drive[neuron, sample]
                if mode == CFC_PURE:
                    decay = math.exp(-time[sample] * (tau[neuron] + abs(ff1)))
                    state[neuron, sample] = amplitude[neuron] - amplitude[neuron] * decay * ff1
                    if save:
                        saved[0, neuron, sample] = ff1
                        saved[1, neuron, sample] = decay
                    continue
                tanh1 = _tanh(ff1)
                tanh2 = _tanh(drive[units + neuron, sample])
                gate = _sigmoid(drive[2 * units + neuron, sample] * time[sample] + drive[3 * units + neuron, sample])
                if mode == CFC_NO_GATE:
                    state[neuron, sample] = tanh1 + gate * tanh2
                else:
                    state[neuron, sample] = tanh1 + gate * (tanh2 - tanh1)
                if save:
                    saved[0, neuron, sample] = tanh1
                    saved[1, neuron, sample] = tanh2
                    saved[2, neuron, sample] = gate


@njit(cache=True, nogil=True)
def cfc_forward(
    inputs, input_weight_t, bias, initial, time, mode, units, layer_bounds,
    delayed_source, delayed_row, delayed_weight,
    forward_source, forward_row, forward_weight, forward_start,
    tau, amplitude, states,
):
    """Run a CfC over sequences, computing the input term from raw inputs.

    Args:
        inputs: (time, input_size, batch) features.
        input_weight_t: (input_size, heads * units) effective input weights, 0 where masked.
        bias: (heads * units,).
        initial: (units, batch) state before the first step.
        time: (time, batch) cell time of each step, ``dt / time_scale_s``.
        tau: (units,) ``|tau_weight|`` in "pure" mode, otherwise unused.
        amplitude: (units,) in "pure" mode, otherwise unused.
        states: (time, units, batch) output, the state after each step.
    """
    steps, input_size, batch_size = inputs.shape
    rows = input_weight_t.shape[1]
    drive = np.empty((rows, batch_size), np.float64)
    unused = np.empty((CFC_SAVED_VALUES, units, batch_size), np.float32)
    for step in range(steps):
        for row in range(rows):
            for sample in range(batch_size):
                drive[row, sample] = bias[row]
        if batch_size == 1:
            # Streaming: vectorise over the rows instead of the batch.
            for feature in range(input_size):
                value = np.float64(inputs[step, feature, 0])
                for row in range(rows):
                    drive[row, 0] += value * input_weight_t[feature, row]
        else:
            for feature in range(input_size):
                for row in range(rows):
                    weight = input_weight_t[feature, row]
                    if weight != 0.0:
                        for sample in range(batch_size):
                            drive[row, sample] += weight * inputs[step, feature, sample]
        previous = initial if step == 0 else states[step - 1]
        _cfc_update(
            drive, previous, time[step], mode, units, layer_bounds,
            delayed_source, delayed_row, delayed_weight,
            forward_source, forward_row, forward_weight, forward_start,
            tau, amplitude, states[step], unused, False,
        )


@njit(cache=True, nogil=True)
def cfc_forward_drive(
    input_drive, initial, time, mode, units, layer_bounds,
    delayed_source, delayed_row, delayed_weight,
    forward_source, forward_row, forward_weight, forward_start,
    tau, amplitude, states, saved,
):
    """Run a CfC over sequences from a precomputed input term, saving activations.

    Args:
        input_drive: (time, heads * units, batch) input term, bias included.
        states: (time, units, batch) output.
        saved: (time, CFC_SAVED_VALUES, units, batch) output for :func:`cfc_backward`.

    The other arguments are those of :func:`cfc_forward`.
    """
    steps, rows, batch_size = input_drive.shape
    drive = np.empty((rows, batch_size), np.float64)
    for step in range(steps):
        drive[:, :] = input_drive[step]
        previous = initial if step == 0 else states[step - 1]
        _cfc_update(
            drive, previous, time[step], mode, units, layer_bounds,
            delayed_source, delayed_row, delayed_weight,
            forward_source, forward_row, forward_weight, forward_start,
            tau, amplitude, states[step], saved[step], True,
        )


@njit(cache=True, nogil=True)
def cfc_backward(
    grad_states, states, saved, initial, time, mode, units, layer_bounds,
    delayed_source, delayed_row, delayed_weight,
    forward_source, forward_row, forward_weight, forward_start,
    tau_weight, amplitude,
    grad_drive, grad_initial, grad_delayed, grad_forward, grad_tau_weight, grad_amplitude,
):
    """Backpropagate through :func:`cfc_forward_drive` (backpropagation through time).

    Args:
        grad_states: (time, units, batch) gradient of the loss with respect to ``states``.
        tau_weight: (units,) raw ``tau_weight`` in "pure" mode (its sign is needed).
        grad_drive: (time, heads * units, batch) output, gradient of the input term.
        grad_initial: (units, batch) output.
        grad_delayed, grad_forward: per-entry weight gradients, zero-initialised,
            accumulated over the batch.
        grad_tau_weight, grad_amplitude: (units,) zero-initialised, accumulated.

    The gradient with respect to ``time`` is not computed.
    """
    steps, _, batch_size = grad_states.shape
    gradient = np.empty((units, batch_size), np.float64)  # dL/d state of the current step
    carry = np.zeros((units, batch_size), np.float64)  # dL/d previous state
    rows = np.empty((grad_drive.shape[1], batch_size), np.float64)  # dL/d drive
    for step in range(steps - 1, -1, -1):
        current = states[step]
        previous = initial if step == 0 else states[step - 1]
        activations = saved[step]
        elapsed = time[step]
        for neuron in range(units):
            for sample in range(batch_size):
                gradient[neuron, sample] = grad_states[step, neuron, sample] + carry[neuron, sample]
                carry[neuron, sample] = 0.0
        for layer in range(layer_bounds.shape[0] - 2, -1, -1):
            for neuron in range(layer_bounds[layer], layer_bounds[layer + 1]):
                if mode == CFC_PURE:
                    scale = amplitude[neuron]
                    sign = np.sign(tau_weight[neuron])
                    for sample in range(batch_size):
                        upstream = gradient[neuron, sample]
                        ff1 = np.float64(activations[0, neuron, sample])
                        decay = np.float64(activations[1, neuron, sample])
                        rows[neuron, sample] = upstream * (-scale * decay * (1.0 - elapsed[sample] * abs(ff1)))
                        grad_amplitude[neuron] += upstream * (1.0 - decay * ff1)
                        grad_tau_weight[neuron] += upstream * scale * ff1 * decay * elapsed[sample] * sign
                    continue
                for sample in range(batch_size):
                    upstream = gradient[neuron, sample]
                    tanh1 = np.float64(activations[0, neuron, sample])
                    tanh2 = np.float64(activations[1, neuron, sample])
                    gate = np.float64(activations[2, neuron, sample])
                    if mode == CFC_NO_GATE:
                        grad_tanh1 = upstream
                        grad_gate = upstream * tanh2
                    else:
                        grad_tanh1 = upstream * (1.0 - gate)
                        grad_gate = upstream * (tanh2 - tanh1)
                    grad_logit = grad_gate * gate * (1.0 - gate)
                    rows[neuron, sample] = grad_tanh1 * (1.0 - tanh1 * tanh1)
                    rows[units + neuron, sample] = upstream * gate * (1.0 - tanh2 * tanh2)
                    rows[2 * units + neuron, sample] = grad_logit * elapsed[sample]
                    rows[3 * units + neuron, sample] = grad_logit
            for entry in range(forward_start[layer], forward_start[layer + 1]):
                row = forward_row[entry]
                source = forward_source[entry]
                weight = forward_weight[entry]
                total = 0.0
                for sample in range(batch_size):
                    total += rows[row, sample] * current[source, sample]
                    gradient[source, sample] += rows[row, sample] * weight
                grad_forward[entry] += total
        for entry in range(delayed_source.shape[0]):
            row = delayed_row[entry]
            source = delayed_source[entry]
            weight = delayed_weight[entry]
            total = 0.0
            for sample in range(batch_size):
                total += rows[row, sample] * previous[source, sample]
                carry[source, sample] += rows[row, sample] * weight
            grad_delayed[entry] += total
        grad_drive[step, :, :] = rows
    grad_initial[:, :] = carry


# -- LTC --------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _ltc_synaptic_current(
    potential, source, destination, weight, mu, sigma, erev, numerator, denominator
):
    """Add ``sum w s erev`` to ``numerator`` and ``sum w s`` to ``denominator`` per neuron."""
    for entry in range(source.shape[0]):
        activation = weight[entry] * _sigmoid(sigma[entry] * (potential[source[entry]] - mu[entry]))
        numerator[destination[entry]] += activation * erev[entry]
        denominator[destination[entry]] += activation


@njit(cache=True, nogil=True)
def _ltc_derivative(
    potential, sensory_numerator, sensory_denominator, gleak, vleak, cm,
    source, destination, weight, mu, sigma, erev, numerator, denominator, out,
):
    """Write dv/d(cell time) of every neuron into ``out``."""
    units = potential.shape[0]
    for neuron in range(units):
        numerator[neuron] = sensory_numerator[neuron]
        denominator[neuron] = sensory_denominator[neuron]
    _ltc_synaptic_current(potential, source, destination, weight, mu, sigma, erev, numerator, denominator)
    for neuron in range(units):
        current = (
            gleak[neuron] * (vleak[neuron] - potential[neuron])
            + numerator[neuron]
            - denominator[neuron] * potential[neuron]
        )
        out[neuron] = current / cm[neuron]


@njit(cache=True, nogil=True)
def ltc_forward(
    inputs, initial, time, input_weight, input_bias,
    sensory_source, sensory_destination, sensory_weight, sensory_mu, sensory_sigma, sensory_erev,
    source, destination, weight, mu, sigma, erev,
    gleak, vleak, cm, solver, unfolds, max_substep, max_unfolds, epsilon, min_time,
    output_weight, output_bias, states, outputs,
):
    """Run an LTC over sequences.

    Args:
        inputs: (batch, time, input_size) features, before the affine input mapping.
        initial: (batch, units) potentials before the first step.
        time: (batch, time) cell time of each step, ``dt / time_scale_s``.
        sensory_*: per sensory synapse: input index, destination neuron, conductance
            (softplus applied), mu, sigma and reversal potential.
        source ... erev: the same per neuron-to-neuron synapse.
        gleak, cm: (units,) positive leak conductance and capacitance.
        solver: LTC_SEMI_IMPLICIT, LTC_EULER or LTC_RK4.
        unfolds: substeps per step when ``max_substep`` is 0.
        max_substep: largest substep in cell time, or 0 for a fixed ``unfolds``.
        max_unfolds: cap on the substeps per step when ``max_substep`` > 0.
        output_weight, output_bias: (output_size,) affine map of the motor neurons, the
            last ``output_size`` neurons.
        states: (batch, time, units) output.
        outputs: (batch, time, output_size) output.
    """
    batch_size, steps, input_size = inputs.shape
    units = initial.shape[1]
    potential = np.empty(units, np.float64)
    sensory_numerator = np.empty(units, np.float64)
    sensory_denominator = np.empty(units, np.float64)
    numerator = np.empty(units, np.float64)
    denominator = np.empty(units, np.float64)
    mapped = np.empty(input_size, np.float64)
    slopes = np.empty((4, units), np.float64)
    probe = np.empty(units, np.float64)
    for sample in range(batch_size):
        for neuron in range(units):
            potential[neuron] = initial[sample, neuron]
        for step in range(steps):
            for feature in range(input_size):
                mapped[feature] = inputs[sample, step, feature] * input_weight[feature] + input_bias[feature]
            sensory_numerator[:] = 0.0
            sensory_denominator[:] = 0.0
            _ltc_synaptic_current(
                mapped, sensory_source, sensory_destination, sensory_weight, sensory_mu,
                sensory_sigma, sensory_erev, sensory_numerator, sensory_denominator,
            )
            elapsed = max(np.float64(time[sample, step]), min_time)
            count = unfolds
            if max_substep > 0.0:
                count = min(max(int(math.ceil(elapsed / max_substep)), 1), max_unfolds)
            substep = elapsed / count
            for _ in range(count):
                if solver == LTC_SEMI_IMPLICIT:
                    for neuron in range(units):
                        numerator[neuron] = sensory_numerator[neuron]
                        denominator[neuron] = sensory_denominator[neuron]
                    _ltc_synaptic_current(
                        potential, source, destination, weight, mu, sigma, erev, numerator, denominator
                    )
                    for neuron in range(units):
                        capacitance = cm[neuron] / substep
                        top = capacitance * potential[neuron] + gleak[neuron] * vleak[neuron] + numerator[neuron]
                        bottom = capacitance + gleak[neuron] + denominator[neuron] + epsilon
                        probe[neuron] = top / bottom
                    potential[:] = probe
                elif solver == LTC_EULER:
                    _ltc_derivative(
                        potential, sensory_numerator, sensory_denominator, gleak, vleak, cm,
                        source, destination, weight, mu, sigma, erev, numerator, denominator, slopes[0],
                    )
                    for neuron in range(units):
                        potential[neuron] += substep * slopes[0, neuron]
                else:
                    # Classical fourth-order Runge-Kutta.
                    for stage in range(4):
                        if stage == 0:
                            probe[:] = potential
                        else:
                            fraction = 1.0 if stage == 3 else 0.5
                            for neuron in range(units):
                                probe[neuron] = potential[neuron] + fraction * substep * slopes[stage - 1, neuron]
                        _ltc_derivative(
                            probe, sensory_numerator, sensory_denominator, gleak, vleak, cm,
                            source, destination, weight, mu, sigma, erev, numerator, denominator,
                            slopes[stage],
                        )
                    for neuron in range(units):
                        potential[neuron] += substep / 6.0 * (
                            slopes[0, neuron] + 2.0 * slopes[1, neuron] + 2.0 * slopes[2, neuron] + slopes[3, neuron]
                        )
            for neuron in range(units):
                states[sample, step, neuron] = potential[neuron]
            motor_start = units - output_weight.shape[0]
            for motor in range(output_weight.shape[0]):
                outputs[sample, step, motor] = (
                    potential[motor_start + motor] * output_weight[motor] + output_bias[motor]
                )


# -- LTC training -------------------------------------------------------------------------
#
# The semi-implicit solver only. Like the CfC kernels, these put the batch last,
# (time, n, batch), so that the innermost loops run over the batch. The forward kernel
# saves the potentials around every substep, the solver's denominators and the synaptic
# gates, so that the backward kernel computes no exponentials. Both use numpy's error
# model: a float division by zero gives inf or nan instead of raising, and without that
# check LLVM vectorises the loops over the batch. The backward kernel also lets LLVM
# reorder its float64 sums over the batch (fastmath "reassoc"), so that they vectorise.

# Clamp of the sigmoid's argument in _vector_sigmoid. sigmoid(40) is 1 - 4e-18, equal to 1
# in float64, and sigmoid(-40) is 4e-18.
_SIGMOID_CLAMP = 40.0


@njit(cache=True, nogil=True, inline="always", error_model="numpy")
def _vector_sigmoid(value):
    """Return sigmoid(value) with a relative error below 1e-10, in a form LLVM vectorises.

    numba vectorises calls to exp only through Intel's SVML, an optional dependency, so
    exp(-z) is computed here as a degree-6 Taylor polynomial of exp(-z / 1024), squared
    ten times. For |z| <= 40 the polynomial's relative error is below 4e-14, and the ten
    squarings multiply it by 1024.
    """
    clamped = min(max(value, -_SIGMOID_CLAMP), _SIGMOID_CLAMP)
    y = clamped * (-1.0 / 1024.0)
    power = 1.0 + y * (1.0 + y * (0.5 + y * (1.0 / 6.0 + y * (1.0 / 24.0 + y * (1.0 / 120.0 + y * (1.0 / 720.0))))))
    for _ in range(10):
        power *= power
    return 1.0 / (1.0 + power)


@njit(cache=True, nogil=True, error_model="numpy")
def _ltc_substeps(time, unfolds, max_substep, max_unfolds, min_time, counts, substeps):
    """Fill the substep count and length of each sample of one step, and return the max count.

    Args:
        time: (batch,) cell time of the step.
        counts: (batch,) int64 output.
        substeps: (batch,) float64 output, the substep in cell time.
    """
    max_count = 1
    for sample in range(time.shape[0]):
        elapsed = max(np.float64(time[sample]), min_time)
        count = unfolds
        if max_substep > 0.0:
            count = min(max(int(math.ceil(elapsed / max_substep)), 1), max_unfolds)
        counts[sample] = count
        substeps[sample] = elapsed / count
        max_count = max(max_count, count)
    return max_count


@njit(cache=True, nogil=True, error_model="numpy")
def _ltc_gated_current(potential, source, destination, weight, mu, sigma, erev, gates, numerator, denominator):
    """Add the synaptic sums of a batch like :func:`_ltc_synaptic_current`, saving the gates.

    Args:
        potential: (sources, batch) presynaptic potentials or mapped inputs.
        gates: (synapses, batch) output, the gates ``s``.
        numerator, denominator: (units, batch), added to.
    """
    batch_size = potential.shape[1]
    for entry in range(source.shape[0]):
        origin = source[entry]
        target = destination[entry]
        # The gates get a loop of their own, which LLVM vectorises apart from the scattered sums.
        for sample in range(batch_size):
            gates[entry, sample] = _vector_sigmoid(sigma[entry] * (potential[origin, sample] - mu[entry]))
        for sample in range(batch_size):
            activation = weight[entry] * gates[entry, sample]
            numerator[target, sample] += activation * erev[entry]
            denominator[target, sample] += activation


@njit(cache=True, nogil=True, error_model="numpy")
def ltc_semi_implicit_forward(
    mapped, initial, time,
    sensory_source, sensory_destination, sensory_weight, sensory_mu, sensory_sigma, sensory_erev,
    source, destination, weight, mu, sigma, erev,
    gleak, vleak, cm, unfolds, max_substep, max_unfolds, epsilon, min_time,
    states, saved_potential, saved_bottom, saved_gate, saved_sensory_gate,
):
    """Run an LTC with the semi-implicit solver over sequences, saving what backward needs.

    Args:
        mapped: (time, input_size, batch) inputs after the affine input mapping.
        initial: (units, batch) potentials before the first step.
        time: (time, batch) cell time of each step, ``dt / time_scale_s``.
        states: (time, units, batch) float32 output, the potentials after each step.
        saved_potential: (time, max substeps + 1, units, batch) output, the potentials
            before each substep and after the last one.
        saved_bottom: (time, max substeps, units, batch) output, the solver's denominator.
        saved_gate: (time, max substeps, synapses, batch) output, the synaptic gates.
        saved_sensory_gate: (time, sensory synapses, batch) output, the sensory gates.

    A sample that needs fewer substeps than others in the same step keeps its potential
    over the surplus substeps. Substeps beyond the step's max count are left
    unwritten. The other arguments are those of :func:`ltc_forward`.
    """
    steps, input_size, batch_size = mapped.shape
    units = initial.shape[0]
    potential = np.empty((units, batch_size), np.float64)
    sensory_numerator = np.empty((units, batch_size), np.float64)
    sensory_denominator = np.empty((units, batch_size), np.float64)
    numerator = np.empty((units, batch_size), np.float64)
    denominator = np.empty((units, batch_size), np.float64)
    mapped_step = np.empty((input_size, batch_size), np.float64)
    counts = np.empty(batch_size, np.int64)
    substeps = np.empty(batch_size, np.float64)
    potential[:, :] = initial
    for step in range(steps):
        mapped_step[:, :] = mapped[step]
        sensory_numerator[:, :] = 0.0
        sensory_denominator[:, :] = 0.0
        _ltc_gated_current(
            mapped_step, sensory_source, sensory_destination, sensory_weight, sensory_mu,
            sensory_sigma, sensory_erev, saved_sensory_gate[step], sensory_numerator, sensory_denominator,
        )
        max_count = _ltc_substeps(time[step], unfolds, max_substep, max_unfolds, min_time, counts, substeps)
        for unfold in range(max_count):
            saved_potential[step, unfold] = potential
            numerator[:, :] = sensory_numerator
            denominator[:, :] = sensory_denominator
            _ltc_gated_current(
                potential, source, destination, weight, mu, sigma, erev,
                saved_gate[step, unfold], numerator, denominator,
            )
            bottoms = saved_bottom[step, unfold]
            for neuron in range(units):
                leak = gleak[neuron] * vleak[neuron]
                for sample in range(batch_size):
                    capacitance = cm[neuron] / substeps[sample]
                    top = capacitance * potential[neuron, sample] + leak + numerator[neuron, sample]
                    bottom = capacitance + gleak[neuron] + denominator[neuron, sample] + epsilon
                    bottoms[neuron, sample] = bottom
                    updated = top / bottom
                    # A sample past its own substep count keeps its potential.
                    potential[neuron, sample] = updated if unfold < counts[sample] else potential[neuron, sample]
        saved_potential[step, max_count] = potential
        states[step] = potential


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _ltc_synapse_backward(
    potential, gates, grad_numerator, grad_denominator,
    source, destination, weight, mu, sigma, erev,
    grad_potential, grad_parameters,
):
    """Backpropagate the synaptic sums of :func:`_ltc_gated_current` for a batch.

    Args:
        potential, gates: (sources, batch) and (synapses, batch) as in the forward pass.
        grad_numerator, grad_denominator: (units, batch) gradients of the sums.
        grad_potential: (sources, batch), the gradient of ``potential`` is added to it.
        grad_parameters: (4, synapses) gradients of the conductance, mu, sigma and
            reversal potential, added to and summed over the batch.
    """
    batch_size = potential.shape[1]
    for entry in range(source.shape[0]):
        origin = source[entry]
        target = destination[entry]
        grad_erev = 0.0
        grad_weight = 0.0
        grad_sigma = 0.0
        grad_logits = 0.0
        for sample in range(batch_size):
            gate = gates[entry, sample]
            grad_activation = grad_numerator[target, sample] * erev[entry] + grad_denominator[target, sample]
            grad_erev += grad_numerator[target, sample] * gate
            grad_weight += grad_activation * gate
            grad_logit = grad_activation * weight[entry] * gate * (1.0 - gate)
            grad_sigma += grad_logit * (potential[origin, sample] - mu[entry])
            grad_logits += grad_logit
            grad_potential[origin, sample] += grad_logit * sigma[entry]
        grad_parameters[0, entry] += grad_weight
        grad_parameters[1, entry] -= grad_logits * sigma[entry]
        grad_parameters[2, entry] += grad_sigma
        grad_parameters[3, entry] += grad_erev * weight[entry]


@njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def ltc_semi_implicit_backward(
    grad_states, mapped, initial, time,
    sensory_source, sensory_destination, sensory_weight, sensory_mu, sensory_sigma, sensory_erev,
    source, destination, weight, mu, sigma, erev,
    gleak, vleak, cm, unfolds, max_substep, max_unfolds, epsilon, min_time,
    saved_potential, saved_bottom, saved_gate, saved_sensory_gate,
    grad_mapped, grad_initial, grad_sensory, grad_synapse, grad_neuron,
):
    """Backpropagate through :func:`ltc_semi_implicit_forward` (through time and substeps).

    Args:
        grad_states: (time, units, batch) gradient of the loss with respect to ``states``.
        saved_*: the arrays saved by the forward kernel.
        grad_mapped: (time, input_size, batch) output.
        grad_initial: (units, batch) output.
        grad_sensory: (4, sensory synapses) zero-initialised gradients of the sensory
            conductance, mu, sigma and reversal potential, summed over the batch.
        grad_synapse: (4, synapses) the same for the neuron-to-neuron synapses.
        grad_neuron: (3, units) zero-initialised gradients of gleak, vleak and cm.

    The other arguments are those of the forward kernel. The gradient with respect to
    ``time`` is not computed.
    """
    steps, input_size, batch_size = mapped.shape
    units = initial.shape[0]
    gradient = np.empty((units, batch_size), np.float64)  # dL/d potential after the substep
    carry = np.zeros((units, batch_size), np.float64)  # dL/d potential before the substep
    grad_numerator = np.empty((units, batch_size), np.float64)
    grad_denominator = np.empty((units, batch_size), np.float64)
    grad_base_numerator = np.empty((units, batch_size), np.float64)  # summed over substeps
    grad_base_denominator = np.empty((units, batch_size), np.float64)
    grad_capacitance = np.empty((units, batch_size), np.float64)  # dL/d (cm / substep)
    grad_input = np.empty((input_size, batch_size), np.float64)
    mapped_step = np.empty((input_size, batch_size), np.float64)
    counts = np.empty(batch_size, np.int64)
    substeps = np.empty(batch_size, np.float64)
    for step in range(steps - 1, -1, -1):
        max_count = _ltc_substeps(time[step], unfolds, max_substep, max_unfolds, min_time, counts, substeps)
        for neuron in range(units):
            for sample in range(batch_size):
                gradient[neuron, sample] = grad_states[step, neuron, sample] + carry[neuron, sample]
        grad_base_numerator[:, :] = 0.0
        grad_base_denominator[:, :] = 0.0
        grad_capacitance[:, :] = 0.0
        for unfold in range(max_count - 1, -1, -1):
            before = saved_potential[step, unfold]
            after = saved_potential[step, unfold + 1]
            bottoms = saved_bottom[step, unfold]
            for neuron in range(units):
                for sample in range(batch_size):
                    if unfold < counts[sample]:
                        # after = top / bottom
                        grad_top = gradient[neuron, sample] / bottoms[neuron, sample]
                        grad_bottom = -grad_top * after[neuron, sample]
                        carry[neuron, sample] = grad_top * cm[neuron] / substeps[sample]
                    else:
                        # A surplus substep of this sample: the potential passes through.
                        grad_top = 0.0
                        grad_bottom = 0.0
                        carry[neuron, sample] = gradient[neuron, sample]
                    grad_numerator[neuron, sample] = grad_top
                    grad_denominator[neuron, sample] = grad_bottom
                    grad_base_numerator[neuron, sample] += grad_top
                    grad_base_denominator[neuron, sample] += grad_bottom
                    grad_capacitance[neuron, sample] += grad_top * before[neuron, sample] + grad_bottom
            _ltc_synapse_backward(
                before, saved_gate[step, unfold], grad_numerator, grad_denominator,
                source, destination, weight, mu, sigma, erev, carry, grad_synapse,
            )
            gradient[:, :] = carry
        for neuron in range(units):
            # The base numerator is sensory numerator + gleak * vleak, and the base
            # denominator is cm / substep + gleak + sensory denominator + epsilon.
            grad_leak = 0.0
            grad_rest = 0.0
            grad_cm = 0.0
            for sample in range(batch_size):
                grad_leak += grad_base_numerator[neuron, sample] * vleak[neuron] + grad_base_denominator[neuron, sample]
                grad_rest += grad_base_numerator[neuron, sample] * gleak[neuron]
                grad_cm += grad_capacitance[neuron, sample] / substeps[sample]
            grad_neuron[0, neuron] += grad_leak
            grad_neuron[1, neuron] += grad_rest
            grad_neuron[2, neuron] += grad_cm
        mapped_step[:, :] = mapped[step]
        grad_input[:, :] = 0.0
        _ltc_synapse_backward(
            mapped_step, saved_sensory_gate[step], grad_base_numerator, grad_base_denominator,
            sensory_source, sensory_destination, sensory_weight, sensory_mu, sensory_sigma, sensory_erev,
            grad_input, grad_sensory,
        )
        grad_mapped[step] = grad_input
    grad_initial[:, :] = carry
