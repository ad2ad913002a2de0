"""Lane-keeping statistics over a drive, shared by the simulator node, the demo and tests."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class DriveSummary:
    """Lane-keeping figures of one drive."""

    laps: int
    sim_time: float  # s
    distance: float  # m
    mean_abs_cross_track_error: float  # m
    max_abs_cross_track_error: float  # m
    off_track_events: int
    samples: int

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        """Return the summary as one human-readable line."""
        return (
            f"laps={self.laps} time={self.sim_time:.1f}s distance={self.distance:.1f}m "
            f"mean|cte|={self.mean_abs_cross_track_error:.3f}m "
            f"max|cte|={self.max_abs_cross_track_error:.3f}m "
            f"off_track_events={self.off_track_events}"
        )


@dataclass
class DriveStats:
    """Accumulate cross-track error, laps and off-track events sample by sample.

    Feed it the simulator's cumulative lane state once per control period; it
    keeps running sums, so memory stays constant over long drives.
    """

    _abs_cte_sum: float = 0.0
    _abs_cte_max: float = 0.0
    _samples: int = 0
    _laps: int = 0
    _off_track_events: int = 0
    _distance: float = 0.0
    _sim_time: float = 0.0
    _lap_start: dict = field(default_factory=dict)

    def add(
        self,
        sim_time: float,
        cross_track_error: float,
        lap_count: int,
        off_track_events: int,
        distance: float,
    ) -> None:
        """Add one sample of the simulator's lane state (cumulative counters)."""
        if not math.isfinite(cross_track_error):
            raise ValueError(
                f"cross_track_error={cross_track_error!r} is not finite; "
                "the simulator state is invalid, reset it before adding samples"
            )
        abs_cte = abs(float(cross_track_error))
        self._abs_cte_sum += abs_cte
        self._abs_cte_max = max(self._abs_cte_max, abs_cte)
        self._samples += 1
        self._laps = int(lap_count)
        self._off_track_events = int(off_track_events)
        self._distance = float(distance)
        self._sim_time = float(sim_time)

    def summary(self) -> DriveSummary:
        mean = self._abs_cte_sum / self._samples if self._samples else float("nan")
        return DriveSummary(
            laps=self._laps,
            sim_time=self._sim_time,
            distance=self._distance,
            mean_abs_cross_track_error=mean,
            max_abs_cross_track_error=self._abs_cte_max,
            off_track_events=self._off_track_events,
            samples=self._samples,
        )


def percentile_ms(samples_s, q: float) -> float:
    """Return the q-th percentile of durations in seconds, in milliseconds (NaN if empty)."""
    if len(samples_s) == 0:
        return float("nan")
    return float(np.percentile(np.asarray(samples_s, dtype=np.float64), q) * 1e3)
