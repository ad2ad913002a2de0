"""Closed-loop evaluation: the shipped model on a held-out layout, and interventions on bad policies."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from liquid_driver.eval import Condition, EvalSettings, RunResult, add_gaussian_noise, build_conditions, drive_run
from liquid_driver.eval.cli import main as eval_main
from liquid_driver.eval.report import CSV_COLUMNS, markdown_table, summary_by_noise
from liquid_driver.paths import default_model_path
from liquid_driver.sim import Simulator


@dataclass
class _Output:
    curvature: float


class ConstantPolicy:
    """A policy that always outputs the same curvature, 1/m, and counts its resets."""

    def __init__(self, curvature: float) -> None:
        self.curvature = curvature
        self.resets = 0
        self.stamps: list[float] = []

    def predict(self, rgb: np.ndarray, stamp: float) -> _Output:
        self.stamps.append(stamp)
        return _Output(self.curvature)

    def reset(self) -> None:
        self.resets += 1


@pytest.mark.timeout(240)
def test_eval_cli_shipped_model_quick(tmp_path):
    out = tmp_path / "eval"
    code = eval_main(["--quick", "--out", str(out)])
    assert code == 0
    for name in ("results.csv", "results.md", "results.png", "summary.json"):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name

    with (out / "results.csv").open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 1
    row = rows[0]
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert row["layout"] == "curvy"
    assert int(row["seed"]) >= 1000
    assert float(row["noise_variance"]) == 0.0
    assert row["completed"] == "True"
    assert int(row["off_track_events"]) == 0
    assert int(row["interventions"]) == 0
    assert float(row["mean_abs_cross_track_error"]) < 0.05
    assert float(row["distance"]) > 5.0

    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| curvy | 1000 | 0 |" in markdown
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["by_noise"][0]["interventions"] == 0


@pytest.mark.timeout(240)
def test_hard_steering_policy_gets_interventions():
    policy = ConstantPolicy(curvature=2.0)  # a 0.5 m radius circle, far tighter than any corner
    settings = EvalSettings(laps=0.5, time_budget_factor=1.5)
    result = drive_run(policy, Condition("oval", seed=0), settings, record_path=False)

    assert result.interventions >= 2
    assert result.off_track_events >= result.interventions
    assert len(policy.stamps) == result.frames
    # The network state is reset at the start and at every intervention.
    assert policy.resets == result.interventions + 1
    # Stamps keep increasing across interventions although the simulator restarts its clock.
    assert np.all(np.diff(policy.stamps) > 0.0)
    # The drive went on after the first intervention, up to the laps or the time budget.
    assert result.frames > 20
    assert result.max_abs_cross_track_error > 0.4
    assert math.isfinite(result.interventions_per_km)
    assert result.interventions_per_km > 0.0


@pytest.mark.timeout(240)
def test_nan_policy_stops_and_times_out():
    policy = ConstantPolicy(curvature=float("nan"))
    settings = EvalSettings(laps=0.1, time_budget_factor=1.0)
    result = drive_run(policy, Condition("oval", seed=0), settings, record_path=False)

    assert result.invalid_outputs == result.frames
    assert result.frames > 0
    assert not result.completed
    assert result.distance < 0.05
    assert result.interventions == 0


@pytest.mark.parametrize("variance", [0.01, 0.04])
def test_gaussian_noise_variance(variance):
    rng = np.random.default_rng(0)
    grey = np.full((120, 160, 3), 128, dtype=np.uint8)
    noisy = add_gaussian_noise(grey, variance, rng)
    assert noisy.dtype == np.uint8
    assert noisy.shape == grey.shape
    difference = noisy.astype(np.float64) / 255.0 - 128 / 255.0
    # Small variances, so clipping to [0, 1] around mid-grey trims almost none of the tails.
    assert 0.9 * variance < difference.var() < 1.1 * variance
    assert abs(difference.mean()) < 0.01


def test_gaussian_noise_zero_returns_input():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    assert add_gaussian_noise(image, 0.0, np.random.default_rng(0)) is image


@pytest.mark.parametrize("variance", [-0.1, float("nan"), float("inf")])
def test_gaussian_noise_invalid_variance(variance):
    with pytest.raises(ValueError, match="variance"):
        add_gaussian_noise(np.zeros((2, 2, 3), dtype=np.uint8), variance, np.random.default_rng(0))


def test_build_conditions_grid():
    conditions = build_conditions(["curvy", "oval:reverse"], [1000, 1001], [0.0, 0.2])
    assert len(conditions) == 8
    assert conditions[0] == Condition("curvy", 1000, 0.0)
    assert conditions[-1] == Condition("oval:reverse", 1001, 0.2)
    assert {condition.lighting for condition in conditions} == {"default"}


def test_build_conditions_nests_lighting_innermost():
    conditions = build_conditions(["curvy"], [1000], [0.0, 0.2], ["default", "dusk"])
    assert conditions == [
        Condition("curvy", 1000, 0.0, "default"),
        Condition("curvy", 1000, 0.0, "dusk"),
        Condition("curvy", 1000, 0.2, "default"),
        Condition("curvy", 1000, 0.2, "dusk"),
    ]


def test_condition_label_names_lighting():
    assert Condition("curvy", 1000, 0.1).label == "curvy seed 1000 noise 0.1"
    assert Condition("curvy", 1000, 0.1, "dusk").label == "curvy seed 1000 noise 0.1 lighting dusk"


@pytest.mark.timeout(240)
def test_drive_run_under_dusk_reports_lighting():
    built = []

    def factory(layout, seed, lighting):
        simulator = Simulator.from_layout(layout, seed=seed, lighting=lighting)
        built.append(simulator)
        return simulator

    policy = ConstantPolicy(curvature=0.0)
    settings = EvalSettings(laps=0.05, time_budget_factor=1.5)
    result = drive_run(policy, Condition("oval", seed=0, lighting="dusk"), settings,
                       simulator_factory=factory, record_path=False)

    assert [(simulator.track.name, simulator.seed, simulator.lighting) for simulator in built] == [
        ("oval", 0, "dusk")]
    assert built[0].style.shadows
    assert result.lighting == "dusk"
    assert result.to_row()["lighting"] == "dusk"
    assert result.frames > 0
    assert len(policy.stamps) == result.frames


@pytest.mark.timeout(240)
def test_drive_run_default_factory_uses_lighting():
    policy = ConstantPolicy(curvature=0.0)
    settings = EvalSettings(laps=0.02, time_budget_factor=1.5)
    result = drive_run(policy, Condition("oval", seed=0, lighting="night"), settings, record_path=False)
    assert result.lighting == "night"
    assert result.frames > 0


@pytest.mark.parametrize("field,value", [("laps", 0.0), ("speed", -1.0), ("intervention_margin", -0.1),
                                         ("time_budget_factor", 0.5), ("period", float("nan"))])
def test_eval_settings_reject_invalid(field, value):
    with pytest.raises(ValueError, match=field):
        EvalSettings(**{field: value})


@pytest.mark.timeout(240)
def test_eval_cli_lighting_dusk(tmp_path):
    out = tmp_path / "eval"
    code = eval_main(["--layouts", "curvy", "--seeds", "1000", "--noise", "0", "--laps", "0.05",
                      "--lighting", "dusk", "--out", str(out)])
    assert code == 0
    with (out / "results.csv").open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["lighting"] for row in rows] == ["dusk"]
    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "| curvy | 1000 | 0 | dusk |" in markdown
    assert "## Per lighting and noise variance" in markdown
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["by_noise"][0]["lighting"] == "dusk"
    assert summary["settings"]["lighting"] == ["dusk"]


def test_eval_cli_rejects_unknown_lighting(capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_main(["--lighting", "dawn", "--out", "unused"])
    assert exit_info.value.code == 2
    assert "'dawn'" in capsys.readouterr().err


def test_eval_cli_rejects_unknown_layout(capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_main(["--layouts", "nowhere", "--out", "unused"])
    assert exit_info.value.code == 2


def test_eval_cli_missing_model(tmp_path):
    assert default_model_path().is_file()
    code = eval_main(["--quick", "--model", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)])
    assert code == 2


def _run_result(seed: int, lighting: str, interventions: int) -> RunResult:
    return RunResult(
        layout="curvy", seed=seed, noise_variance=0.0, lighting=lighting, laps_requested=1.0,
        laps_completed=1, laps_driven=1.0, completed=True, sim_time=30.0, distance=30.0,
        mean_abs_cross_track_error=0.02, max_abs_cross_track_error=0.1, off_track_events=interventions,
        interventions=interventions, interventions_per_km=interventions / 0.03, invalid_outputs=0,
        frames=600, wall_time=5.0,
    )


def test_report_groups_by_lighting():
    results = [_run_result(1000, "default", 0), _run_result(1001, "default", 1), _run_result(1000, "dusk", 4)]
    rows = summary_by_noise(results)
    assert [(row["lighting"], row["runs"], row["interventions"]) for row in rows] == [
        ("default", 2, 1), ("dusk", 1, 4)]

    table = markdown_table(results)
    assert "| noise variance | lighting | laps |" in table
    assert "| curvy | 1000 | 0 | dusk | 1.00 |" in table


def test_report_default_lighting_has_no_column():
    table = markdown_table([_run_result(1000, "default", 0)])
    assert "lighting" not in table
    assert "| curvy | 1000 | 0 | 1.00 |" in table
