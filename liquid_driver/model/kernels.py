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
