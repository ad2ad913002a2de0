"""liquid-driver-compare: every variant trains, drives in the simulator and lands in the report.

The end-to-end test trains on the synthetic bar scene with a small CNN, so the
models steer badly in the simulator. It checks the pipeline and the report,
not the driving. The full comparison on simulator demonstrations takes about an
hour and is measured in docs/liquid-vs-baselines.md.
"""

import csv

import pytest

from liquid_driver.compare.cli import main as compare_main
from liquid_driver.compare.report import Summary, verdict, write_outputs
from liquid_driver.compare.run import EVAL_RECORD, TRAIN_RECORD, CompareSettings, load_records, run_comparison
from liquid_driver.compare.variants import VARIANTS, matched_random_sparsity, variant_by_name
from liquid_driver.data.synthetic import BarSceneConfig, write_bar_bag
from liquid_driver.model import DrivingPolicy

SMALL_TRAINING = {
    "cnn": {"input_height": 24, "input_width": 32, "channels": [8, 16, 16], "kernel_sizes": [5, 3, 3],
            "strides": [2, 2, 2]},
    "preprocessing": {"crop_top": 0.0, "height": 24, "width": 32},
    "batch_size": 8,
    "cnn_lr": 3e-3,
}


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """All six variants trained for one epoch on bar-scene bags and driven on short runs."""
    root = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "cache"))
        for seed in range(2):
            write_bar_bag(root / "demos" / f"drive{seed}", 200, BarSceneConfig(), seed=seed,
                          start_s=100.0 * (seed + 1))
        settings = CompareSettings(
            demos=str(root / "demos"),
            out=str(root / "out"),
            seeds=(0,),
            epochs=1,
            train_overrides=SMALL_TRAINING,
            train_layouts=("oval",),
            held_out_layouts=("curvy",),
            noise_variances=(0.0, 0.3),
            lightings=("dusk",),
            laps=0.05,
        )
        records = run_comparison(settings, progress=False)
        doc = root / "docs" / "report.md"
        paths = write_outputs(records, settings, doc, {"command": "test", "machine": "test", "wall_time_s": 1.0})
        yield settings, records, paths


def test_every_model_trained_and_drove(comparison):
    settings, records, _ = comparison
    assert [record.variant for record in records] == [variant.name for variant in VARIANTS]
    for record in records:
        assert record.error is None
        assert record.training["epochs"] == 1
        assert record.checkpoint.is_file()
        assert len(record.evaluation["runs"]) == len(settings.conditions())


def test_runs_cover_conditions(comparison):
    settings, records, _ = comparison
    runs = records[0].evaluation["runs"]
    seen = {(run["group"], run["layout"], run["noise_variance"], run["lighting"]) for run in runs}
    assert ("train", "oval", 0.3, "default") in seen
    assert ("held_out", "curvy", 0.0, "dusk") in seen
    assert len(seen) == 2 * 3


def test_parameter_counts_recorded(comparison):
    _, records, _ = comparison
    by_variant = {record.variant: record.training for record in records}
    assert by_variant["ncp_cfc"]["synapses"] < by_variant["fc_cfc"]["synapses"]
    assert by_variant["feedforward"]["state_size"] == 0
    assert by_variant["lstm"]["state_size"] == 128
    assert by_variant["ncp_cfc"]["state_size"] == 19
    for record in records:
        assert record.training["model_parameters"] > record.training["controller_parameters"]


def test_report_lists_every_variant(comparison):
    _, _, paths = comparison
    text = paths["doc"].read_text()
    for variant in VARIANTS:
        assert variant.label in text
    assert "## Where the NCP wins, ties or loses" in text
    assert "Interventions per km" in text
    assert "dusk" in text


def test_csv_files(comparison):
    settings, records, paths = comparison
    with paths["models"].open() as stream:
        models = list(csv.DictReader(stream))
    with paths["runs"].open() as stream:
        runs = list(csv.DictReader(stream))
    assert len(models) == len(VARIANTS)
    assert len(runs) == len(VARIANTS) * len(settings.conditions())
    assert {"variant", "model_seed", "lighting", "interventions_per_km"} <= set(runs[0])
    assert paths["closed_loop_plot"].stat().st_size > 0


def test_finished_jobs_not_repeated(comparison):
    settings, records, _ = comparison
    stamps = [(record.run_dir / TRAIN_RECORD).stat().st_mtime_ns for record in records]
    again = run_comparison(settings, progress=False)
    assert [(record.run_dir / TRAIN_RECORD).stat().st_mtime_ns for record in again] == stamps
    assert all(record.evaluation is not None for record in again)


def test_changed_conditions_rerun_only_evaluation(comparison, tmp_path):
    settings, _, _ = comparison
    changed = CompareSettings(**{**settings.__dict__, "noise_variances": (0.0,)})
    records = load_records(changed)
    assert all(record.training is not None for record in records)
    assert all(record.evaluation is None for record in records)
    assert all((record.run_dir / EVAL_RECORD).is_file() for record in records)


def test_cli_report_only(comparison, tmp_path):
    settings, _, _ = comparison
    doc = tmp_path / "again.md"
    arguments = [
        "--demos", settings.demos, "--out", settings.out, "--doc", str(doc), "--seeds", "0",
        "--epochs", "1", "--train-layouts", "oval", "--held-out-layouts", "curvy",
        "--noise", "0", "0.3", "--lighting", "dusk", "--laps", "0.05", "--report-only", "--no-interpret",
    ]
    # The CLI has no flag for the small CNN, so its fingerprints differ and nothing is found.
    assert compare_main(arguments) == 2
    assert not doc.exists()


def test_cli_rejects_unknown_layout(capsys):
    with pytest.raises(SystemExit) as error:
        compare_main(["--held-out-layouts", "nowhere", "--report-only"])
    assert error.value.code == 2
    assert "nowhere" in capsys.readouterr().err


def test_cli_rejects_unknown_lighting(capsys):
    with pytest.raises(SystemExit) as error:
        compare_main(["--lighting", "moonless", "--report-only"])
    assert error.value.code == 2
    assert "moonless" in capsys.readouterr().err


def test_settings_reject_duplicate_seeds():
    with pytest.raises(ValueError, match="seed"):
        CompareSettings(demos="d", out="o", seeds=(0, 0))


def test_unknown_variant():
    with pytest.raises(ValueError, match="ncp_cfc"):
        variant_by_name("transformer")


def test_random_wiring_matches_ncp_synapses():
    ncp = DrivingPolicy(variant_by_name("ncp_cfc").policy_config(0)).count_parameters()["controller"]
    counts = []
    for seed in range(10):
        policy = DrivingPolicy(variant_by_name("random_cfc").policy_config(seed))
        counts.append(policy.count_parameters()["controller"])
    mean_synapses = sum(c.synapses + c.sensory_synapses for c in counts) / len(counts)
    assert mean_synapses == pytest.approx(ncp.synapses + ncp.sensory_synapses, rel=0.1)
    assert 0.0 < matched_random_sparsity(32) < 1.0


def test_seeds_draw_different_wirings():
    first = DrivingPolicy(variant_by_name("ncp_cfc").policy_config(0)).wiring.adjacency
    second = DrivingPolicy(variant_by_name("ncp_cfc").policy_config(1)).wiring.adjacency
    assert (first != second).any()


@pytest.mark.parametrize(
    "reference,other,lower,expected",
    [
        ([1.0, 1.1, 0.9], [3.0, 3.1, 2.9], True, "win"),
        ([3.0, 3.1, 2.9], [1.0, 1.1, 0.9], True, "loss"),
        ([3.0, 3.1, 2.9], [1.0, 1.1, 0.9], False, "win"),
        ([1.0, 2.0, 3.0], [1.5, 2.5, 3.5], True, "tie"),
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], True, "tie"),
        ([0.0, 0.0, 0.0], [2.0, 2.0, 2.0], True, "win"),
    ],
)
def test_verdict(reference, other, lower, expected):
    assert verdict(Summary(reference), Summary(other), lower) == expected


def test_verdict_without_values():
    assert verdict(Summary([]), Summary([1.0]), True) == "n/a"


def test_verdict_needs_two_seeds():
    assert verdict(Summary([627.3]), Summary([900.0]), True) == "n/a"


def test_one_seed_report_has_no_verdicts(comparison):
    _, _, paths = comparison
    text = paths["doc"].read_text()
    assert "every verdict below is n/a" in text
    assert "| win |" not in text
    assert "| loss |" not in text


def test_help_lists_lighting_presets():
    from liquid_driver.compare.cli import build_parser
    from liquid_driver.sim.style import LIGHTING_PRESETS

    text = build_parser().format_help()
    for preset in LIGHTING_PRESETS[1:]:
        assert preset in text


def test_interpretability_section(comparison, tmp_path):
    from liquid_driver.compare.interpret import explain_models

    settings, records, _ = comparison
    folder = tmp_path / "report"
    lines = explain_models(records, settings, folder, relative="report", frames=40)
    text = "\n".join(lines)
    assert "## Interpretability" in text
    for name in ("saliency.png", "saliency_similarity.png", "traces_ncp_cfc.png", "traces_lstm.png",
                 "wiring_ncp_cfc.png", "wiring_random_cfc.png"):
        assert (folder / name).stat().st_size > 0
        assert f"report/{name}" in text
    assert not (folder / "wiring_lstm.png").exists()
    # One similarity row per variant, each with three noise levels in [-1, 1].
    rows = [line for line in lines if line.startswith("| ") and "similarity" not in line and "---" not in line]
    assert len(rows) == len(VARIANTS)
    for row in rows:
        values = [float(cell) for cell in row.strip("|").split("|")[1:]]
        assert len(values) == 3
        assert all(-1.0 <= value <= 1.0 for value in values)


def test_report_lists_notes(comparison, tmp_path):
    settings, records, _ = comparison
    metadata = {"command": "test", "machine": "test", "wall_time_s": 60.0, "notes": ["other jobs shared the CPU"]}
    paths = write_outputs(records, settings, tmp_path / "noted.md", metadata)
    text = paths["doc"].read_text()
    assert "- Note: other jobs shared the CPU" in text
    assert "wall time 1.0 min" in text
