"""Data-parallel training: a real 2-process torchrun (gloo, CPU) against one process.

Both runs see the same global batches. One process trains with batch 8. Each
of the two ranks trains with batch 4 on every second window of the same
shared order, so batch k of rank 0 plus batch k of rank 1 is batch k of the
single process. Augmentation is off and the model has no dropout, so the only
difference between the runs is the floating-point summation order of the
gradient: DistributedDataParallel averages the ranks' gradients, and the
trainer scales each rank's loss so that the average is the gradient of the
global batch's weighted MSE. After 22 AdamW steps the weights agreed to
2.4e-7 when this test was written, and the test allows 1e-5. Much more than
that means different batches or a wrong gradient scale, whose differences
reach the learning rate, 3e-3, within one step.
"""

import collections
import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from liquid_driver.data.synthetic import BarSceneConfig, write_bar_bag
from liquid_driver.train.cli import main

# Largest allowed absolute difference between the weights of the two runs (see the module docstring).
WEIGHT_TOLERANCE = 1e-5
# Validation metrics are sums over the same windows in another order.
METRIC_TOLERANCE = 1e-5
EPOCHS = 2
# 3 episodes of 48 frames: 2 train, 1 validates. With --seq-len 8 and --stride 1 the
# window grid never shifts, so each epoch has 2 * (48 - 8 + 1) = 82 windows, an even
# count that splits over 2 ranks without padding.
FRAMES_PER_BAG = 48
TORCHRUN_TIMEOUT_S = 180
COMMON_ARGS = [
    "--crop-top", "0", "--input-height", "24", "--input-width", "32", "--cnn-channels", "8,16,16",
    "--cnn-lr", "3e-3", "--threads", "1", "--no-progress", "--no-augment", "--seq-len", "8",
    "--stride", "1", "--epochs", str(EPOCHS), "--log-shards", "--device", "cpu",
]


def free_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_torchrun(arguments, cwd, env):
    """Run a 2-process torchrun on loopback; return (exit status, output)."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_addr", "127.0.0.1", "--master_port", str(free_loopback_port()),
        "-m", "liquid_driver.train.cli", *arguments,
    ]
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=TORCHRUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        # torchrun and its workers share the session started above, and only they are in it.
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"torchrun did not finish within {TORCHRUN_TIMEOUT_S} s:\n{output[-4000:]}")
    return process.returncode, output


def read_shards(run_dir, rank):
    return json.loads((run_dir / "shards" / f"rank{rank}.json").read_text())


def epoch_windows(shards, epoch_index):
    return [tuple(window) for window in shards["epochs"][epoch_index]["windows"]]


def read_metrics(run_dir):
    with (run_dir / "metrics.csv").open() as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same data trained by one process (batch 8) and by torchrun with 2 ranks (batch 4 each)."""
    root = tmp_path_factory.mktemp("distributed")
    bags = []
    for seed in range(3):
        path = root / "bags" / f"drive{seed}"
        write_bar_bag(path, FRAMES_PER_BAG, BarSceneConfig(), seed=seed, start_s=100.0 * (seed + 1))
        bags.append(str(path))
    cache_args = ["--cache-dir", str(root / "cache")]

    single_dir = root / "single"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "xdg"))
        for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
            patch.delenv(name, raising=False)
        single_status = main([*bags, "--out", str(single_dir), "--batch-size", "8", *COMMON_ARGS, *cache_args])

    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(root / "xdg")}
    repository = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [repository, env.get("PYTHONPATH")]))
    distributed_dir = root / "ddp"
    status, output = run_torchrun(
        [*bags, "--out", str(distributed_dir), "--batch-size", "4", *COMMON_ARGS, *cache_args], repository, env
    )
    return {
        "bags": bags, "single_status": single_status, "single": single_dir,
        "status": status, "output": output, "ddp": distributed_dir,
    }


def test_torchrun_exits_cleanly(runs):
    assert runs["single_status"] == 0
    assert runs["status"] == 0, runs["output"][-4000:]


def test_ranks_train_disjoint_windows(runs):
    rank0 = read_shards(runs["ddp"], 0)
    rank1 = read_shards(runs["ddp"], 1)
    assert rank0["world_size"] == 2
    assert rank1["world_size"] == 2
    for epoch_index in range(EPOCHS):
        windows0 = epoch_windows(rank0, epoch_index)
        windows1 = epoch_windows(rank1, epoch_index)
        assert len(windows0) == len(windows1) == 41
        assert not set(windows0) & set(windows1)


def test_ranks_cover_single_process_windows(runs):
    single = read_shards(runs["single"], 0)
    rank0 = read_shards(runs["ddp"], 0)
    rank1 = read_shards(runs["ddp"], 1)
    for epoch_index in range(EPOCHS):
        together = collections.Counter(epoch_windows(rank0, epoch_index) + epoch_windows(rank1, epoch_index))
        assert together == collections.Counter(epoch_windows(single, epoch_index))


def test_ranks_end_with_identical_weights(runs):
    rank0 = read_shards(runs["ddp"], 0)
    rank1 = read_shards(runs["ddp"], 1)
    assert len(rank0["parameter_digest"]) == 64
    assert rank0["parameter_digest"] == rank1["parameter_digest"]


def test_weights_match_single_process(runs):
    single = load_file(str(runs["single"] / "last.safetensors"))
    distributed = load_file(str(runs["ddp"] / "last.safetensors"))
    assert sorted(single) == sorted(distributed)
    for name, weights in single.items():
        difference = float((weights.float() - distributed[name].float()).abs().max())
        assert difference <= WEIGHT_TOLERANCE, f"{name}: max abs difference {difference}"


def test_metrics_match_single_process(runs):
    single_rows = read_metrics(runs["single"])
    distributed_rows = read_metrics(runs["ddp"])
    assert [row["epoch"] for row in distributed_rows] == [str(epoch) for epoch in range(1, EPOCHS + 1)]
    for single_row, distributed_row in zip(single_rows, distributed_rows):
        for key in ("train_loss", "val_loss", "val_mae"):
            assert float(distributed_row[key]) == pytest.approx(float(single_row[key]), rel=METRIC_TOLERANCE), key
        assert float(distributed_row["lr_cnn"]) == pytest.approx(float(single_row["lr_cnn"]))
    # Both runs learned: the second epoch validates better than the first.
    assert float(distributed_rows[-1]["val_loss"]) < float(distributed_rows[0]["val_loss"])


def test_only_rank_zero_writes_run_folder(runs):
    run_dir = runs["ddp"]
    for name in ("config.json", "dataset_report.json", "metrics.csv", "model.safetensors", "last_state.pt", "train.log"):
        assert (run_dir / name).is_file(), name
    log = (run_dir / "train.log").read_text()
    assert "rank 0 INFO" in log
    assert "rank 1" not in log
    assert "Best checkpoint" in runs["output"]
    assert runs["output"].count("Best checkpoint") == 1


def test_resume_with_one_process(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    resumed_dir = tmp_path / "resumed"
    arguments = [
        *runs["bags"], "--out", str(resumed_dir), "--batch-size", "8", *COMMON_ARGS,
        "--epochs", str(EPOCHS + 1), "--resume", str(runs["ddp"] / "last.safetensors"), "--no-cache",
    ]
    assert main(arguments) == 0
    rows = read_metrics(resumed_dir)
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 2))
    assert rows[:EPOCHS] == read_metrics(runs["ddp"])


def test_bf16_trains_on_cpu(runs, tmp_path, monkeypatch):
    """Under bf16 autocast the liquid cells leave their float32 kernels for PyTorch operators."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    run_dir = tmp_path / "bf16"
    arguments = [*runs["bags"], "--out", str(run_dir), *COMMON_ARGS, "--epochs", "1", "--precision", "bf16", "--no-cache"]
    assert main(arguments) == 0
    row = read_metrics(run_dir)[0]
    assert math.isfinite(float(row["train_loss"]))
    assert math.isfinite(float(row["val_loss"]))
    assert json.loads((run_dir / "config.json").read_text())["precision"] == "bf16"
