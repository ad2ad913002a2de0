"""Closed-loop evaluation: the shipped model on a held-out layout, and interventions on bad policies."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest

from liquid_driver.eval import Condition, EvalSettings, add_gaussian_noise, build_conditions, drive_run
from liquid_driver.eval.cli import main as eval_main
from liquid_driver.eval.report import CSV_COLUMNS
from liquid_driver.paths import default_model_path


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


@pytest.mark.parametrize("field,value", [("laps", 0.0), ("speed", -1.0), ("intervention_margin", -0.1),
                                         ("time_budget_factor", 0.5), ("period", float("nan"))])
def test_eval_settings_reject_invalid(field, value):
    with pytest.raises(ValueError, match=field):
        EvalSettings(**{field: value})


def test_eval_cli_rejects_unknown_layout(capsys):
    with pytest.raises(SystemExit) as exit_info:
        eval_main(["--layouts", "nowhere", "--out", "unused"])
    assert exit_info.value.code == 2


def test_eval_cli_missing_model(tmp_path):
    assert default_model_path().is_file()
    code = eval_main(["--quick", "--model", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path)])
    assert code == 2
