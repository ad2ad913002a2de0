"""Offline interpretability: saliency similarity, saliency over a bag, neuron traces and the CLI."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest

from liquid_driver.data.bag import BagWriter, serialize
from liquid_driver.data.errors import DatasetError
from liquid_driver.data.images import ImageFormatError
from liquid_driver.data.synthetic import BarSceneConfig, image_message, twist_message, write_bar_bag
from liquid_driver.interpret import (
    MAX_TRACE_LINES,
    bag_saliency,
    drive_traces,
    plot_neuron_traces,
    plot_saliency_sheet,
    read_camera_frames,
)
from liquid_driver.model import load_checkpoint
from liquid_driver.paths import default_model_path
from liquid_driver.saliency import saliency_similarity
from liquid_driver.tools.saliency import CSV_COLUMNS
from liquid_driver.tools.saliency import main as saliency_main

IMAGE_TYPE = "sensor_msgs/msg/Image"
PERIOD = 0.05  # s, simulator camera period (20 Hz)
SIM_FRAMES = 60
NS_PER_S = 1_000_000_000


def write_sim_bag(path, frames=SIM_FRAMES, layout="curvy", seed=1000):
    """Record simulator frames while the pure-pursuit expert drives along the lane."""
    from liquid_driver.sim import ExpertDriver, Simulator

    with Simulator.from_layout(layout, seed=seed) as sim, BagWriter(path) as bag:
        expert = ExpertDriver(sim.track)
        bag.add_topic("/camera/image_raw", IMAGE_TYPE)
        for index in range(frames):
            stamp = index * PERIOD
            rgb = sim.render()
            bag.write("/camera/image_raw", int(round(stamp * NS_PER_S)),
                      serialize(image_message(rgb, stamp), IMAGE_TYPE))
            x, y, yaw = sim.pose
            command = expert.command(x, y, yaw, sim.velocity[0])
            sim.set_command(command.speed, command.steering)
            sim.step(PERIOD)
    return path


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory):
    return write_sim_bag(tmp_path_factory.mktemp("bags") / "curvy_sim")


@pytest.fixture(scope="module")
def shipped_result(sim_bag):
    return bag_saliency(default_model_path(), sim_bag, noise_variances=(0.0, 0.1, 0.3))


@pytest.fixture(scope="module")
def shipped_wiring():
    policy, _ = load_checkpoint(default_model_path())
    return policy.wiring


def blob_mask(row, column, shape=(48, 128), radius=6.0):
    rows, columns = np.mgrid[0:shape[0], 0:shape[1]]
    return np.exp(-((rows - row) ** 2 + (columns - column) ** 2) / (2.0 * radius ** 2)).astype(np.float32)


# ----------------------------------------------------------------------
# saliency_similarity


def test_similarity_of_mask_with_itself_is_one():
    mask = blob_mask(20, 60)
    assert saliency_similarity(mask, mask) == pytest.approx(1.0)


def test_similarity_ignores_scale_and_offset():
    mask = blob_mask(20, 60)
    assert saliency_similarity(mask, 0.5 * mask + 0.2) == pytest.approx(1.0)


def test_similarity_drops_as_mask_shifts():
    mask = blob_mask(20, 60)
    near = saliency_similarity(mask, blob_mask(20, 64))
    far = saliency_similarity(mask, blob_mask(20, 90))
    assert near < 1.0
    assert far < near
    assert far < 0.1


def test_similarity_of_unrelated_masks_is_near_zero():
    rng = np.random.default_rng(0)
    value = saliency_similarity(rng.random((48, 128)), rng.random((48, 128)))
    assert abs(value) < 0.05


def test_similarity_of_inverted_mask_is_minus_one():
    mask = blob_mask(20, 60)
    assert saliency_similarity(mask, 1.0 - mask) == pytest.approx(-1.0)


def test_similarity_constant_masks():
    zeros = np.zeros((4, 5), np.float32)
    assert saliency_similarity(zeros, zeros) == 1.0
    assert saliency_similarity(zeros, np.ones((4, 5))) == 0.0
    assert saliency_similarity(zeros, blob_mask(2, 2, (4, 5))) == 0.0
    assert saliency_similarity(blob_mask(2, 2, (4, 5)), zeros) == 0.0


def test_similarity_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"\(48, 128\) and \(24, 64\)"):
        saliency_similarity(np.zeros((48, 128)), np.zeros((24, 64)))


def test_similarity_rejects_nonfinite_mask():
    mask = blob_mask(20, 60)
    broken = mask.copy()
    broken[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        saliency_similarity(mask, broken)


# ----------------------------------------------------------------------
# read_camera_frames


def test_read_frames_in_order_with_every_and_max(tmp_path):
    bag = tmp_path / "bar"
    write_bar_bag(bag, 20, BarSceneConfig(), start_s=100.0)
    frames = list(read_camera_frames(bag))
    assert len(frames) == 20
    stamps = [stamp for stamp, _ in frames]
    assert stamps == pytest.approx(100.0 + PERIOD * np.arange(20))
    assert frames[0][1].shape == (30, 40, 3)
    assert frames[0][1].dtype == np.uint8

    sampled = [stamp for stamp, _ in read_camera_frames(bag, max_frames=4, every=3)]
    assert sampled == pytest.approx(100.0 + PERIOD * np.array([0, 3, 6, 9]))


def test_read_frames_missing_bag(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_camera_frames(tmp_path / "missing")


def test_read_frames_without_image_topic_lists_topics(tmp_path):
    bag = tmp_path / "commands_only"
    with BagWriter(bag) as writer:
        writer.add_topic("/cmd_vel", "geometry_msgs/msg/Twist")
        writer.write("/cmd_vel", NS_PER_S, serialize(twist_message(1.0, 0.0), "geometry_msgs/msg/Twist"))
    with pytest.raises(DatasetError, match=r"no image topic.*/cmd_vel \[geometry_msgs/msg/Twist\]"):
        read_camera_frames(bag)


def test_read_frames_unknown_topic_lists_topics(tmp_path):
    bag = tmp_path / "bar"
    write_bar_bag(bag, 3)
    with pytest.raises(DatasetError, match=r"'/front/image' not found.*/camera/image_raw"):
        read_camera_frames(bag, topic="/front/image")


def test_read_frames_unsupported_encoding(tmp_path):
    bag = tmp_path / "depth"
    with BagWriter(bag) as writer:
        writer.add_topic("/camera/image_raw", IMAGE_TYPE)
        depth = image_message(np.zeros((4, 4, 4), np.uint8), 1.0, encoding="32FC1")
        writer.write("/camera/image_raw", NS_PER_S, serialize(depth, IMAGE_TYPE))
    frames = read_camera_frames(bag)
    with pytest.raises(ImageFormatError, match="unsupported image encoding '32FC1'"):
        next(frames)


def test_read_frames_rejects_invalid_every(tmp_path):
    with pytest.raises(ValueError, match="every=0"):
        read_camera_frames(tmp_path, every=0)


# ----------------------------------------------------------------------
# bag_saliency


@pytest.mark.timeout(120)
def test_bag_saliency_shapes_and_ranges(shipped_result):
    result = shipped_result
    assert len(result) == SIM_FRAMES
    assert result.frames.shape == (SIM_FRAMES, 48, 128, 3)
    assert result.masks.shape == (SIM_FRAMES, 48, 128)
    assert result.masks.dtype == np.float32
    assert result.masks.min() >= 0.0
    assert result.masks.max() <= 1.0
    assert result.curvature.shape == (SIM_FRAMES,)
    assert np.isfinite(result.curvature).all()
    assert result.neuron_states.shape == (SIM_FRAMES, 19)
    assert result.frame_indices.tolist() == list(range(SIM_FRAMES))
    assert result.stamps == pytest.approx(PERIOD * np.arange(SIM_FRAMES))
    assert [noisy.variance for noisy in result.noisy] == [0.0, 0.1, 0.3]
    for noisy in result.noisy:
        assert noisy.masks.shape == result.masks.shape
        assert noisy.frames.shape == result.frames.shape
        assert noisy.similarity.shape == (SIM_FRAMES,)
        assert noisy.masks.min() >= 0.0
        assert noisy.masks.max() <= 1.0


def test_bag_saliency_zero_noise_repeats_clean_pass(shipped_result):
    zero = shipped_result.noisy[0]
    assert zero.similarity == pytest.approx(np.ones(SIM_FRAMES))
    assert zero.curvature == pytest.approx(shipped_result.curvature)


def test_bag_saliency_more_noise_moves_attention_more(shipped_result):
    low, high = shipped_result.noisy[1], shipped_result.noisy[2]
    assert low.mean_similarity < 1.0
    assert high.mean_similarity < low.mean_similarity


def test_bag_saliency_carries_state_across_frames(sim_bag):
    # With every=2 the network gets dt = 0.1 s; the state must still be carried, not reset.
    result = bag_saliency(default_model_path(), sim_bag, noise_variances=(), every=2, max_frames=5)
    assert result.frame_indices.tolist() == [0, 2, 4, 6, 8]
    assert result.noisy == []
    assert not np.allclose(result.neuron_states[0], result.neuron_states[-1])


def test_bag_saliency_summary(shipped_result):
    summary = shipped_result.summary()
    assert summary["frames"] == SIM_FRAMES
    assert [entry["variance"] for entry in summary["noise"]] == [0.0, 0.1, 0.3]
    assert summary["noise"][0]["mean_similarity"] == pytest.approx(1.0)
    json.dumps(summary)


@pytest.mark.parametrize("variances", [(-0.1,), (1.5,), (float("nan"),)])
def test_bag_saliency_rejects_invalid_noise(sim_bag, variances):
    with pytest.raises(ValueError, match="noise variance"):
        bag_saliency(default_model_path(), sim_bag, noise_variances=variances)


# ----------------------------------------------------------------------
# Plots


def test_plot_saliency_sheet_writes_png(shipped_result, tmp_path):
    path = plot_saliency_sheet(shipped_result, tmp_path / "sheets" / "sheet.png", frames=5)
    assert path.is_file()
    assert path.stat().st_size > 0


def test_plot_saliency_sheet_more_columns_than_frames(sim_bag, tmp_path):
    result = bag_saliency(default_model_path(), sim_bag, noise_variances=(0.1,), max_frames=3)
    path = plot_saliency_sheet(result, tmp_path / "sheet.png", frames=8)
    assert path.stat().st_size > 0


def test_plot_neuron_traces_by_layer(shipped_result, shipped_wiring, tmp_path):
    path = plot_neuron_traces(shipped_result.neuron_states, shipped_result.stamps, shipped_wiring,
                              tmp_path / "traces.png", curvature=shipped_result.curvature, title="test")
    assert path.stat().st_size > 0


def test_plot_neuron_traces_mixed_memory_columns(shipped_wiring, tmp_path):
    states = np.random.default_rng(0).normal(size=(30, 2 * shipped_wiring.units))
    path = plot_neuron_traces(states, PERIOD * np.arange(30), shipped_wiring, tmp_path / "mixed.png")
    assert path.stat().st_size > 0


def test_plot_neuron_traces_without_wiring(tmp_path):
    # An LSTM's state: 64 hidden columns, then 64 cell columns, more than one subplot draws.
    states = np.random.default_rng(0).normal(size=(30, 128))
    assert states.shape[1] > MAX_TRACE_LINES
    path = plot_neuron_traces(states, PERIOD * np.arange(30), None, tmp_path / "lstm.png",
                              curvature=np.zeros(30))
    assert path.stat().st_size > 0


def test_plot_neuron_traces_rejects_mismatched_shapes(shipped_wiring, tmp_path):
    states = np.zeros((10, 19))
    with pytest.raises(ValueError, match="times have shape"):
        plot_neuron_traces(states, np.zeros(9), None, tmp_path / "a.png")
    with pytest.raises(ValueError, match="curvature has shape"):
        plot_neuron_traces(states, np.zeros(10), None, tmp_path / "b.png", curvature=np.zeros(3))
    with pytest.raises(ValueError, match="wiring has 19 neurons"):
        plot_neuron_traces(np.zeros((10, 5)), np.zeros(10), shipped_wiring, tmp_path / "c.png")


# ----------------------------------------------------------------------
# drive_traces


@pytest.mark.timeout(120)
def test_drive_traces_one_row_per_frame(tmp_path, shipped_wiring):
    times, states, curvature, run = drive_traces(default_model_path(), layout="curvy", seed=1000, laps=0.1)
    assert run.frames > 0
    assert times.shape == (run.frames,)
    assert states.shape == (run.frames, 19)
    assert curvature.shape == (run.frames,)
    assert np.all(np.diff(times) > 0.0)
    path = plot_neuron_traces(states, times, shipped_wiring, tmp_path / "drive.png", curvature=curvature)
    assert path.stat().st_size > 0


# ----------------------------------------------------------------------
# CLI


@pytest.mark.timeout(120)
def test_cli_writes_outputs(sim_bag, tmp_path):
    out = tmp_path / "saliency"
    code = saliency_main([str(sim_bag), "--out", str(out), "--max-frames", "12", "--noise", "0.1", "0.2",
                          "--frames-in-sheet", "4", "--save-frames"])
    assert code == 0
    for name in ("saliency_sheet.png", "neuron_traces.png", "similarity.csv", "summary.json"):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    assert len(list((out / "frames").glob("frame_*.png"))) == 12

    with (out / "similarity.csv").open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0].keys()) == CSV_COLUMNS
    assert len(rows) == 2 * 12
    assert {row["noise_variance"] for row in rows} == {"0.1", "0.2"}

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["frames"] == 12
    assert summary["bag"] == str(sim_bag)
    assert [entry["variance"] for entry in summary["noise"]] == [0.1, 0.2]
    for entry in summary["noise"]:
        assert -1.0 <= entry["mean_similarity"] <= 1.0


def test_cli_missing_bag_exits_2(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        code = saliency_main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "missing not found" in caplog.text
    assert not (tmp_path / "out").exists()


def test_cli_invalid_model_exits_2(sim_bag, tmp_path, caplog):
    model = tmp_path / "broken.safetensors"
    model.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.ERROR):
        code = saliency_main([str(sim_bag), "--model", str(model), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "broken.safetensors" in caplog.text


def test_cli_bag_without_images_exits_2(tmp_path, caplog):
    bag = tmp_path / "commands_only"
    with BagWriter(bag) as writer:
        writer.add_topic("/cmd_vel", "geometry_msgs/msg/Twist")
        writer.write("/cmd_vel", NS_PER_S, serialize(twist_message(1.0, 0.0), "geometry_msgs/msg/Twist"))
    with caplog.at_level(logging.ERROR):
        code = saliency_main([str(bag), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "no image topic" in caplog.text


def test_cli_rejects_invalid_noise(sim_bag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        saliency_main([str(sim_bag), "--noise", "2"])
    assert exit_info.value.code == 2
    assert "invalid --noise variance 2.0" in capsys.readouterr().err
