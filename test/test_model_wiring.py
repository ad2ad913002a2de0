"""Tests of the synapse wirings: structure, seeding, validation and dict round-trips."""

import json

import numpy as np
import pytest

from liquid_driver.model import NCP, AutoNCP, FullyConnected, Random, auto_ncp_sizes, wiring_from_dict


def _built(wiring, input_size=32):
    wiring.build(input_size)
    return wiring


def _all_kinds():
    return [
        _built(FullyConnected(7, 2, seed=3), 5),
        _built(Random(9, 1, sparsity=0.6, seed=4), 6),
        _built(NCP(5, 4, 2, sensory_fanout=3, inter_fanout=2, recurrent_command_synapses=5, motor_fanin=2, seed=5), 8),
        _built(AutoNCP(19, 1, sparsity_level=0.5, seed=6), 32),
    ]


def test_auto_ncp_split_for_19_units():
    sizes = auto_ncp_sizes(19, 1, 0.5)
    assert sizes["inter_neurons"] == 12
    assert sizes["command_neurons"] == 6
    assert sizes["motor_neurons"] == 1
    wiring = AutoNCP(19, 1)
    assert [(layer.name, layer.size) for layer in wiring.layers] == [("inter", 12), ("command", 6), ("motor", 1)]
    assert list(wiring.motor_neurons) == [18]


def test_ncp_synapses_follow_layers():
    wiring = _built(AutoNCP(19, 1, sparsity_level=0.5, seed=1))
    inter, command, motor = wiring.layers
    adjacency = wiring.adjacency != 0
    sensory = wiring.sensory_adjacency != 0

    # Sensory inputs reach only inter neurons, and every inter neuron gets an input.
    assert not sensory[:, inter.stop :].any()
    assert sensory[:, inter.start : inter.stop].any(axis=0).all()
    assert (sensory.sum(axis=1) >= wiring.sensory_fanout).all()

    allowed = np.zeros_like(adjacency)
    allowed[inter.start : inter.stop, command.start : command.stop] = True
    allowed[command.start : command.stop, command.start : command.stop] = True
    allowed[command.start : command.stop, motor.start : motor.stop] = True
    assert not (adjacency & ~allowed).any()

    inter_to_command = adjacency[inter.start : inter.stop, command.start : command.stop]
    assert (inter_to_command.sum(axis=1) == wiring.inter_fanout).all()
    assert inter_to_command.any(axis=0).all()
    command_to_motor = adjacency[command.start : command.stop, motor.start : motor.stop]
    assert (command_to_motor.sum(axis=0) >= wiring.motor_fanin).all()
    assert command_to_motor.any(axis=1).all()


def test_ncp_recurrent_command_synapse_count():
    wiring = NCP(6, 5, 1, sensory_fanout=2, inter_fanout=2, recurrent_command_synapses=7, motor_fanin=2)
    command = wiring.layers[1]
    recurrent = wiring.adjacency[command.start : command.stop, command.start : command.stop]
    assert np.count_nonzero(recurrent) == 7


def test_polarity_entries_are_signs():
    for wiring in _all_kinds():
        assert set(np.unique(wiring.adjacency)) <= {-1, 0, 1}
        assert set(np.unique(wiring.sensory_adjacency)) <= {-1, 0, 1}
        assert (wiring.adjacency == 1).any()
        assert (wiring.adjacency == -1).any()


def test_synapse_counts():
    wiring = _built(FullyConnected(4, 1), 3)
    assert wiring.synapse_count == 16
    assert wiring.sensory_synapse_count == 12
    unbuilt = AutoNCP(19, 1)
    assert unbuilt.sensory_synapse_count == 0
    assert unbuilt.synapse_count == np.count_nonzero(unbuilt.adjacency)


def test_random_wiring_density_and_inputs():
    wiring = _built(Random(40, 2, sparsity=0.75, seed=0), 20)
    density = np.count_nonzero(wiring.adjacency) / wiring.adjacency.size
    assert 0.15 < density < 0.35
    has_input = (wiring.adjacency != 0).any(axis=0) | (wiring.sensory_adjacency != 0).any(axis=0)
    assert has_input.all()


def test_seed_determines_wiring():
    first = _built(AutoNCP(19, 1, seed=7))
    second = _built(AutoNCP(19, 1, seed=7))
    other = _built(AutoNCP(19, 1, seed=8))
    assert first == second
    assert first != other


def test_build_order_keeps_neuron_synapses():
    unbuilt = AutoNCP(19, 1, seed=9)
    before = unbuilt.adjacency.copy()
    unbuilt.build(10)
    assert np.array_equal(before, unbuilt.adjacency)


@pytest.mark.parametrize("index", range(4))
def test_dict_round_trip_exact(index):
    wiring = _all_kinds()[index]
    data = wiring.to_dict()
    rebuilt = wiring_from_dict(json.loads(json.dumps(data)))
    assert type(rebuilt) is type(wiring)
    assert rebuilt.to_dict() == data
    assert np.array_equal(rebuilt.adjacency, wiring.adjacency)
    assert np.array_equal(rebuilt.sensory_adjacency, wiring.sensory_adjacency)
    assert rebuilt.seed == wiring.seed
    assert rebuilt.layers == wiring.layers


def test_dict_round_trip_keeps_stored_masks():
    wiring = _built(AutoNCP(19, 1, seed=2))
    data = wiring.to_dict()
    # A hand-edited synapse must survive, proving the matrices are not re-drawn.
    data["adjacency"][0][0] = -1
    rebuilt = wiring_from_dict(data)
    assert rebuilt.adjacency[0, 0] == -1


def test_dict_round_trip_unbuilt():
    wiring = AutoNCP(10, 2, seed=1)
    rebuilt = wiring_from_dict(wiring.to_dict())
    assert not rebuilt.is_built
    assert np.array_equal(rebuilt.adjacency, wiring.adjacency)


def test_rebuild_with_other_size_raises():
    wiring = _built(AutoNCP(19, 1), 32)
    wiring.build(32)
    with pytest.raises(ValueError, match="already built for input_size=32"):
        wiring.build(16)


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: AutoNCP(19, 18), "at least 2 non-motor"),
        (lambda: AutoNCP(19, 1, sparsity_level=1.0), "sparsity"),
        (lambda: AutoNCP(19, 1, sparsity_level=-0.1), "sparsity"),
        (lambda: Random(5, 1, sparsity=1.5), "sparsity"),
        (lambda: FullyConnected(0, 1), "units"),
        (lambda: FullyConnected(3, 4), "output_size"),
        (lambda: NCP(3, 2, 1, 4, 1, 1, 1), "sensory_fanout"),
        (lambda: NCP(3, 2, 1, 1, 3, 1, 1), "inter_fanout"),
        (lambda: NCP(3, 2, 1, 1, 1, 5, 1), "recurrent_command_synapses"),
        (lambda: NCP(3, 2, 1, 1, 1, 1, 3), "motor_fanin"),
    ],
)
def test_invalid_parameters_raise(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.update(kind="hexagonal"), "unknown wiring kind"),
        (lambda d: d.pop("adjacency"), "missing keys"),
        (lambda d: d["adjacency"].pop(), "shape"),
        (lambda d: d["adjacency"][0].__setitem__(0, 2), "entries must be -1, 0 or"),
        (lambda d: d["params"].update(colour="blue"), "invalid params"),
        (lambda d: d.update(sensory_adjacency=None), "no sensory_adjacency"),
    ],
)
def test_bad_wiring_dict_raises(edit, match):
    data = _built(AutoNCP(8, 1), 4).to_dict()
    edit(data)
    with pytest.raises(ValueError, match=match):
        wiring_from_dict(data)


def test_unbuilt_wiring_rejected_by_cell():
    from liquid_driver.model import CfCCell

    with pytest.raises(ValueError, match="not built"):
        CfCCell(AutoNCP(19, 1))
