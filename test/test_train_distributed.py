"""Data-parallel training: real 2-process torchruns (gloo, CPU) against one process.

With `--shard-by window` both runs see the same global batches. One process trains with batch 8. Each
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

With `--shard-by episode` each rank trains on its own whole episodes, so the
global batches differ from the single process's and only the quality of the
result is compared (see EPISODE_VAL_LOSS_FACTOR).
"""

import collections
import csv
import json
import math
import pathlib
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
from safetensors.torch import load_file

from liquid_driver.data.synthetic import BarSceneConfig, write_bar_bag
from liquid_driver.model import load_checkpoint
from liquid_driver.train.cli import main
from liquid_driver.train.distributed import EpisodeShards, assign_episodes

REPOSITORY = str(pathlib.Path(__file__).resolve().parent.parent)
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
# Bags of unequal length for the episode-sharded run: one validates, and the others
# split unevenly over 2 ranks, so the smaller shard is padded.
EPISODE_BAG_FRAMES = (40, 48, 56, 72)
# Largest allowed ratio between the final validation losses of the episode-sharded
# run and the single process. Both take about the same number of steps on global
# batches of 8, but of other windows in another order, which after 2 epochs changes
# the loss by up to 2x: 0.0028 against 0.0053 (1/m)^2 when this test was written.
# A run that did not learn stays near the constant prediction's loss, 0.18 (1/m)^2,
# and fails both this factor and EPISODE_VAL_LOSS_BASELINE_FRACTION.
EPISODE_VAL_LOSS_FACTOR = 4.0
# Largest allowed final validation loss of both runs, as a fraction of the constant prediction's.
EPISODE_VAL_LOSS_BASELINE_FRACTION = 0.25
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


def write_bags(folder, frame_counts):
    """Write one synthetic bag per entry of `frame_counts`; return their paths."""
    bags = []
    for seed, frames in enumerate(frame_counts):
        path = folder / f"drive{seed}"
        write_bar_bag(path, frames, BarSceneConfig(), seed=seed, start_s=100.0 * (seed + 1))
        bags.append(str(path))
    return bags


def torchrun_env(root):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(root / "xdg")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPOSITORY, env.get("PYTHONPATH")]))
    return env


def train_single_process(arguments, root):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(root / "xdg"))
        for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
            patch.delenv(name, raising=False)
        return main(arguments)


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
    bags = write_bags(root / "bags", [FRAMES_PER_BAG] * 3)
    cache_args = ["--cache-dir", str(root / "cache")]

    single_dir = root / "single"
    single_status = train_single_process(
        [*bags, "--out", str(single_dir), "--batch-size", "8", *COMMON_ARGS, *cache_args], root
    )
    distributed_dir = root / "ddp"
    status, output = run_torchrun(
        [*bags, "--out", str(distributed_dir), "--batch-size", "4", "--shard-by", "window", *COMMON_ARGS, *cache_args],
        REPOSITORY,
        torchrun_env(root),
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


@pytest.fixture(scope="module")
def episode_runs(tmp_path_factory):
    """Bags of unequal length trained by one process (batch 8) and by 2 episode-sharded ranks (batch 4 each)."""
    root = tmp_path_factory.mktemp("episodes")
    bags = write_bags(root / "bags", EPISODE_BAG_FRAMES)
    cache_args = ["--cache-dir", str(root / "cache")]
    single_dir = root / "single"
    single_status = train_single_process(
        [*bags, "--out", str(single_dir), "--batch-size", "8", *COMMON_ARGS, *cache_args], root
    )
    distributed_dir = root / "ddp"
    status, output = run_torchrun(
        [*bags, "--out", str(distributed_dir), "--batch-size", "4", "--shard-by", "episode", *COMMON_ARGS, *cache_args],
        REPOSITORY,
        torchrun_env(root),
    )
    return {"single_status": single_status, "single": single_dir, "status": status, "output": output, "ddp": distributed_dir}


def episode_ids(shards):
    return {(episode["source"], episode["episode"]) for episode in shards["episodes"]}


def test_episode_sharding_exits_cleanly(episode_runs):
    assert episode_runs["single_status"] == 0
    assert episode_runs["status"] == 0, episode_runs["output"][-4000:]


def test_episode_shards_partition_training_episodes(episode_runs):
    report = json.loads((episode_runs["ddp"] / "dataset_report.json").read_text())
    training = {(episode["source"], episode["episode"]) for episode in report["split"]["train_episodes"]}
    rank0 = read_shards(episode_runs["ddp"], 0)
    rank1 = read_shards(episode_runs["ddp"], 1)
    assert rank0["shard_by"] == rank1["shard_by"] == "episode"
    assert episode_ids(rank0)
    assert episode_ids(rank1)
    assert not episode_ids(rank0) & episode_ids(rank1)
    assert episode_ids(rank0) | episode_ids(rank1) == training


def test_episode_shards_train_own_windows_only(episode_runs):
    for rank in (0, 1):
        shards = read_shards(episode_runs["ddp"], rank)
        own = {episode["train_index"] for episode in shards["episodes"]}
        for epoch in shards["epochs"]:
            assert {episode for episode, _ in epoch["windows"]} == own


def test_episode_shards_run_same_steps(episode_runs):
    rank0 = read_shards(episode_runs["ddp"], 0)
    rank1 = read_shards(episode_runs["ddp"], 1)
    assert len(rank0["epochs"]) == len(rank1["epochs"]) == EPOCHS
    for epoch0, epoch1 in zip(rank0["epochs"], rank1["epochs"]):
        assert len(epoch0["windows"]) == len(epoch1["windows"])
        # The smaller shard repeats some of its own windows up to the larger one's count.
        unique = [len(set(map(tuple, epoch["windows"]))) for epoch in (epoch0, epoch1)]
        assert max(unique) == len(epoch0["windows"])


def test_episode_shards_end_with_identical_weights(episode_runs):
    rank0 = read_shards(episode_runs["ddp"], 0)
    rank1 = read_shards(episode_runs["ddp"], 1)
    assert rank0["parameter_digest"] == rank1["parameter_digest"]


def test_episode_sharding_close_to_single_process(episode_runs):
    single_rows = read_metrics(episode_runs["single"])
    distributed_rows = read_metrics(episode_runs["ddp"])
    assert len(distributed_rows) == len(single_rows) == EPOCHS
    single_loss = float(single_rows[-1]["val_loss"])
    distributed_loss = float(distributed_rows[-1]["val_loss"])
    assert distributed_loss <= EPISODE_VAL_LOSS_FACTOR * single_loss
    assert single_loss <= EPISODE_VAL_LOSS_FACTOR * distributed_loss
    _, metadata = load_checkpoint(episode_runs["ddp"] / "model.safetensors")
    baseline = EPISODE_VAL_LOSS_BASELINE_FRACTION * metadata["training"]["val_loss_constant"]
    assert single_loss <= baseline
    assert distributed_loss <= baseline
    assert distributed_loss < float(distributed_rows[0]["val_loss"])


def test_assign_episodes_balances_windows():
    assert assign_episodes([10, 3, 7, 7, 2], 2) == [[0, 1, 4], [2, 3]]
    assert assign_episodes([5, 5, 5, 5], 2) == [[0, 2], [1, 3]]
    assert assign_episodes([4, 1], 1) == [[0, 1]]


def test_assign_episodes_is_deterministic_partition():
    counts = [37, 12, 12, 40, 5, 19, 23, 8, 30]
    assignment = assign_episodes(counts, 3)
    assert assignment == assign_episodes(list(counts), 3)
    flat = [episode for episodes in assignment for episode in episodes]
    assert sorted(flat) == list(range(len(counts)))
    loads = [sum(counts[episode] for episode in episodes) for episodes in assignment]
    # Greedy assignment in descending order leaves the loads at most one episode apart.
    assert max(loads) - min(loads) <= max(counts)


def test_assign_episodes_more_ranks_than_episodes():
    assert assign_episodes([3, 9], 4) == [[1], [0], [], []]
    assert assign_episodes([], 2) == [[], []]


@pytest.mark.parametrize("world_size", [0, -1, True, 1.5])
def test_assign_episodes_rejects_invalid_world_size(world_size):
    with pytest.raises(ValueError, match="world_size"):
        assign_episodes([1, 2], world_size)


def test_assign_episodes_rejects_negative_count():
    with pytest.raises(ValueError, match="counts"):
        assign_episodes([1, -2], 2)


def test_episode_shard_pads_with_own_windows():
    shards = EpisodeShards(((0,), (1, 2)))
    window_episodes = [0, 0, 1, 1, 1, 2]
    order = np.array([5, 0, 3, 1, 2, 4])
    window_episodes = np.array(window_episodes)
    # Rank 1 keeps its 4 windows in the shared order; rank 0 repeats its 2 to reach 4.
    assert shards.shard(order, window_episodes, 1).tolist() == [5, 3, 2, 4]
    assert shards.shard(order, window_episodes, 0).tolist() == [0, 1, 0, 1]


def test_episode_shard_rejects_rank_without_windows():
    shards = EpisodeShards(((0,), ()))
    with pytest.raises(ValueError, match="no training window"):
        shards.shard(np.arange(3), np.zeros(3, dtype=np.int64), 1)


def test_episode_sharding_needs_episode_per_rank(tmp_path):
    """Three bags give two training episodes, too few for four ranks."""
    from liquid_driver.train.config import TrainConfig
    from liquid_driver.train.distributed import DistributedContext
    from liquid_driver.train.loop import TrainingError
    from liquid_driver.train.run import _prepare_data

    bags = write_bags(tmp_path / "bags", [FRAMES_PER_BAG] * 3)
    config = TrainConfig(bags=bags, out=str(tmp_path / "run"), seq_len=8, stride=1)
    context = DistributedContext(rank=0, world_size=4)
    with pytest.raises(TrainingError, match="--shard-by window"):
        _prepare_data(config, tmp_path, write_report=False, context=context)
