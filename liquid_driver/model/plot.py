"""Draw a wiring as a PNG: layers as columns, polarity as colour, strength as line width.

Given a trained cell, the colours show the learned polarities (see the cells'
``synapse_polarities``) and the widths the learned strengths.

A self-synapse (a neuron that feeds itself, such as a recurrent command synapse from a
neuron to itself) is drawn as a ring on the right of its neuron.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Union

import matplotlib

matplotlib.use("Agg")  # writes files and needs no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyArrowPatch  # noqa: E402
from matplotlib.transforms import offset_copy  # noqa: E402

from .base import WiredCell  # noqa: E402
from .wiring import Wiring  # noqa: E402

logger = logging.getLogger(__name__)

EXCITATORY_COLOR = "tab:green"
INHIBITORY_COLOR = "tab:red"
# Line widths in points for the weakest and strongest synapse.
_MIN_LINE_WIDTH = 0.3
_MAX_LINE_WIDTH = 3.0
# Neuron markers and self-synapse rings, in points. A neuron marker of area 60 pt^2 has
# a radius of about 4 pt, so a ring of 12 pt centred 9 pt to the right touches it.
_NEURON_MARKER_AREA = 60
_SELF_SYNAPSE_RING_SIZE = 12
_SELF_SYNAPSE_OFFSET = 9

PathLike = Union[str, "os.PathLike[str]"]


def _columns(wiring: Wiring) -> list[tuple[str, list[int]]]:
    """Return (name, neurons) per column. Sensory inputs come first, with negative ids."""
    assert wiring.input_size is not None
    columns: list[tuple[str, list[int]]] = [("sensory", [-1 - i for i in range(wiring.input_size)])]
    motor = set(wiring.motor_neurons)
    for layer in wiring.layers:
        neurons = [n for n in range(layer.start, layer.stop) if layer.name == "motor" or n not in motor]
        if neurons:
            columns.append((layer.name, neurons))
    if all(name != "motor" for name, _ in columns):
        columns.append(("motor", sorted(motor)))
    return columns


def _line_widths(strength: np.ndarray, present: np.ndarray) -> np.ndarray:
    if not present.any():
        return np.zeros_like(strength)
    peak = float(strength[present].max())
    relative = strength / peak if peak > 0 else np.ones_like(strength)
    return _MIN_LINE_WIDTH + (_MAX_LINE_WIDTH - _MIN_LINE_WIDTH) * relative


def plot_wiring(wiring_or_cell: Wiring | WiredCell, path: PathLike, title: str | None = None) -> Path:
    """Write a PNG of the wiring to ``path`` and return the path.

    Args:
        wiring_or_cell: A built wiring, or a cell whose learned polarities are drawn as
            colours and learned strengths as line widths. A bare wiring draws its own
            polarities and every synapse with the same width.
        path: Destination PNG file.
        title: Figure title. Defaults to the wiring's repr.
    """
    if isinstance(wiring_or_cell, WiredCell):
        wiring = wiring_or_cell.wiring
        sensory_strength, neuron_strength = (
            tensor.detach().cpu().numpy() for tensor in wiring_or_cell.synapse_strengths()
        )
        sensory_sign, neuron_sign = (
            tensor.detach().cpu().numpy() for tensor in wiring_or_cell.synapse_polarities()
        )
    elif isinstance(wiring_or_cell, Wiring):
        wiring = wiring_or_cell
        wiring.require_built()
        sensory_strength = np.abs(wiring.sensory_adjacency).astype(float)
        neuron_strength = np.abs(wiring.adjacency).astype(float)
        sensory_sign, neuron_sign = wiring.sensory_adjacency, wiring.adjacency
    else:
        raise TypeError(f"expected a Wiring or a WiredCell, got {type(wiring_or_cell).__name__}")
    assert wiring.sensory_adjacency is not None

    columns = _columns(wiring)
    position: dict[int, tuple[float, float]] = {}
    for column_index, (_, neurons) in enumerate(columns):
        for row, neuron in enumerate(neurons):
            # Centre each column vertically on 0.
            position[neuron] = (float(column_index), row - (len(neurons) - 1) / 2.0)

    tallest = max(len(neurons) for _, neurons in columns)
    figure, axes = plt.subplots(figsize=(2.2 * len(columns) + 1.0, 0.28 * tallest + 1.5))
    sensory_widths = _line_widths(sensory_strength, wiring.sensory_adjacency != 0)
    neuron_widths = _line_widths(neuron_strength, wiring.adjacency != 0)

    sources, destinations = np.nonzero(wiring.sensory_adjacency)
    for source, destination in zip(sources, destinations):
        color = EXCITATORY_COLOR if sensory_sign[source, destination] >= 0 else INHIBITORY_COLOR
        (x0, y0), (x1, y1) = position[-1 - int(source)], position[int(destination)]
        axes.plot([x0, x1], [y0, y1], color=color, alpha=0.5, lw=sensory_widths[source, destination])

    ring_offset = offset_copy(axes.transData, figure, x=_SELF_SYNAPSE_OFFSET, units="points")
    sources, destinations = np.nonzero(wiring.adjacency)
    for source, destination in zip(sources, destinations):
        color = EXCITATORY_COLOR if neuron_sign[source, destination] >= 0 else INHIBITORY_COLOR
        start, end = position[int(source)], position[int(destination)]
        width = neuron_widths[source, destination]
        if source == destination:
            axes.plot(
                [start[0]], [start[1]], marker="o", markersize=_SELF_SYNAPSE_RING_SIZE,
                markerfacecolor="none", markeredgecolor=color, markeredgewidth=max(width, 1.0),
                transform=ring_offset, zorder=2, linestyle="none",
            )
            continue
        # Synapses within a column (recurrent command synapses) bend to stay visible.
        bend = 0.4 if start[0] == end[0] else 0.0
        arrow = FancyArrowPatch(
            start, end, connectionstyle=f"arc3,rad={bend}", color=color, lw=width,
            arrowstyle="-|>", mutation_scale=8, alpha=0.8,
        )
        axes.add_patch(arrow)

    for column_index, (name, neurons) in enumerate(columns):
        xs = [position[n][0] for n in neurons]
        ys = [position[n][1] for n in neurons]
        axes.scatter(xs, ys, s=_NEURON_MARKER_AREA, color="white", edgecolors="black", zorder=3)
        axes.text(column_index, (tallest - 1) / 2.0 + 1.0, f"{name} ({len(neurons)})", ha="center")

    axes.plot([], [], color=EXCITATORY_COLOR, label="excitatory")
    axes.plot([], [], color=INHIBITORY_COLOR, label="inhibitory")
    if np.diagonal(wiring.adjacency).any():
        axes.plot(
            [], [], marker="o", markersize=8, markerfacecolor="none", markeredgecolor="black",
            linestyle="none", label="self-synapse",
        )
    axes.legend(loc="lower right", fontsize="small")
    axes.set_title(title if title is not None else repr(wiring), fontsize="small")
    axes.set_xlim(-0.5, len(columns) - 0.5)
    axes.set_ylim(-(tallest - 1) / 2.0 - 1.0, (tallest - 1) / 2.0 + 1.6)
    axes.axis("off")

    path = Path(path)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    logger.info("wrote wiring plot %s", path)
    return path
