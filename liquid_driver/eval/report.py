"""Tables (CSV and Markdown) and plots of an evaluation's runs.

The CSV and summary.json always carry each run's lighting preset. The Markdown
tables and the plot legend name the lighting only when some run used a preset
other than "default", so a default-only evaluation reads as before.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from liquid_driver.eval.core import RunResult

__all__ = ["CSV_COLUMNS", "markdown_table", "plot_results", "write_report"]

logger = logging.getLogger(__name__)

CSV_COLUMNS = (
    "layout",
    "seed",
    "noise_variance",
    "lighting",
    "laps_requested",
    "laps_completed",
    "laps_driven",
    "completed",
    "sim_time",
    "distance",
    "mean_abs_cross_track_error",
    "max_abs_cross_track_error",
    "off_track_events",
    "interventions",
    "interventions_per_km",
    "invalid_outputs",
    "frames",
    "wall_time",
)

RESULTS_CSV = "results.csv"
RESULTS_MARKDOWN = "results.md"
RESULTS_PLOT = "results.png"
SUMMARY_JSON = "summary.json"


def write_csv(path: Path, results: Sequence[RunResult]) -> None:
    """Write one row per run with the figures in SI units (m, s)."""
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for result in results:
            row = result.to_row()
            writer.writerow({key: row[key] for key in CSV_COLUMNS})


def _shows_lighting(results: Sequence[RunResult]) -> bool:
    """Return True when some run used a preset other than "default", so tables need a lighting column."""
    return any(result.lighting != "default" for result in results)


def markdown_table(results: Sequence[RunResult]) -> str:
    """Return one Markdown table row per run, cross-track errors in cm."""
    show_lighting = _shows_lighting(results)
    lines = [
        "| layout | visual seed | noise variance | " + ("lighting | " if show_lighting else "")
        + "laps | mean abs CTE (cm) | max abs CTE (cm) | off-track events | interventions | interventions/km |",
        "| --- | ---: | ---: | " + ("--- | " if show_lighting else "")
        + "---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for result in results:
        laps = f"{result.laps_driven:.2f}" if result.completed else f"{result.laps_driven:.2f} (timed out)"
        lighting_cell = f"| {result.lighting} " if show_lighting else ""
        lines.append(
            f"| {result.layout} | {result.seed} | {result.noise_variance:g} {lighting_cell}| {laps} "
            f"| {100.0 * result.mean_abs_cross_track_error:.1f} "
            f"| {100.0 * result.max_abs_cross_track_error:.1f} "
            f"| {result.off_track_events} | {result.interventions} "
            f"| {_format_rate(result.interventions_per_km)} |"
        )
    return "\n".join(lines) + "\n"


def summary_by_noise(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """Aggregate the runs per lighting and noise variance: totals and distance-weighted rates.

    Lightings keep the order of their first run, and variances ascend within each.
    """
    rows = []
    lightings = list(dict.fromkeys(result.lighting for result in results))
    groups = [
        (lighting, variance)
        for lighting in lightings
        for variance in sorted({result.noise_variance for result in results if result.lighting == lighting})
    ]
    for lighting, variance in groups:
        group = [result for result in results if (result.lighting, result.noise_variance) == (lighting, variance)]
        distance = sum(result.distance for result in group)
        frames = sum(result.frames for result in group)
        interventions = sum(result.interventions for result in group)
        rows.append({
            "lighting": lighting,
            "noise_variance": variance,
            "runs": len(group),
            "runs_without_intervention": sum(1 for result in group if result.interventions == 0),
            "distance": distance,
            "mean_abs_cross_track_error": sum(
                result.mean_abs_cross_track_error * result.frames for result in group) / max(frames, 1),
            "max_abs_cross_track_error": max(result.max_abs_cross_track_error for result in group),
            "off_track_events": sum(result.off_track_events for result in group),
            "interventions": interventions,
            "interventions_per_km": interventions / (distance / 1000.0) if distance > 0 else math.nan,
        })
    return rows


def _summary_markdown(rows: Sequence[dict[str, Any]], show_lighting: bool) -> str:
    lines = [
        "| " + ("lighting | " if show_lighting else "") + "noise variance | runs | runs without intervention "
        "| km driven | mean abs CTE (cm) | max abs CTE (cm) | off-track events | interventions/km |",
        "| " + ("--- | " if show_lighting else "") + "---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        lighting_cell = f"| {row['lighting']} " if show_lighting else ""
        lines.append(
            f"{lighting_cell}| {row['noise_variance']:g} | {row['runs']} | {row['runs_without_intervention']} "
            f"| {row['distance'] / 1000.0:.2f} | {100.0 * row['mean_abs_cross_track_error']:.1f} "
            f"| {100.0 * row['max_abs_cross_track_error']:.1f} | {row['off_track_events']} "
            f"| {_format_rate(row['interventions_per_km'])} |"
        )
    return "\n".join(lines) + "\n"


def _format_rate(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.1f}"


def plot_results(path: Path, results: Sequence[RunResult], title: str) -> None:
    """Plot mean |cross-track error| and interventions per km against the noise variance.

    One line per (layout, visual seed, lighting), so held-out layouts, seeds
    and lightings can be compared with each other at every noise level.
    """
    figure = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(figure)
    error_axes, intervention_axes = figure.subplots(1, 2)
    show_lighting = _shows_lighting(results)
    keys = sorted({(result.layout, result.seed, result.lighting) for result in results})
    for layout, seed, lighting in keys:
        runs = sorted(
            (result for result in results
             if (result.layout, result.seed, result.lighting) == (layout, seed, lighting)),
            key=lambda result: result.noise_variance,
        )
        variances = [result.noise_variance for result in runs]
        label = f"{layout}, seed {seed}" + (f", {lighting}" if show_lighting else "")
        error_axes.plot(variances, [100.0 * r.mean_abs_cross_track_error for r in runs], "o-", label=label)
        rates = [r.interventions_per_km if math.isfinite(r.interventions_per_km) else np.nan for r in runs]
        intervention_axes.plot(variances, rates, "o-", label=label)
    error_axes.set_xlabel("image noise variance (pixels in [0, 1])")
    error_axes.set_ylabel("mean |cross-track error| (cm)")
    error_axes.grid(True, alpha=0.3)
    intervention_axes.set_xlabel("image noise variance (pixels in [0, 1])")
    intervention_axes.set_ylabel("interventions per km")
    intervention_axes.grid(True, alpha=0.3)
    intervention_axes.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def write_report(out: Path, results: Sequence[RunResult], metadata: dict[str, Any]) -> dict[str, Path]:
    """Write results.csv, results.md, results.png and summary.json into `out`.

    Returns:
        The written files by kind ("csv", "markdown", "plot", "summary").
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": out / RESULTS_CSV,
        "markdown": out / RESULTS_MARKDOWN,
        "plot": out / RESULTS_PLOT,
        "summary": out / SUMMARY_JSON,
    }
    write_csv(paths["csv"], results)
    by_noise = summary_by_noise(results)
    show_lighting = _shows_lighting(results)
    title = f"Closed-loop evaluation of {metadata.get('model', 'the policy')}"
    document = (
        f"# {title}\n\n"
        f"Command: `{metadata.get('command', '')}`\n\n"
        f"Speed {metadata.get('speed')} m/s, {metadata.get('laps')} laps per run, intervention when "
        f"|cross-track error| exceeds {metadata.get('intervention_limit')} m.\n\n"
        f"## {'Per lighting and noise variance' if show_lighting else 'Per noise variance'}\n\n"
        f"{_summary_markdown(by_noise, show_lighting)}\n"
        "## Per run\n\n"
        f"{markdown_table(results)}"
    )
    paths["markdown"].write_text(document, encoding="utf-8")
    plot_results(paths["plot"], results, title)
    summary = {**metadata, "by_noise": by_noise, "runs": [result.to_row() for result in results]}
    paths["summary"].write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    logger.info("Wrote %s", ", ".join(str(path) for path in paths.values()))
    return paths
