"""Synapse wirings for the liquid cells: which neuron feeds which, and with what polarity.

A wiring stores two integer matrices with entries -1 (inhibitory synapse), 0 (no synapse)
and +1 (excitatory synapse):

* ``adjacency`` with shape (units, units), indexed ``[source, destination]``;
* ``sensory_adjacency`` with shape (input_size, units), indexed ``[input, destination]``.

Neurons are numbered in data-flow order. For an NCP that is inter neurons first, then
command neurons, then motor neurons, so the motor neurons (the cell outputs) are always
the last ``output_size`` neurons. The layers are contiguous index ranges and are listed
in evaluation order by :attr:`Wiring.layers`.

The neuron adjacency is drawn when the wiring is constructed. The sensory adjacency
needs the number of input features and is drawn by :meth:`Wiring.build`, either by the
caller or by the cell that receives the wiring. Both draws are seeded, and
:meth:`Wiring.to_dict` stores the matrices themselves, so :func:`wiring_from_dict`
rebuilds the identical wiring even if numpy's random streams change.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, NamedTuple

import numpy as np

logger = logging.getLogger(__name__)

EXCITATORY = 1
INHIBITORY = -1

# Each drawn synapse is excitatory with this probability. An even split keeps the mean
# synaptic drive near zero at initialisation.
_EXCITATORY_PROBABILITY = 0.5

# Separate random streams, so that building the sensory synapses later (or for another
# input size) never changes the neuron-to-neuron synapses.
_NEURON_STREAM = 0
_SENSORY_STREAM = 1

_DEFAULT_SEED = 22


class Layer(NamedTuple):
    """A named, contiguous range of neuron indices ``[start, stop)``."""

    name: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        """Number of neurons in the layer."""
        return self.stop - self.start


def _check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    upper = "" if maximum is None else f" and <= {maximum}"
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name}={value} is out of range: it must be >= {minimum}{upper}")
    return int(value)


def _check_sparsity(sparsity: float) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise TypeError(f"sparsity must be a float in [0, 1), got {sparsity!r}")
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(
            f"sparsity={sparsity} is out of range: it must be in [0, 1), where 0 keeps every "
            "possible synapse and values near 1 keep very few"
        )
    return float(sparsity)


def _check_polarity_matrix(name: str, matrix: Any, shape: tuple[int, int]) -> np.ndarray:
    array = np.asarray(matrix)
    if array.shape != shape:
        raise ValueError(f"{name} has shape {array.shape}, expected {shape}")
    if array.size and not np.isin(array, (-1, 0, 1)).all():
        bad = sorted(set(np.unique(array).tolist()) - {-1, 0, 1})
        raise ValueError(f"{name} contains {bad[:5]}, but entries must be -1, 0 or +1")
    return array.astype(np.int8)


class Wiring:
    """Base class: neuron and sensory adjacency with synapse polarities.

    Args:
        units: Number of neurons (inter, command and motor together).
        output_size: Number of motor neurons, which are the last ``output_size`` neurons.
        seed: Seed for every random draw of this wiring.
    """

    #: Name under which :func:`wiring_from_dict` finds the subclass.
    kind: ClassVar[str] = "base"

    def __init__(self, units: int, output_size: int, seed: int = _DEFAULT_SEED) -> None:
        self.units = _check_int("units", units, 1)
        self.output_size = _check_int("output_size", output_size, 1, self.units)
        self.seed = _check_int("seed", seed, 0)
        self.adjacency = np.zeros((self.units, self.units), dtype=np.int8)
        self.sensory_adjacency: np.ndarray | None = None
        self.input_size: int | None = None

    # -- construction -------------------------------------------------------------------

    def _rng(self, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, stream])

    def _draw_polarity(self, rng: np.random.Generator) -> int:
        return EXCITATORY if rng.random() < _EXCITATORY_PROBABILITY else INHIBITORY

    def add_synapse(self, source: int, destination: int, polarity: int) -> None:
        """Add a neuron-to-neuron synapse with polarity +1 (excitatory) or -1 (inhibitory)."""
        _check_int("source", source, 0, self.units - 1)
        _check_int("destination", destination, 0, self.units - 1)
        if polarity not in (EXCITATORY, INHIBITORY):
            raise ValueError(f"polarity={polarity!r} is invalid: use +1 or -1")
        self.adjacency[source, destination] = polarity

    def add_sensory_synapse(self, source: int, destination: int, polarity: int) -> None:
        """Add an input-to-neuron synapse to a built wiring."""
        if self.sensory_adjacency is None or self.input_size is None:
            raise RuntimeError("call build(input_size) before adding sensory synapses")
        _check_int("source", source, 0, self.input_size - 1)
        _check_int("destination", destination, 0, self.units - 1)
        if polarity not in (EXCITATORY, INHIBITORY):
            raise ValueError(f"polarity={polarity!r} is invalid: use +1 or -1")
        self.sensory_adjacency[source, destination] = polarity

    def build(self, input_size: int) -> None:
        """Draw the sensory synapses for ``input_size`` input features.

        Building again with the same size does nothing. A different size raises, because
        the weights of a cell built on this wiring would no longer fit.
        """
        input_size = _check_int("input_size", input_size, 1)
        if self.input_size is not None:
            if input_size != self.input_size:
                raise ValueError(
                    f"wiring is already built for input_size={self.input_size}, got "
                    f"{input_size}. Create a new wiring for another input size."
                )
            return
        self.input_size = input_size
        self.sensory_adjacency = np.zeros((input_size, self.units), dtype=np.int8)
        self._build_sensory(self._rng(_SENSORY_STREAM))

    def _build_sensory(self, rng: np.random.Generator) -> None:
        """Fill ``sensory_adjacency``. Subclasses override this."""
        raise NotImplementedError

    @property
    def is_built(self) -> bool:
        """Whether the sensory synapses exist (the input size is known)."""
        return self.sensory_adjacency is not None

    def require_built(self) -> None:
        """Raise unless :meth:`build` has run."""
        if not self.is_built:
            raise ValueError(
                f"{type(self).__name__} wiring is not built: call wiring.build(input_size) "
                "or pass input_size to the cell"
            )

    # -- structure ----------------------------------------------------------------------

    @property
    def layers(self) -> tuple[Layer, ...]:
        """Neuron layers in evaluation order, by default one layer with every neuron."""
        return (Layer("hidden", 0, self.units),)

    @property
    def motor_neurons(self) -> range:
        """Indices of the motor (output) neurons."""
        return range(self.units - self.output_size, self.units)

    def layer_of(self, neuron: int) -> str:
        """Return the name of the layer that contains ``neuron``."""
        for layer in self.layers:
            if layer.start <= neuron < layer.stop:
                return layer.name
        raise ValueError(f"neuron {neuron} is out of range [0, {self.units})")

    @property
    def synapse_count(self) -> int:
        """Number of neuron-to-neuron synapses."""
        return int(np.count_nonzero(self.adjacency))

    @property
    def sensory_synapse_count(self) -> int:
        """Number of input-to-neuron synapses (0 before :meth:`build`)."""
        if self.sensory_adjacency is None:
            return 0
        return int(np.count_nonzero(self.sensory_adjacency))

    # -- serialisation ------------------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        """Constructor arguments, as stored by :meth:`to_dict`."""
        return {"units": self.units, "output_size": self.output_size, "seed": self.seed}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-compatible description that contains the matrices themselves."""
        sensory = None if self.sensory_adjacency is None else self.sensory_adjacency.tolist()
        return {
            "kind": self.kind,
            "params": self._params(),
            "input_size": self.input_size,
            "adjacency": self.adjacency.tolist(),
            "sensory_adjacency": sensory,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Wiring):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        params = ", ".join(f"{key}={value!r}" for key, value in self._params().items())
        return (
            f"{type(self).__name__}({params}; input_size={self.input_size}, "
            f"synapses={self.synapse_count}, sensory_synapses={self.sensory_synapse_count})"
        )


class FullyConnected(Wiring):
    """Every input feeds every neuron and every neuron feeds every neuron (self included).

    Polarities are drawn at random, so with polarity enforced this is a sign-constrained
    dense network. Cells can ignore polarity to get an ordinary dense recurrent cell.
    """

    kind = "fully_connected"

    def __init__(self, units: int, output_size: int, seed: int = _DEFAULT_SEED) -> None:
        super().__init__(units, output_size, seed)
        rng = self._rng(_NEURON_STREAM)
        for source in range(self.units):
            for destination in range(self.units):
                self.add_synapse(source, destination, self._draw_polarity(rng))

    def _build_sensory(self, rng: np.random.Generator) -> None:
        assert self.input_size is not None
        for source in range(self.input_size):
            for destination in range(self.units):
                self.add_sensory_synapse(source, destination, self._draw_polarity(rng))


class Random(Wiring):
    """Each possible synapse exists independently with probability ``1 - sparsity``.

    A neuron that draws no incoming synapse at all gets one sensory synapse from a random
    input, so that no neuron is constant.
    """

    kind = "random"

    def __init__(
        self, units: int, output_size: int, sparsity: float = 0.5, seed: int = _DEFAULT_SEED
    ) -> None:
        super().__init__(units, output_size, seed)
        self.sparsity = _check_sparsity(sparsity)
        rng = self._rng(_NEURON_STREAM)
        for source in range(self.units):
            for destination in range(self.units):
                if rng.random() >= self.sparsity:
                    self.add_synapse(source, destination, self._draw_polarity(rng))

    def _build_sensory(self, rng: np.random.Generator) -> None:
        assert self.input_size is not None and self.sensory_adjacency is not None
        for source in range(self.input_size):
            for destination in range(self.units):
                if rng.random() >= self.sparsity:
                    self.add_sensory_synapse(source, destination, self._draw_polarity(rng))
        for destination in range(self.units):
            has_input = self.adjacency[:, destination].any()
            has_input = has_input or self.sensory_adjacency[:, destination].any()
            if not has_input:
                source = int(rng.integers(self.input_size))
                self.add_sensory_synapse(source, destination, self._draw_polarity(rng))

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "sparsity": self.sparsity}


class NCP(Wiring):
    """Neural Circuit Policy: sensory -> inter -> command -> motor, plus command recurrence.

    The four-layer structure follows Lechner et al., "Neural circuit policies enabling
    auditable autonomy", Nature Machine Intelligence 2, 2020. Synapses are drawn as:

    * each input feeds ``sensory_fanout`` distinct inter neurons;
    * each inter neuron feeds ``inter_fanout`` distinct command neurons;
    * ``recurrent_command_synapses`` distinct command-to-command synapses (self-synapses
      allowed);
    * each motor neuron receives ``motor_fanin`` distinct command neurons.

    An inter or command neuron left without input afterwards receives synapses from the
    mean fan-in of its layer, and a command neuron left without a motor target feeds one
    random motor neuron, so every neuron lies on a path from the inputs to the outputs.

    Args:
        inter_neurons: Size of the inter layer (first layer, fed by the inputs).
        command_neurons: Size of the command layer (the only recurrent layer).
        motor_neurons: Size of the motor layer, which is the output size.
        sensory_fanout: Inter neurons that each input feeds, in [1, inter_neurons].
        inter_fanout: Command neurons that each inter neuron feeds, in [1, command_neurons].
        recurrent_command_synapses: Number of command-to-command synapses, in
            [0, command_neurons ** 2].
        motor_fanin: Command neurons that each motor neuron receives, in
            [1, command_neurons].
        seed: Seed for every random draw of this wiring.
    """

    kind = "ncp"

    def __init__(
        self,
        inter_neurons: int,
        command_neurons: int,
        motor_neurons: int,
        sensory_fanout: int,
        inter_fanout: int,
        recurrent_command_synapses: int,
        motor_fanin: int,
        seed: int = _DEFAULT_SEED,
    ) -> None:
        self.inter_neurons = _check_int("inter_neurons", inter_neurons, 1)
        self.command_neurons = _check_int("command_neurons", command_neurons, 1)
        self.motor_neurons_count = _check_int("motor_neurons", motor_neurons, 1)
        super().__init__(
            self.inter_neurons + self.command_neurons + self.motor_neurons_count,
            self.motor_neurons_count,
            seed,
        )
        self.sensory_fanout = _check_int("sensory_fanout", sensory_fanout, 1, self.inter_neurons)
        self.inter_fanout = _check_int("inter_fanout", inter_fanout, 1, self.command_neurons)
        self.recurrent_command_synapses = _check_int(
            "recurrent_command_synapses", recurrent_command_synapses, 0, self.command_neurons**2
        )
        self.motor_fanin = _check_int("motor_fanin", motor_fanin, 1, self.command_neurons)

        inter, command, motor = self.layers
        rng = self._rng(_NEURON_STREAM)
        self._connect_layers(rng, inter, command, self.inter_fanout)
        self._connect_recurrent_command(rng, command)
        self._connect_motor(rng, command, motor)

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The inter, command and motor layers, in this order."""
        inter_stop = self.inter_neurons
        command_stop = inter_stop + self.command_neurons
        return (
            Layer("inter", 0, inter_stop),
            Layer("command", inter_stop, command_stop),
            Layer("motor", command_stop, self.units),
        )

    def _connect_layers(
        self, rng: np.random.Generator, source: Layer, destination: Layer, fanout: int
    ) -> None:
        """Connect each source neuron to ``fanout`` destinations, then feed the unreached."""
        for neuron in range(source.start, source.stop):
            targets = rng.choice(destination.size, size=fanout, replace=False)
            for target in targets:
                self.add_synapse(neuron, destination.start + int(target), self._draw_polarity(rng))

        block = self.adjacency[source.start : source.stop, destination.start : destination.stop]
        mean_fanin = max(1, round(source.size * fanout / destination.size))
        for target in np.flatnonzero(~block.any(axis=0)):
            sources = rng.choice(source.size, size=min(mean_fanin, source.size), replace=False)
            for neuron in sources:
                self.add_synapse(
                    source.start + int(neuron), destination.start + int(target), self._draw_polarity(rng)
                )

    def _connect_recurrent_command(self, rng: np.random.Generator, command: Layer) -> None:
        pairs = rng.choice(command.size**2, size=self.recurrent_command_synapses, replace=False)
        for pair in pairs:
            source, destination = divmod(int(pair), command.size)
            self.add_synapse(
                command.start + source, command.start + destination, self._draw_polarity(rng)
            )

    def _connect_motor(self, rng: np.random.Generator, command: Layer, motor: Layer) -> None:
        for neuron in range(motor.start, motor.stop):
            sources = rng.choice(command.size, size=self.motor_fanin, replace=False)
            for source in sources:
                self.add_synapse(command.start + int(source), neuron, self._draw_polarity(rng))
        block = self.adjacency[command.start : command.stop, motor.start : motor.stop]
        for source in np.flatnonzero(~block.any(axis=1)):
            target = motor.start + int(rng.integers(motor.size))
            self.add_synapse(command.start + int(source), target, self._draw_polarity(rng))

    def _build_sensory(self, rng: np.random.Generator) -> None:
        assert self.input_size is not None and self.sensory_adjacency is not None
        inter = self.layers[0]
        for feature in range(self.input_size):
            targets = rng.choice(inter.size, size=self.sensory_fanout, replace=False)
            for target in targets:
                self.add_sensory_synapse(feature, inter.start + int(target), self._draw_polarity(rng))

        block = self.sensory_adjacency[:, inter.start : inter.stop]
        mean_fanin = max(1, round(self.input_size * self.sensory_fanout / inter.size))
        for target in np.flatnonzero(~block.any(axis=0)):
            sources = rng.choice(self.input_size, size=min(mean_fanin, self.input_size), replace=False)
            for feature in sources:
                self.add_sensory_synapse(int(feature), inter.start + int(target), self._draw_polarity(rng))

    def _params(self) -> dict[str, Any]:
        return {
            "inter_neurons": self.inter_neurons,
            "command_neurons": self.command_neurons,
            "motor_neurons": self.motor_neurons_count,
            "sensory_fanout": self.sensory_fanout,
            "inter_fanout": self.inter_fanout,
            "recurrent_command_synapses": self.recurrent_command_synapses,
            "motor_fanin": self.motor_fanin,
            "seed": self.seed,
        }


def auto_ncp_sizes(units: int, output_size: int, sparsity_level: float = 0.5) -> dict[str, int]:
    """Size an NCP from a neuron count and return the keyword arguments of :class:`NCP`.

    With density ``d = 1 - sparsity_level`` and ``n = units - output_size``:

    * command neurons ``c = max(1, round(n / 3))`` and inter neurons ``i = n - c``;
    * ``sensory_fanout = max(1, round(d * i))``;
    * ``inter_fanout = motor_fanin = max(1, round(d * c))``;
    * ``recurrent_command_synapses = max(1, round(2 * d * c))``, that is ``2 d`` incoming
      recurrent synapses per command neuron on average.

    For 19 units with 1 output this gives 12 inter, 6 command and 1 motor neuron, the
    split of the 19-neuron lane-keeping NCP of Lechner et al. (2020).

    Raises:
        ValueError: ``units - output_size < 2`` (no room for inter and command neurons)
            or ``sparsity_level`` outside [0, 1).
    """
    units = _check_int("units", units, 3)
    output_size = _check_int("output_size", output_size, 1)
    density = 1.0 - _check_sparsity(sparsity_level)
    hidden = units - output_size
    if hidden < 2:
        raise ValueError(
            f"AutoNCP needs at least 2 non-motor neurons, got units={units} and "
            f"output_size={output_size}. Use units >= output_size + 2."
        )
    command = max(1, round(hidden / 3))
    inter = hidden - command
    return {
        "inter_neurons": inter,
        "command_neurons": command,
        "motor_neurons": output_size,
        "sensory_fanout": max(1, round(density * inter)),
        "inter_fanout": max(1, round(density * command)),
        "recurrent_command_synapses": max(1, round(2 * density * command)),
        "motor_fanin": max(1, round(density * command)),
    }


class AutoNCP(NCP):
    """NCP sized from a neuron count by the rule of :func:`auto_ncp_sizes`.

    Args:
        units: Total number of neurons, at least ``output_size + 2``.
        output_size: Number of motor neurons.
        sparsity_level: Fraction of the possible synapses between adjacent layers that
            is left out, in [0, 1).
        seed: Seed for every random draw of this wiring.
    """

    kind = "auto_ncp"

    def __init__(
        self,
        units: int,
        output_size: int,
        sparsity_level: float = 0.5,
        seed: int = _DEFAULT_SEED,
    ) -> None:
        self.sparsity_level = float(sparsity_level)
        super().__init__(**auto_ncp_sizes(units, output_size, sparsity_level), seed=seed)

    def _params(self) -> dict[str, Any]:
        return {
            "units": self.units,
            "output_size": self.output_size,
            "sparsity_level": self.sparsity_level,
            "seed": self.seed,
        }


WIRING_KINDS: dict[str, type[Wiring]] = {
    cls.kind: cls for cls in (FullyConnected, Random, NCP, AutoNCP)
}


def wiring_from_dict(data: dict[str, Any]) -> Wiring:
    """Rebuild a wiring from :meth:`Wiring.to_dict` output, matrices included.

    Raises:
        ValueError: unknown kind, missing keys, or matrices of the wrong shape or values.
        TypeError: ``data`` is not a dict.
    """
    if not isinstance(data, dict):
        raise TypeError(f"wiring data must be a dict, got {type(data).__name__}")
    missing = {"kind", "params", "input_size", "adjacency", "sensory_adjacency"} - data.keys()
    if missing:
        raise ValueError(f"wiring data is missing keys {sorted(missing)}")
    kind = data["kind"]
    if kind not in WIRING_KINDS:
        raise ValueError(f"unknown wiring kind {kind!r}. Valid kinds: {sorted(WIRING_KINDS)}")
    params = data["params"]
    if not isinstance(params, dict):
        raise TypeError(f"wiring params must be a dict, got {type(params).__name__}")
    try:
        wiring = WIRING_KINDS[kind](**params)
    except TypeError as error:
        raise ValueError(f"invalid params {params} for wiring kind {kind!r}: {error}") from error

    shape = (wiring.units, wiring.units)
    wiring.adjacency = _check_polarity_matrix("adjacency", data["adjacency"], shape)
    if data["input_size"] is not None:
        input_size = _check_int("input_size", data["input_size"], 1)
        if data["sensory_adjacency"] is None:
            raise ValueError("wiring data has an input_size but no sensory_adjacency")
        wiring.input_size = input_size
        wiring.sensory_adjacency = _check_polarity_matrix(
            "sensory_adjacency", data["sensory_adjacency"], (input_size, wiring.units)
        )
    elif data["sensory_adjacency"] is not None:
        raise ValueError("wiring data has a sensory_adjacency but input_size is None")
    return wiring
