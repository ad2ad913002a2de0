"""Summary of a dataset load: what was read, used, skipped and why."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BagSummary", "DatasetReport", "describe_values"]

# Histogram edges for curvature (1/m). A 1:10 car turns on radii from about
# 0.5 m up, so |curvature| stays below about 2 1/m, and the outer bins catch the rest.
_CURVATURE_BIN_EDGES = (-np.inf, -2.0, -1.5, -1.0, -0.6, -0.3, -0.1, 0.1, 0.3, 0.6, 1.0, 1.5, 2.0, np.inf)

# |curvature| below this (1/m) counts as driving straight in the left/straight/right
# fractions. It is a radius of 10 m, which is straight at this scale.
_STRAIGHT_CURVATURE = 0.1


def describe_values(values: np.ndarray) -> dict[str, float]:
    """Return min, max, mean, std and the 5/50/95th percentiles of a 1-D array.

    An empty array gives an empty dict.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {}
    p5, p50, p95 = np.percentile(values, [5.0, 50.0, 95.0])
    return {
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std()),
        "p5": float(p5),
        "p50": float(p50),
        "p95": float(p95),
    }


@dataclass
class BagSummary:
    """Per-bag part of a `DatasetReport`."""

    path: str
    image_topic: str
    image_type: str
    command_topic: str
    command_type: str
    # None when the bag has no mode topic (or modes are ignored), so every frame is used.
    mode_topic: str | None
    frames_read: int = 0
    frames_used: int = 0
    # "header" when dt comes from the image header stamps, "log" when from receive times.
    time_source: str = "header"
    # Median period between consecutive camera frames, in seconds.
    frame_period: float | None = None
    episodes: int = 0


@dataclass
class DatasetReport:
    """Counts and distributions of one dataset load, for logs and `dataset_report.json`."""

    bags: list[BagSummary] = field(default_factory=list)
    frames_read: int = 0
    frames_used: int = 0
    # Skipped frames per reason; see `liquid_driver.data.dataset.SkipReason`.
    skipped: dict[str, int] = field(default_factory=dict)
    # Frames dropped because of their driving mode, per mode.
    skipped_modes: dict[str, int] = field(default_factory=dict)
    # Frames logged before the first mode message of a bag that has a mode topic.
    # They are treated like frames of a bag without modes.
    frames_before_first_mode: int = 0
    # Episode boundaries inside a bag, per reason ("gap" or "stamp_backwards").
    splits: dict[str, int] = field(default_factory=dict)
    # Maximum gap between consecutive used frames that split an episode, in seconds.
    max_gap: float = 0.0
    episode_lengths: list[int] = field(default_factory=list)
    # Distributions of the used frames. Curvature in 1/m, speed in m/s, dt in s.
    curvature: dict[str, float] = field(default_factory=dict)
    curvature_histogram: dict[str, list[float]] = field(default_factory=dict)
    # Fractions of used frames turning left (curvature > 0.1 1/m), right, or straight.
    turn_fractions: dict[str, float] = field(default_factory=dict)
    speed: dict[str, float] = field(default_factory=dict)
    dt: dict[str, float] = field(default_factory=dict)
    # Median frame rate of the used frames, in Hz.
    frame_rate: float | None = None

    def count_skip(self, reason: str, count: int = 1) -> None:
        """Add `count` skipped frames under `reason`."""
        if count:
            self.skipped[reason] = self.skipped.get(reason, 0) + count

    def count_split(self, reason: str, gap: float) -> None:
        """Record an episode split with its gap in seconds."""
        self.splits[reason] = self.splits.get(reason, 0) + 1
        self.max_gap = max(self.max_gap, abs(gap))

    def set_distributions(self, curvature: np.ndarray, speed: np.ndarray, dt: np.ndarray) -> None:
        """Fill the distribution fields from the used frames of all episodes."""
        self.curvature = describe_values(curvature)
        self.speed = describe_values(speed)
        self.dt = describe_values(dt)
        if curvature.size:
            counts, _ = np.histogram(curvature, bins=np.asarray(_CURVATURE_BIN_EDGES))
            edges = [float(edge) for edge in _CURVATURE_BIN_EDGES]
            self.curvature_histogram = {"edges": edges, "counts": counts.tolist()}
            self.turn_fractions = {
                "left": float(np.mean(curvature > _STRAIGHT_CURVATURE)),
                "straight": float(np.mean(np.abs(curvature) <= _STRAIGHT_CURVATURE)),
                "right": float(np.mean(curvature < -_STRAIGHT_CURVATURE)),
            }
        if dt.size:
            median_dt = float(np.median(dt))
            self.frame_rate = 1.0 / median_dt if median_dt > 0 else None

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-compatible dict (infinite edges become strings)."""
        values = dataclasses.asdict(self)
        edges = values["curvature_histogram"].get("edges")
        if edges:
            values["curvature_histogram"]["edges"] = [_json_number(edge) for edge in edges]
        return values

    def save_json(self, path: str | Path) -> None:
        """Write the report to `path` as indented JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    def log_summary(self, log: logging.Logger) -> None:
        """Log a few lines that summarise the load at INFO level."""
        log.info(
            "Dataset: %d bags, %d frames read, %d used in %d episodes (lengths %s)",
            len(self.bags),
            self.frames_read,
            self.frames_used,
            len(self.episode_lengths),
            _describe_lengths(self.episode_lengths),
        )
        if self.skipped:
            log.info("Skipped frames: %s (modes: %s)", self.skipped, self.skipped_modes)
        if self.splits:
            log.info("Episode splits inside bags: %s, max gap %.3f s", self.splits, self.max_gap)
        if self.curvature:
            log.info(
                "Curvature 1/m: mean %.3f, std %.3f, range [%.3f, %.3f]; turning left %.0f %%, "
                "straight %.0f %%, right %.0f %%",
                self.curvature["mean"],
                self.curvature["std"],
                self.curvature["min"],
                self.curvature["max"],
                100.0 * self.turn_fractions.get("left", 0.0),
                100.0 * self.turn_fractions.get("straight", 0.0),
                100.0 * self.turn_fractions.get("right", 0.0),
            )
        if self.speed and self.frame_rate:
            log.info(
                "Speed m/s: mean %.2f, range [%.2f, %.2f]; frame rate %.1f Hz",
                self.speed["mean"],
                self.speed["min"],
                self.speed["max"],
                self.frame_rate,
            )


def _json_number(value: float) -> float | str:
    """Return `value`, or "inf" / "-inf" for infinities, which JSON cannot represent."""
    if np.isfinite(value):
        return value
    return "-inf" if value < 0 else "inf"


def _describe_lengths(lengths: list[int]) -> str:
    if not lengths:
        return "none"
    return f"min {min(lengths)}, median {int(np.median(lengths))}, max {max(lengths)}"
