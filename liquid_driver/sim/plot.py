"""Top-down plot of a track with a driven path, saved as PNG."""

from __future__ import annotations

import logging
import os
from typing import Mapping, Optional, Sequence, Union

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from liquid_driver.sim.track import Track

logger = logging.getLogger(__name__)

_ROAD_COLOUR = "0.55"
_LINE_COLOUR = "white"
_LANE_COLOUR = "tab:blue"
_PATH_COLOUR = "tab:orange"
_OFF_TRACK_COLOUR = "tab:red"
_MARKER_STYLES = ("o", "s", "^", "D", "v", "P", "X")


def off_track_mask(track: Track, path_xy: np.ndarray, lane: str = "right") -> np.ndarray:
    """Flag the path points whose distance from the lane centre exceeds half a lane.

    Args:
        track: Track the path was driven on.
        path_xy: Path points, shape (K, 2), m.
        lane: Driving lane, "right" or "left".

    Returns:
        Boolean array of shape (K,).
    """
    lane_offset = track.lane_offset(lane)
    mask = np.zeros(len(path_xy), dtype=bool)
    hint: Optional[int] = None
    for k, (x, y) in enumerate(path_xy):
        projection = track.project(float(x), float(y), hint)
        hint = projection.index
        mask[k] = abs(projection.lateral - lane_offset) > 0.5 * track.lane_width
    return mask


Markers = Union[Mapping[str, Sequence[float]], Sequence[Sequence[float]]]


def plot_drive(
    track: Track,
    path_xy: Sequence[Sequence[float]],
    out_png: Union[str, "os.PathLike[str]"],
    title: Optional[str] = None,
    markers: Optional[Markers] = None,
    lane: str = "right",
) -> Union[str, "os.PathLike[str]"]:
    """Draw the track and a driven path over it and save the figure as PNG.

    Args:
        track: Track to draw: road, solid edges, dashed centre line and the
            driving lane's centre.
        path_xy: Driven path, shape (K, 2), m; may be empty.
        out_png: Output file; missing parent folders are created.
        title: Figure title; defaults to the track name.
        markers: Points to mark, m: either a mapping from a legend label to
            one (x, y) pair or an array of shape (M, 2), for example
            ``{"start": (x0, y0)}``, or a plain sequence of (x, y) pairs,
            labelled "marked points".
        lane: Driving lane used to flag off-track path points.

    Returns:
        The path of the written PNG.
    """
    path = np.asarray(path_xy, dtype=float).reshape(-1, 2)  # (K, 2)
    figure = Figure(figsize=(7.0, 7.0), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    axes.set_facecolor("#d9ead3")

    def closed(line: np.ndarray) -> np.ndarray:
        return np.vstack([line, line[:1]])  # (N + 1, 2) repeats the first point

    outer = closed(track.offset_line(track.road_half_width))
    inner = closed(track.offset_line(-track.road_half_width))
    road = np.vstack([outer, inner[::-1]])  # Ring polygon, traced out and back.
    axes.fill(road[:, 0], road[:, 1], color=_ROAD_COLOUR, linewidth=0.0)
    for side in (1.0, -1.0):
        edge = closed(track.offset_line(side * track.lane_width))
        axes.plot(edge[:, 0], edge[:, 1], color=_LINE_COLOUR, linewidth=1.5)
    centre = closed(track.points)
    axes.plot(centre[:, 0], centre[:, 1], color=_LINE_COLOUR, linewidth=1.0, linestyle=(0, (4, 4)))
    lane_centre = closed(track.lane_centre(lane))
    axes.plot(
        lane_centre[:, 0], lane_centre[:, 1], color=_LANE_COLOUR, linewidth=0.8,
        linestyle=":", label=f"{lane} lane centre",
    )
    start_x, start_y, _ = track.pose_at(0.0)
    axes.plot([start_x], [start_y], marker="|", markersize=14, color="black", label="start line")

    if len(path) > 0:
        axes.plot(path[:, 0], path[:, 1], color=_PATH_COLOUR, linewidth=1.2, label="driven path")
        off_track = off_track_mask(track, path, lane)
        if np.any(off_track):
            axes.scatter(
                path[off_track, 0], path[off_track, 1], s=8, color=_OFF_TRACK_COLOUR,
                zorder=3, label=f"off track ({int(np.sum(off_track))} points)",
            )

    if markers is None:
        labelled: Mapping[str, Sequence[float]] = {}
    elif isinstance(markers, Mapping):
        labelled = markers
    else:
        labelled = {"marked points": markers} if len(markers) > 0 else {}
    for k, (label, value) in enumerate(labelled.items()):
        points = np.asarray(value, dtype=float).reshape(-1, 2)  # (M, 2)
        axes.scatter(
            points[:, 0], points[:, 1], marker=_MARKER_STYLES[k % len(_MARKER_STYLES)],
            s=40, zorder=4, label=label,
        )

    axes.set_aspect("equal")
    axes.set_xlabel("x (m)")
    axes.set_ylabel("y (m)")
    axes.set_title(title if title is not None else f"track {track.name}")
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize="small")
    figure.tight_layout()
    directory = os.path.dirname(os.path.abspath(out_png))
    os.makedirs(directory, exist_ok=True)
    figure.savefig(out_png)
    logger.info("Saved drive plot of track %r to %s", track.name, out_png)
    return out_png
