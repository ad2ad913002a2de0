"""End-to-end training on a synthetic bar scene, through the `liquid-driver-train` CLI."""

import csv
import json

import numpy as np
import pytest

from liquid_driver.data.dataset import load_episodes
from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.data.synthetic import BarSceneConfig, write_bar_bag
from liquid_driver.model import load_checkpoint
from liquid_driver.train.cli import build_parser, config_from_args, main
from liquid_driver.train.config import TrainConfig
from liquid_driver.train.loop import rollout

# A small CNN on 24 x 32 frames keeps three epochs within a few seconds on a CPU.
SMALL_MODEL_ARGS = [
    "--crop-top", "0", "--input-height", "24", "--input-width", "32",
    "--cnn-channels", "8,16,16", "--cnn-lr", "3e-3", "--batch-size", "8", "--threads", "2", "--no-progress",
]
EXPECTED_FILES = (
    "config.json", "dataset_report.json", "metrics.csv", "model.safetensors", "loss.png",
    "val_predictions.png", "last.safetensors", "last_state.pt", "train.log",
)


@pytest.fixture(scope="module", autouse=True)
def private_cache_home(tmp_path_factory):
    """Keep the CLI's default frame cache out of the user's home folder."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg_cache")))
        yield


@pytest.fixture(scope="module")
def bar_bags(tmp_path_factory):
    """Three recordings of the bar scene, 240 frames (12 s) each."""
    folder = tmp_path_factory.mktemp("bar_bags")
    paths = []
    for seed in range(3):
        path = folder / f"drive{seed}"
        write_bar_bag(path, 240, BarSceneConfig(), seed=seed, start_s=100.0 * (seed + 1))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def trained_run(bar_bags, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "bar"
    export = run_dir.parent / "exported" / "policy.safetensors"
    arguments = [*bar_bags, "--out", str(run_dir), "--epochs", "3", "--export", str(export), *SMALL_MODEL_ARGS]
    status = main(arguments)
    return status, run_dir, export


def read_metrics(run_dir):
    with (run_dir / "metrics.csv").open() as stream:
        return list(csv.DictReader(stream))


def test_run_writes_every_file(trained_run):
    status, run_dir, export = trained_run
    assert status == 0
    for name in EXPECTED_FILES:
        assert (run_dir / name).is_file(), name
        assert (run_dir / name).stat().st_size > 0, name
    assert export.read_bytes() == (run_dir / "model.safetensors").read_bytes()


def test_metrics_rows(trained_run):
    _, run_dir, _ = trained_run
    rows = read_metrics(run_dir)
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert list(rows[0]) == ["epoch", "train_loss", "val_loss", "val_mae", "lr_cnn", "lr_controller", "seconds"]
    for row in rows:
        assert np.isfinite(float(row["val_loss"]))
    assert float(rows[0]["lr_cnn"]) == pytest.approx(3e-3)
    assert float(rows[0]["lr_controller"]) == pytest.approx(TrainConfig.controller_lr)
    # Cosine schedule: both rates fall every epoch.
    for previous, row in zip(rows, rows[1:]):
        assert float(row["lr_cnn"]) < float(previous["lr_cnn"])
        assert float(row["lr_controller"]) < float(previous["lr_controller"])


def test_validation_beats_constant(trained_run):
    _, run_dir, _ = trained_run
    _, metadata = load_checkpoint(run_dir / "model.safetensors")
    training = metadata["training"]
    assert training["best_val_loss"] < 0.5 * training["val_loss_constant"]
    assert training["best_val_loss"] == pytest.approx(min(float(row["val_loss"]) for row in read_metrics(run_dir)))


def test_checkpoint_metadata(trained_run, bar_bags):
    _, run_dir, _ = trained_run
    policy, metadata = load_checkpoint(run_dir / "model.safetensors")
    assert Preprocessing.from_dict(metadata["preprocessing"]) == Preprocessing(crop_top=0.0, height=24, width=32)
    assert policy.input_size == (24, 32)
    training = metadata["training"]
    assert training["bags"] == bar_bags
    assert training["frames_used"] == 720
    assert training["train_frames"] + training["val_frames"] == 720
    assert training["val_episodes"] >= 1
    assert training["epochs"] == 3
    assert training["seed"] == 0
    assert training["stop_reason"] == "epochs"
    assert training["command_line"][0] == "liquid-driver-train"
    assert "git_commit" in training


def test_loaded_policy_follows_bar(trained_run, bar_bags):
    _, run_dir, _ = trained_run
    policy, metadata = load_checkpoint(run_dir / "model.safetensors")
    episodes, _ = load_episodes(bar_bags[:1], Preprocessing.from_dict(metadata["preprocessing"]))
    predicted = rollout(policy, episodes[0])
    demonstrated = episodes[0].curvature
    constant_error = np.mean(np.abs(demonstrated - demonstrated.mean()))
    assert np.mean(np.abs(predicted - demonstrated)) < 0.6 * constant_error


def test_run_folder_documents(trained_run):
    _, run_dir, _ = trained_run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seq_len"] == 16
    assert config["augment"]["enabled"] is True
    assert config["policy"]["cnn"]["channels"] == [8, 16, 16]
    report = json.loads((run_dir / "dataset_report.json").read_text())
    assert report["frames_used"] == 720
    assert len(report["split"]["val_episodes"]) >= 1
    assert len(report["split"]["train_episodes"]) + len(report["split"]["val_episodes"]) == 3


def test_refuses_existing_run(trained_run, bar_bags):
    _, run_dir, _ = trained_run
    before = (run_dir / "model.safetensors").read_bytes()
    status = main([*bar_bags, "--out", str(run_dir), "--epochs", "1", *SMALL_MODEL_ARGS])
    assert status == 2
    assert (run_dir / "model.safetensors").read_bytes() == before


def test_resume_continues_run(trained_run, bar_bags, tmp_path):
    _, run_dir, _ = trained_run
    resumed_dir = tmp_path / "resumed"
    status = main([
        *bar_bags, "--out", str(resumed_dir), "--epochs", "4",
        "--resume", str(run_dir / "last.safetensors"), *SMALL_MODEL_ARGS,
    ])
    assert status == 0
    rows = read_metrics(resumed_dir)
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4]
    assert rows[:3] == read_metrics(run_dir)
    _, metadata = load_checkpoint(resumed_dir / "model.safetensors")
    assert metadata["training"]["epochs"] == 4


def test_same_seed_same_result(bar_bags, tmp_path):
    results = []
    for name in ("first", "second"):
        status = main([
            bar_bags[0], bar_bags[1], "--out", str(tmp_path / name), "--epochs", "1",
            "--seed", "3", *SMALL_MODEL_ARGS,
        ])
        assert status == 0
        row = read_metrics(tmp_path / name)[0]
        results.append((row["train_loss"], row["val_loss"]))
    assert results[0] == results[1]


def test_bad_dataset_exit_status(tmp_path, bar_bags):
    status = main([bar_bags[0], "--out", str(tmp_path / "run"), "--image-topic", "/missing", *SMALL_MODEL_ARGS])
    assert status == 2


def test_cli_defaults_match_config():
    args = build_parser().parse_args(["bag", "--out", "runs/x"])
    config = config_from_args(args)
    assert config.seq_len == 16
    assert config.preprocessing == Preprocessing()
    assert config.dataset.excluded_modes == ("perturbation", "autonomous")
    assert config.augment.enabled
    assert config.policy.controller.cell == "cfc"
    assert config.policy.controller.units == 19
    assert config.max_minutes is not None


@pytest.mark.parametrize(
    "arguments",
    [
        ["--cnn-channels", "8,x"],
        ["--cell", "gru"],
        ["--input-height", "0"],
        ["--burn-in", "16"],
        ["--val-fraction", "1.5"],
    ],
    ids=["channels", "cell", "input height", "burn-in", "val fraction"],
)
def test_cli_rejects_bad_values(arguments):
    with pytest.raises(SystemExit) as error:
        main(["bag", "--out", "runs/x", *arguments])
    assert error.value.code == 2

