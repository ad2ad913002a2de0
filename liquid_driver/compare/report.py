"""Tables, verdicts and plots of a comparison, written as Markdown, CSV and PNG.

Every figure is computed per trained model first (one model is one variant and
one seed), then summarised over the seeds as mean and standard deviation. The
spread shows how much a result depends on the seed, which draws the wiring,
the initial weights, the data order and the augmentation.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from liquid_driver.compare.run import CompareSettings, ModelRecord
from liquid_driver.compare.variants import REFERENCE, Variant, variant_by_name

# The NCPs whose wins and losses against every other model the report lists.
NCP_REFERENCES = (REFERENCE, "ncp_ltc")

__all__ = ["Column", "Summary", "condition_columns", "summarise", "verdict", "write_outputs"]


@dataclass(frozen=True)
class Column:
    """One closed-loop condition as a table column: a layout group under one noise level or lighting."""

    group: str  # "train" or "held_out"
    noise_variance: float
    lighting: str

    @property
    def label(self) -> str:
        if self.lighting != "default":
            return self.lighting
        return "clean" if self.noise_variance == 0.0 else f"noise {self.noise_variance:g}"

    def matches(self, run: dict[str, Any]) -> bool:
        return (
            run["group"] == self.group
            and run.get("lighting", "default") == self.lighting
            and math.isclose(run["noise_variance"], self.noise_variance)
        )


@dataclass
class Summary:
    """Mean and sample standard deviation over seeds of one figure of one variant."""

    values: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0

    def text(self, digits: int) -> str:
        if not self.values:
            return "n/a"
        if len(self.values) == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def condition_columns(settings: CompareSettings, group: str) -> list[Column]:
    """Return the columns of one layout group, in the order the settings list them."""
    columns = [Column(group, float(variance), "default") for variance in settings.noise_variances]
    columns += [Column(group, 0.0, lighting) for lighting in settings.lightings]
    return columns


# Closed-loop figures of one model under one column, from its runs (one per layout).
def _interventions_per_km(runs: list[dict[str, Any]]) -> float:
    distance = sum(run["distance"] for run in runs)
    return 1000.0 * sum(run["interventions"] for run in runs) / distance if distance > 0 else math.nan


def _mean_cte_cm(runs: list[dict[str, Any]]) -> float:
    return 100.0 * float(np.mean([run["mean_abs_cross_track_error"] for run in runs]))


def _clean_lap_percent(runs: list[dict[str, Any]]) -> float:
    clean = [run["completed"] and run["interventions"] == 0 for run in runs]
    return 100.0 * float(np.mean(clean))


CLOSED_LOOP_METRICS: dict[str, tuple[str, Callable[[list[dict[str, Any]]], float], int, bool]] = {
    # name: (title, figure of one model, digits, lower is better)
    "interventions_per_km": ("Interventions per km", _interventions_per_km, 1, True),
    "mean_cte_cm": ("Mean absolute cross-track error, cm", _mean_cte_cm, 1, True),
    "clean_laps": ("Laps completed without intervention, %", _clean_lap_percent, 0, False),
}


def summarise(records: Sequence[ModelRecord], variant: str, figure: Callable[[ModelRecord], float | None]) -> Summary:
    """Collect ``figure`` over the seeds of ``variant``, leaving out failed or missing models."""
    values = []
    for record in records:
        if record.variant != variant:
            continue
        value = figure(record)
        if value is not None and math.isfinite(value):
            values.append(float(value))
    return Summary(values)


def closed_loop_figure(metric: str, column: Column) -> Callable[[ModelRecord], float | None]:
    """Return a function of one model that computes ``metric`` over its runs in ``column``."""
    compute = CLOSED_LOOP_METRICS[metric][1]

    def figure(record: ModelRecord) -> float | None:
        if record.evaluation is None:
            return None
        runs = [run for run in record.evaluation["runs"] if column.matches(run)]
        return compute(runs) if runs else None

    return figure


def training_figure(key: str) -> Callable[[ModelRecord], float | None]:
    """Return a function of one model that reads ``key`` from its training record."""

    def figure(record: ModelRecord) -> float | None:
        return None if record.training is None else record.training.get(key)

    return figure


def verdict(reference: Summary, other: Summary, lower_is_better: bool) -> str:
    """Return "win", "tie" or "loss" for the reference against another variant.

    The reference wins when its mean is better and the difference exceeds twice
    the standard error of the difference of the means over seeds, loses in the
    mirrored case, and ties otherwise. With fewer than two seeds on either side
    there is no spread to compare with, so the verdict is "n/a".
    """
    if len(reference.values) < 2 or len(other.values) < 2:
        return "n/a"
    difference = reference.mean - other.mean
    if not lower_is_better:
        difference = -difference
    error = math.sqrt(reference.std**2 / len(reference.values) + other.std**2 / len(other.values))
    if abs(difference) <= 2.0 * error or math.isclose(reference.mean, other.mean, abs_tol=1e-9):
        return "tie"
    return "win" if difference < 0 else "loss"


def _count(number: int, noun: str) -> str:
    """Return "1 epoch" or "8 epochs"."""
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cells(values: Sequence[str]) -> str:
        return "| " + " | ".join(value.replace("|", "\\|") for value in values) + " |"

    return [cells(header), "|" + "|".join(" --- " for _ in header) + "|", *(cells(row) for row in rows)]


def _variants(records: Sequence[ModelRecord]) -> list[Variant]:
    names: list[str] = []
    for record in records:
        if record.variant not in names:
            names.append(record.variant)
    return [variant_by_name(name) for name in names]


def models_table(records: Sequence[ModelRecord]) -> list[str]:
    """Return the Markdown table of sizes, training time and validation error."""
    header = ["Model", "Neurons or units", "Controller parameters (effective, mean over seeds)",
              "Synapses (sensory), mean over seeds",
              "Whole model parameters", "Training time, s", "Validation MAE, 1/m", "Models"]
    rows = []
    for variant in _variants(records):
        trained = [record.training for record in records if record.variant == variant.name and record.training]
        if not trained:
            rows.append([variant.label, "", "", "", "", "n/a", "n/a", "0"])
            continue
        first = trained[0]
        if variant.controller.get("cell") == "feedforward":
            units = "no state"
        else:
            units = str(variant.controller.get("units", ""))
        effective = summarise(records, variant.name, training_figure("controller_effective_parameters"))
        synapses = summarise(records, variant.name, training_figure("synapses"))
        sensory = summarise(records, variant.name, training_figure("sensory_synapses"))
        rows.append([
            variant.label,
            units,
            f"{first['controller_parameters']:,} ({effective.mean:,.0f})",
            f"{synapses.mean:.0f} ({sensory.mean:.0f})" if variant.is_liquid else "dense",
            f"{first['model_parameters']:,}",
            summarise(records, variant.name, training_figure("seconds")).text(0),
            summarise(records, variant.name, training_figure("val_mae")).text(4),
            str(len(trained)),
        ])
    return _markdown_table(header, rows)


def closed_loop_table(records: Sequence[ModelRecord], settings: CompareSettings, group: str, metric: str) -> list[str]:
    """Return the Markdown table of one metric over the columns of one layout group."""
    columns = condition_columns(settings, group)
    digits = CLOSED_LOOP_METRICS[metric][2]
    rows = []
    for variant in _variants(records):
        rows.append([variant.label] + [
            summarise(records, variant.name, closed_loop_figure(metric, column)).text(digits) for column in columns
        ])
    return _markdown_table(["Model"] + [column.label for column in columns], rows)


def glance_table(records: Sequence[ModelRecord], settings: CompareSettings) -> list[str]:
    """Return a table ranking the variants by interventions per km over every held-out condition.

    A model's figure is the mean of its interventions per km over the held-out
    columns (every noise level and lighting), so one number sums up its robustness.
    """
    group = "held_out" if settings.held_out_layouts else "train"
    columns = condition_columns(settings, group)

    def overall(record: ModelRecord) -> float | None:
        values = [closed_loop_figure("interventions_per_km", column)(record) for column in columns]
        finite = [value for value in values if value is not None and math.isfinite(value)]
        return float(np.mean(finite)) if len(finite) == len(columns) else None

    rows = []
    for variant in _variants(records):
        robustness = summarise(records, variant.name, overall)
        size = summarise(records, variant.name, training_figure("controller_effective_parameters"))
        error = summarise(records, variant.name, training_figure("val_mae"))
        rows.append((robustness.mean if robustness.values else math.inf, [
            variant.label, f"{size.mean:,.0f}" if size.values else "n/a", error.text(4), robustness.text(1),
        ]))
    rows.sort(key=lambda item: item[0])
    where = "held-out" if group == "held_out" else "training"
    header = ["Model", "Effective controller parameters", "Validation MAE, 1/m",
              f"Interventions per km, mean over all {where} conditions"]
    return _markdown_table(header, [row for _, row in rows])


def verdict_rows(
    records: Sequence[ModelRecord], settings: CompareSettings, reference_name: str = REFERENCE
) -> tuple[list[str], list[list[str]]]:
    """Return the header and rows of the verdict table: ``reference_name`` against each other variant."""
    checks: list[tuple[str, Callable[[ModelRecord], float | None], bool]] = [
        ("validation MAE", training_figure("val_mae"), True),
    ]
    for group in ("train", "held_out"):
        if not getattr(settings, f"{group}_layouts"):
            continue
        prefix = "training layouts" if group == "train" else "held-out layouts"
        for column in condition_columns(settings, group):
            checks.append((f"{prefix}, {column.label}: interventions/km",
                           closed_loop_figure("interventions_per_km", column), True))
        clean = Column(group, 0.0, "default")
        if 0.0 in settings.noise_variances:
            checks.append((f"{prefix}, clean: mean cross-track error", closed_loop_figure("mean_cte_cm", clean), True))
    others = [variant for variant in _variants(records) if variant.name != reference_name]
    header = ["Check"] + [variant.label for variant in others]
    rows = []
    for name, figure, lower in checks:
        reference = summarise(records, reference_name, figure)
        row = [name]
        for variant in others:
            if variant.name != reference_name:
                row.append(verdict(reference, summarise(records, variant.name, figure), lower))
        rows.append(row)
    return header, rows


def verdict_sentences(reference_label: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Return one plain sentence per other variant counting the reference's wins, ties and losses."""
    sentences = []
    for index, label in enumerate(header[1:], start=1):
        outcomes = [row[index] for row in rows]
        counts = {word: outcomes.count(word) for word in ("win", "tie", "loss")}
        won = [row[0] for row in rows if row[index] == "win"]
        lost = [row[0] for row in rows if row[index] == "loss"]
        if not any(counts.values()):
            sentences.append(f"- Against {label}: no verdict, too few seeds.")
            continue
        sentence = (f"- Against {label}, the {reference_label} wins {counts['win']}, ties {counts['tie']} and loses "
                    f"{counts['loss']} of {len(outcomes)} checks.")
        if won:
            sentence += " Wins: " + "; ".join(won) + "."
        if lost:
            sentence += " Losses: " + "; ".join(lost) + "."
        sentences.append(sentence)
    return sentences


def write_csv(records: Sequence[ModelRecord], folder: Path) -> dict[str, Path]:
    """Write models.csv (one row per trained model) and runs.csv (one row per closed-loop run)."""
    folder.mkdir(parents=True, exist_ok=True)
    models_path = folder / "models.csv"
    runs_path = folder / "runs.csv"
    model_rows = []
    run_rows = []
    for record in records:
        row = {"variant": record.variant, "seed": record.seed, "error": record.error or ""}
        if record.training:
            row.update({key: value for key, value in record.training.items() if key != "fingerprint"})
        model_rows.append(row)
        for run in (record.evaluation or {}).get("runs", []):
            run_rows.append({"variant": record.variant, "model_seed": record.seed, **run})
    for path, rows in ((models_path, model_rows), (runs_path, run_rows)):
        fields: list[str] = []
        for row in rows:
            fields += [key for key in row if key not in fields]
        with path.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.DictWriter(stream, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    return {"models": models_path, "runs": runs_path}


def plot_closed_loop(records: Sequence[ModelRecord], settings: CompareSettings, path: Path) -> Path:
    """Plot interventions per km and mean |cte| against noise variance, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = [group for group in ("train", "held_out") if getattr(settings, f"{group}_layouts")]
    metrics = ["interventions_per_km", "mean_cte_cm"]
    figure, axes = plt.subplots(len(groups), len(metrics), figsize=(11, 3.6 * len(groups)), squeeze=False)
    variances = list(settings.noise_variances)
    for row, group in enumerate(groups):
        for column_index, metric in enumerate(metrics):
            axis = axes[row][column_index]
            for variant in _variants(records):
                summaries = [
                    summarise(records, variant.name, closed_loop_figure(metric, Column(group, v, "default")))
                    for v in variances
                ]
                means = [summary.mean for summary in summaries]
                spreads = [summary.std for summary in summaries]
                style = "-" if variant.name == REFERENCE else "--"
                width = 2.5 if variant.name == REFERENCE else 1.2
                axis.errorbar(variances, means, yerr=spreads, label=variant.label, linestyle=style,
                              linewidth=width, marker="o", markersize=3, capsize=3)
            where = "training layouts" if group == "train" else "held-out layouts"
            axis.set_title(f"{CLOSED_LOOP_METRICS[metric][0]}, {where}", fontsize="medium")
            axis.set_xlabel("pixel-noise variance")
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_compactness(records: Sequence[ModelRecord], settings: CompareSettings, path: Path) -> Path | None:
    """Plot held-out interventions per km at the highest noise against effective controller parameters."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    group = "held_out" if settings.held_out_layouts else "train"
    column = Column(group, float(max(settings.noise_variances)), "default")
    figure, axis = plt.subplots(figsize=(6.5, 4.2))
    plotted = False
    for variant in _variants(records):
        size = summarise(records, variant.name, training_figure("controller_effective_parameters"))
        failures = summarise(records, variant.name, closed_loop_figure("interventions_per_km", column))
        if not size.values or not failures.values:
            continue
        axis.errorbar([size.mean], [failures.mean], yerr=[failures.std], marker="o", capsize=3,
                      label=variant.label)
        plotted = True
    if not plotted:
        plt.close(figure)
        return None
    axis.set_xscale("log")
    axis.set_ylim(bottom=0.0)
    axis.set_xlabel("effective controller parameters")
    axis.set_ylabel("interventions per km")
    axis.set_title(f"{column.label}, {'held-out' if group == 'held_out' else 'training'} layouts",
                   fontsize="medium")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def shrink_png(path: Path, colours: int = 256) -> Path:
    """Re-save a PNG with a palette of ``colours`` colours, about a third of the size of a full-colour plot."""
    from PIL import Image

    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(colors=colours)
    palette.save(path, optimize=True)
    return path


def write_outputs(
    records: Sequence[ModelRecord],
    settings: CompareSettings,
    doc: Path,
    metadata: dict[str, Any],
    interpretability: list[str] | None = None,
) -> dict[str, Path]:
    """Write the Markdown report ``doc`` and its folder of CSV and PNG files beside it.

    Args:
        records: Trained and evaluated models.
        settings: The comparison's settings, for the table columns.
        doc: Markdown file to write; files go to a folder named after its stem.
        metadata: ``command``, ``machine``, ``date`` and ``wall_time_s`` of the run.
        interpretability: Markdown lines of the interpretability section, if it ran.
    """
    folder = doc.parent / doc.stem
    folder.mkdir(parents=True, exist_ok=True)
    paths = write_csv(records, folder)
    paths["closed_loop_plot"] = plot_closed_loop(records, settings, folder / "closed_loop.png")
    compactness = plot_compactness(records, settings, folder / "compactness.png")
    relative = doc.stem  # links in the doc are relative to its folder

    lines = [
        "# Liquid networks against baselines on the embedded simulator",
        "",
        "Written by `liquid-driver-compare`; rerun it to refresh every number below. It trains each",
        "controller with the same trainer, on the same demonstrations and behind the same CNN head, "
        f"with {_count(len(settings.seeds), 'seed')} each, then drives every model closed-loop in the MuJoCo "
        "simulator.",
        "",
        f"- Command: `{metadata.get('command', '')}`",
        f"- Machine: {metadata.get('machine', 'unknown')}",
        f"- Date: {metadata.get('date', 'unknown')}; wall time {metadata.get('wall_time_s', 0.0) / 60.0:.1f} min",
        f"- Demonstrations: `{settings.demos}`; {_count(settings.epochs, 'epoch')} per model, seeds "
        f"{', '.join(str(seed) for seed in settings.seeds)}",
        f"- Closed loop: {settings.laps:g} lap per run at 1 m/s on the training layouts "
        f"{', '.join(settings.train_layouts) or 'none'} and the held-out layouts "
        f"{', '.join(settings.held_out_layouts) or 'none'}, with visual seed {settings.visual_seed} "
        "(colours, sun and scenery unlike any demonstration). Noise is Gaussian pixel noise of the given "
        "variance on pixels scaled to [0, 1]. The lighting columns drive without noise.",
        *[f"- Note: {note}" for note in metadata.get("notes", [])],
        "",
        "Each cell is the mean ± standard deviation over seeds of one figure per model. An intervention is "
        "counted when the car's |cross-track error| passes half the lane width plus 0.1 m; the car is then "
        "put back on the lane 1 m further on and its recurrent state is reset. Laps completed counts the "
        "runs that drove their laps within the time limit without any intervention. Training times come "
        f"from {settings.jobs} jobs running side by side, one torch thread each, so they compare the models "
        "with one another rather than measure a dedicated machine.",
        "",
        "## At a glance",
        "",
        "Models ranked by their mean interventions per km over every noise level and lighting on the "
        "held-out layouts (lower is better). The sections below break this down.",
        "",
        *glance_table(records, settings),
        "",
        f"The models here train for {_count(settings.epochs, 'epoch')}. The shipped model is an NCP CfC "
        "trained for 20 epochs"
        + (", with its own closed-loop results in [model.md](model.md)." if (doc.parent / "model.md").exists()
           else "."),
        "",
        "## Models",
        "",
        *models_table(records),
        "",
        "Effective parameters leave out the weights that the wiring masks. Synapses are neuron-to-neuron "
        "synapses, sensory synapses in brackets.",
        "",
        "## Closed-loop driving",
        "",
        f"![closed-loop results]({relative}/closed_loop.png)",
        "",
    ]
    for group in ("train", "held_out"):
        if not getattr(settings, f"{group}_layouts"):
            continue
        layouts = ", ".join(getattr(settings, f"{group}_layouts"))
        title = "Training layouts" if group == "train" else "Held-out layouts"
        lines += [f"### {title} ({layouts})", ""]
        for metric, (metric_title, _, _, lower) in CLOSED_LOOP_METRICS.items():
            better = "lower is better" if lower else "higher is better"
            lines += [f"{metric_title} ({better}):", "", *closed_loop_table(records, settings, group, metric), ""]
    if compactness is not None:
        lines += ["### Size against robustness", "", f"![compactness]({relative}/compactness.png)", ""]

    lines += [
        "## Where the NCP wins, ties or loses",
        "",
        "An NCP wins a check against another model when its mean is better and the difference is more "
        "than twice the standard error of the difference over seeds. It loses in the mirrored case and "
        "ties otherwise, so with three seeds only clear differences count.",
        "",
    ]
    if len(settings.seeds) < 2:
        lines += ["With one seed per model there is no spread over seeds, so every verdict below is n/a. "
                  "Run at least two seeds for verdicts.", ""]
    present = {record.variant for record in records}
    for reference_name in NCP_REFERENCES:
        if reference_name not in present or len(present) < 2:
            continue
        label = variant_by_name(reference_name).label
        header, rows = verdict_rows(records, settings, reference_name)
        lines += [f"### {label}", "", *verdict_sentences(label, header, rows), "",
                  *_markdown_table(header, rows), ""]
    failed = [record for record in records if record.error]
    if failed:
        lines += ["## Failed models", ""]
        lines += [f"- {record.variant} seed {record.seed}: {record.error}" for record in failed]
        lines += [""]
    if interpretability:
        lines += interpretability
    lines += [
        "## Files",
        "",
        f"- [`{relative}/models.csv`]({relative}/models.csv): one row per trained model.",
        f"- [`{relative}/runs.csv`]({relative}/runs.csv): one row per closed-loop run.",
        f"- [`{relative}/summary.json`]({relative}/summary.json): the settings and metadata of this run.",
        "",
    ]
    doc.write_text("\n".join(lines), encoding="utf-8")
    # The folder is meant to be committed, so its plots are kept small.
    for image in folder.glob("*.png"):
        shrink_png(image)
    summary = {"metadata": metadata, "settings": _settings_dict(settings)}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    paths["summary"] = folder / "summary.json"
    paths["doc"] = doc
    return paths


def _settings_dict(settings: CompareSettings) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(settings)
