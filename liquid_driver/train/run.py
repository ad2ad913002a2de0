"""A complete training run: load bags, split by episode, train, write the run folder.

The run folder receives:

* `config.json`: the `TrainConfig`, with the command line;
* `dataset_report.json`: the `DatasetReport` plus the train/validation split;
* `metrics.csv`: one row per epoch (losses in (1/m)^2, MAE in 1/m, seconds);
* `model.safetensors`: the checkpoint with the lowest validation loss;
* `last.safetensors` and `last_state.pt`: the latest epoch, for `--resume`;
* `loss.png` and `val_predictions.png`: training curves and validation rollouts;
* `train.log` when started from the command line;
* `tensorboard/`: the metrics as TensorBoard scalars, when the `tensorboard` package is installed;
* `shards/rank<N>.json` with `--log-shards`: per rank, the episodes trained on, the
  windows trained on in each epoch and a digest of the final parameters.

Under torchrun (see `liquid_driver.train.distributed`) every rank trains and
only rank 0 writes these files, except each rank's own `shards/rank<N>.json`.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import inspect
import json
import logging
import math
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from liquid_driver.data.dataset import DatasetError, Episode, load_episodes
from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.data.report import DatasetReport
from liquid_driver.data.windows import WindowDataset
from liquid_driver.model import CheckpointError, DrivingPolicy, load_checkpoint, save_checkpoint
from liquid_driver.train.config import TrainConfig
from liquid_driver.train.distributed import (
    DistributedContext,
    EpisodeShards,
    assign_episodes,
    check_precision,
    parameter_digest,
    single_process_context,
)
from liquid_driver.train.loop import (
    LossSettings,
    TrainingError,
    constant_loss,
    evaluate,
    rollout,
    train_epoch,
)
from liquid_driver.train.plots import plot_losses, plot_predictions

__all__ = ["TrainResult", "split_episodes", "train"]

logger = logging.getLogger(__name__)

BEST_CHECKPOINT = "model.safetensors"
LAST_CHECKPOINT = "last.safetensors"
LAST_STATE = "last_state.pt"
METRICS_COLUMNS = ("epoch", "train_loss", "val_loss", "val_mae", "lr_cnn", "lr_controller", "seconds")
# Validation episodes drawn in val_predictions.png.
_PLOTTED_EPISODES = 3
# Files whose presence marks a run folder as used.
_RUN_OUTPUTS = (BEST_CHECKPOINT, LAST_CHECKPOINT, "metrics.csv")


@dataclass
class TrainResult:
    """Outcome of `train`."""

    run_dir: Path
    checkpoint: Path  # best validation checkpoint
    best_epoch: int
    best_val_loss: float  # (1/m)^2
    best_val_mae: float  # 1/m
    val_loss_constant: float  # (1/m)^2, loss of predicting the training mean
    epochs_completed: int
    stop_reason: str  # "epochs", "early_stopping" or "max_minutes"
    summary: dict[str, Any]


def split_episodes(
    episodes: Sequence[Episode], val_fraction: float, seq_len: int, seed: int
) -> tuple[list[Episode], list[Episode]]:
    """Split episodes into training and validation sets by whole episodes.

    Episodes shorter than `seq_len` are dropped. Episodes are drawn in a
    seeded random order into the validation set until it contains at least
    `val_fraction` of the frames, so the choice is the same for the same seed
    and bags. At least one episode goes to each set. A single episode is cut
    in time instead: its last `val_fraction` becomes the validation episode.

    Raises:
        TrainingError: Too few frames for one window in each set.
    """
    usable = [episode for episode in episodes if len(episode) >= seq_len]
    dropped = len(episodes) - len(usable)
    if dropped:
        logger.info("Dropped %d episodes shorter than seq_len %d frames", dropped, seq_len)
    if not usable:
        raise TrainingError(
            f"no episode has seq_len {seq_len} frames (lengths {[len(e) for e in episodes]}); "
            "record longer drives, raise max_gap or lower --seq-len."
        )

    if len(usable) == 1:
        episode = usable[0]
        val_frames = max(seq_len, int(round(len(episode) * val_fraction)))
        cut = len(episode) - val_frames
        if cut < seq_len:
            raise TrainingError(
                f"the only episode has {len(episode)} frames, too few to hold out {val_frames} "
                f"validation frames and keep a {seq_len}-frame training window; record more data."
            )
        logger.warning(
            "Only one episode: validating on its last %d of %d frames; record several drives "
            "for a validation set independent of training.",
            val_frames,
            len(episode),
        )
        return [episode.slice(0, cut)], [episode.slice(cut, len(episode))]

    total = sum(len(episode) for episode in usable)
    order = np.random.default_rng(seed).permutation(len(usable))
    val_indices: set[int] = set()
    val_frames = 0
    for index in order[:-1]:  # the last drawn episode always stays in training
        val_indices.add(int(index))
        val_frames += len(usable[index])
        if val_frames >= val_fraction * total:
            break
    train = [episode for index, episode in enumerate(usable) if index not in val_indices]
    val = [episode for index, episode in enumerate(usable) if index in val_indices]
    return train, val


def _prepare_run_dir(config: TrainConfig, allow_existing: bool) -> Path:
    run_dir = Path(config.out)
    used = [name for name in _RUN_OUTPUTS if (run_dir / name).exists()]
    if used and not (allow_existing or config.overwrite):
        raise FileExistsError(
            f"run folder {run_dir} contains {', '.join(used)} of an earlier run; choose a new "
            f"--out, pass --overwrite, or continue with --resume {run_dir / LAST_CHECKPOINT}."
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _git_commit() -> str | None:
    """Return the commit of the source tree, or None outside a git checkout."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def _load_resume(config: TrainConfig) -> tuple[TrainConfig, DrivingPolicy | None, dict[str, Any] | None]:
    """Load the resume checkpoint; its preprocessing and model settings replace the config's."""
    if config.resume is None:
        return config, None, None
    path = Path(config.resume)
    policy, metadata = load_checkpoint(path)
    preprocessing = Preprocessing.from_dict(metadata["preprocessing"]) if metadata["preprocessing"] else config.preprocessing
    if preprocessing != config.preprocessing:
        logger.warning("Using the preprocessing of %s: %s", path, preprocessing)
    if policy.config != config.policy:
        logger.info("Using the model settings of %s", path)
    config = dataclasses.replace(config, preprocessing=preprocessing, policy=policy.config)
    state = None
    state_path = path.with_name(LAST_STATE)
    if path.name == LAST_CHECKPOINT and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        logger.info("Continuing %s after epoch %d", path.parent, state["epoch"])
    else:
        logger.info("Fine-tuning the weights of %s with a new optimiser", path)
    return config, policy, state


def _curvature_scale(config: TrainConfig, train_episodes: Sequence[Episode]) -> float:
    if config.curvature_scale is not None:
        return float(config.curvature_scale)
    magnitudes = np.abs(np.concatenate([episode.curvature for episode in train_episodes]))
    scale = float(np.percentile(magnitudes, 95.0))
    # Mostly straight data can have a 95th percentile of 0; fall back to the largest value.
    return scale if scale > 1e-6 else max(float(magnitudes.max()), 1e-3)


def _constant_prediction(train_episodes: Sequence[Episode], settings: LossSettings) -> float:
    """Return the constant curvature that minimises the weighted loss on the training frames."""
    curvature = np.concatenate([episode.curvature for episode in train_episodes]).astype(np.float64)
    weights = 1.0 + settings.curvature_weight * np.abs(curvature) / settings.curvature_scale
    return float(np.sum(weights * curvature) / np.sum(weights))


def _build_optimizer(policy: DrivingPolicy, config: TrainConfig) -> torch.optim.Optimizer:
    cnn_parameters = list(policy.cnn.parameters())
    controller_parameters = list(policy.controller.parameters())
    grouped = {id(parameter) for parameter in cnn_parameters + controller_parameters}
    other = [parameter for parameter in policy.parameters() if id(parameter) not in grouped]
    groups = [
        {"params": cnn_parameters + other, "lr": config.cnn_lr, "name": "cnn"},
        {"params": controller_parameters, "lr": config.controller_lr, "name": "controller"},
    ]
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def _cosine_factor(epoch: int, config: TrainConfig) -> float:
    """Learning-rate factor: cosine from 1 at epoch 0 to min_lr_fraction at config.epochs."""
    progress = min(epoch, config.epochs) / config.epochs
    return config.min_lr_fraction + (1.0 - config.min_lr_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=METRICS_COLUMNS)
        writer.writeheader()
        for row in history:
            writer.writerow({key: row[key] for key in METRICS_COLUMNS})


def _write_prediction_plot(path: Path, policy: DrivingPolicy, val_episodes: Sequence[Episode]) -> float:
    """Plot continuous rollouts of the first validation episodes; return their MAE in 1/m."""
    panels = []
    errors = []
    for index, episode in enumerate(val_episodes):
        predicted = rollout(policy, episode)
        errors.append(np.abs(predicted - episode.curvature))
        if index < _PLOTTED_EPISODES:
            time_s = episode.stamps - episode.stamps[0]
            title = f"validation episode {index + 1}: {episode.source}, {len(episode)} frames"
            panels.append((title, time_s, episode.curvature, predicted))
    plot_predictions(path, panels)
    return float(np.mean(np.concatenate(errors)))


@dataclass
class _PreparedData:
    """Episodes split for training and validation, with their windows and this rank's share."""

    report: DatasetReport
    train_episodes: list[Episode]
    val_episodes: list[Episode]
    train_windows: WindowDataset
    val_windows: WindowDataset
    split: dict[str, Any]
    # Index of each training episode within its bag, in load order.
    train_bag_indices: list[int] = dataclasses.field(default_factory=list)
    # Training episodes of every rank when sharding by episode; None shards by window.
    train_shards: EpisodeShards | None = None
    # Validation windows of this rank when sharding by episode; None shards by window.
    val_indices: list[int] | None = None


def _prepare_data(
    config: TrainConfig, run_dir: Path, write_report: bool = True, context: DistributedContext | None = None
) -> _PreparedData:
    """Load, split and shard the episodes and, if `write_report`, write `dataset_report.json`.

    The split does not depend on the world size. With `config.shard_by` "episode"
    and more than one rank, the training and the validation episodes are then
    assigned to the ranks with `assign_episodes`.

    Raises:
        TrainingError: Too little data, or fewer training episodes than ranks.
    """
    context = context if context is not None else single_process_context("cpu")
    # NOTE: every rank indexes all bags. With the frame cache the frames are memory maps,
    # so under shard_by "episode" a rank reads only the frames of its own episodes (and
    # rank 0 the validation episodes for the rollout plot). With --no-cache every rank
    # decodes and holds all frames.
    episodes, report = load_episodes(config.bags, config.preprocessing, config.dataset, config.cache_dir)
    train_episodes, val_episodes = split_episodes(episodes, config.val_fraction, config.seq_len, config.seed)
    train_windows = WindowDataset(train_episodes, config.seq_len, config.stride)
    val_windows = WindowDataset(val_episodes, config.seq_len, config.seq_len)
    train_bag_indices = _bag_indices(train_episodes, episodes)
    val_bag_indices = _bag_indices(val_episodes, episodes)
    split = {
        "train_episodes": [
            _describe_episode(episode, index) for episode, index in zip(train_episodes, train_bag_indices)
        ],
        "val_episodes": [_describe_episode(episode, index) for episode, index in zip(val_episodes, val_bag_indices)],
        "train_frames": train_windows.frame_count,
        "val_frames": val_windows.frame_count,
        "train_windows": len(train_windows),
        "val_windows": len(val_windows),
    }
    if write_report:
        report_document = {**report.to_dict(), "split": split}
        (run_dir / "dataset_report.json").write_text(json.dumps(report_document, indent=2) + "\n", encoding="utf-8")
    logger.info(
        "Split: %d training episodes (%d frames, %d windows), %d validation episodes (%d frames)",
        len(train_episodes),
        split["train_frames"],
        len(train_windows),
        len(val_episodes),
        split["val_frames"],
    )
    data = _PreparedData(report, train_episodes, val_episodes, train_windows, val_windows, split, train_bag_indices)
    if config.shard_by == "episode" and context.is_distributed:
        _shard_by_episode(data, context)
    return data


def _window_counts(windows: WindowDataset) -> np.ndarray:
    """Return the number of windows of each episode on the current grid."""
    episodes = windows.window_ids(np.arange(len(windows)))[:, 0]
    return np.bincount(episodes, minlength=len(windows.episodes))


def _shard_by_episode(data: _PreparedData, context: DistributedContext) -> None:
    """Assign the training and validation episodes to the ranks, balanced by window count.

    The training counts come from the unshifted window grid. `shift_windows` later
    changes them slightly, and `EpisodeShards.shard` pads every epoch to the
    largest rank's count of that epoch.

    Raises:
        TrainingError: Fewer training episodes than ranks.
    """
    train_episodes = len(data.train_episodes)
    if train_episodes < context.world_size:
        raise TrainingError(
            f"{train_episodes} training episodes cannot be shared by episode among {context.world_size} "
            "ranks, because every rank needs at least one; pass --shard-by window, start fewer ranks "
            "or record more drives."
        )
    train_counts = _window_counts(data.train_windows)
    data.train_shards = EpisodeShards(
        tuple(tuple(episodes) for episodes in assign_episodes(train_counts, context.world_size))
    )
    # The validation grid never shifts. A rank without a validation episode
    # evaluates nothing and adds zeros to the sums.
    val_episodes = data.val_windows.window_ids(np.arange(len(data.val_windows)))[:, 0]
    own_val_episodes = assign_episodes(_window_counts(data.val_windows), context.world_size)[context.rank]
    data.val_indices = [int(index) for index in np.flatnonzero(np.isin(val_episodes, own_val_episodes))]
    if context.is_main:
        loads = [int(sum(train_counts[list(episodes)])) for episodes in data.train_shards.ranks]
        logger.info(
            "Sharding by episode: training episodes per rank %s, windows per rank %s",
            [len(episodes) for episodes in data.train_shards.ranks],
            loads,
        )


def _bag_indices(selected: Sequence[Episode], loaded: Sequence[Episode]) -> list[int]:
    """Return the index within its bag, in load order, of each selected episode.

    An episode cut from a loaded one (see `split_episodes`) gets the index of
    the episode it was cut from.
    """
    index_by_identity: dict[int, int] = {}
    spans: list[tuple[str, float, float, int]] = []
    per_source: dict[str, int] = {}
    for episode in loaded:
        index = per_source.get(episode.source, 0)
        per_source[episode.source] = index + 1
        index_by_identity[id(episode)] = index
        spans.append((episode.source, float(episode.stamps[0]), float(episode.stamps[-1]), index))
    indices = []
    for episode in selected:
        if id(episode) in index_by_identity:
            indices.append(index_by_identity[id(episode)])
            continue
        first = float(episode.stamps[0])
        indices.append(
            next(index for source, start, stop, index in spans if source == episode.source and start <= first <= stop)
        )
    return indices


def _describe_episode(episode: Episode, bag_index: int) -> dict[str, Any]:
    return {
        "source": episode.source,
        "episode": bag_index,
        "frames": len(episode),
        "start_s": float(episode.stamps[0]),
    }


@dataclass
class _Progress:
    """Epoch history and early-stopping state; saved in `last_state.pt` for resuming."""

    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best_val_loss: float = math.inf
    best_val_mae: float = math.nan
    best_epoch: int = 0
    epochs_without_improvement: int = 0

    @property
    def epoch(self) -> int:
        """Number of completed epochs."""
        return int(self.history[-1]["epoch"]) if self.history else 0

    def record(self, row: dict[str, float]) -> bool:
        """Append an epoch's metrics; return whether its validation loss is the best so far."""
        self.history.append(row)
        if row["val_loss"] < self.best_val_loss:
            self.best_val_loss = row["val_loss"]
            self.best_val_mae = row["val_mae"]
            self.best_epoch = int(row["epoch"])
            self.epochs_without_improvement = 0
            return True
        self.epochs_without_improvement += 1
        return False


class _Trainer:
    """Optimiser, schedule, random generators and run folder of one training run.

    In a distributed run every rank holds one `_Trainer`. The numpy generator of
    the window grid and order and the torch generator `generator` advance in step
    on all ranks. `last_state.pt` stores rank 0's copy, so it does not depend on
    the world size.
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        data: _PreparedData,
        policy: DrivingPolicy,
        summary: dict[str, Any],
        context: DistributedContext,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.data = data
        self.context = context
        self.policy = policy.to(context.device)
        # The module that training batches run through: DDP synchronises the gradients.
        self.model: torch.nn.Module = policy
        if context.is_distributed:
            device_ids = [context.device.index] if context.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(
                policy, device_ids=device_ids, **_no_buffer_sync_option()
            )
        self.autocast_dtype = torch.bfloat16 if config.precision == "bf16" else None
        self.summary = summary
        self.settings = LossSettings(
            config.burn_in, config.curvature_weight, _curvature_scale(config, data.train_episodes)
        )
        self.optimizer = _build_optimizer(policy, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda epoch: _cosine_factor(epoch, config)
        )
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed + 1)
        self.progress = _Progress()
        self.best_weights = copy.deepcopy(policy.state_dict())
        self.tensorboard = _open_tensorboard(run_dir) if context.is_main else None
        self.shard_log: list[dict[str, Any]] = []

        constant = _constant_prediction(data.train_episodes, self.settings)
        summary["curvature_scale"] = self.settings.curvature_scale
        summary["val_loss_constant"] = constant_loss(data.val_windows, self.settings, constant)

    def restore(self, state: dict[str, Any], previous_best: Path | None) -> None:
        """Continue from a `last_state.pt` and, if given, the earlier run's best checkpoint."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.progress = _Progress(**state["progress"])
        self.rng.bit_generator.state = state["numpy_rng"]
        self.generator.set_state(state["torch_generator"])
        torch.set_rng_state(state["torch_rng"])
        if previous_best is not None and previous_best.exists():
            # Until an epoch improves on it, the earlier run's best checkpoint stays the result.
            self.best_weights = copy.deepcopy(load_checkpoint(previous_best)[0].state_dict())

    def _augment_generator(self) -> torch.Generator:
        """Return the generator of this epoch's augmentation on this rank.

        A single process draws from `self.generator` directly. In a distributed
        run each epoch draws one seed from the shared `self.generator`, and each
        rank seeds its augmentation and the global torch generator (dropout) from
        that seed and its rank, so that ranks draw different augmentations.
        """
        if not self.context.is_distributed:
            return self.generator
        epoch_seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        augment_seed, dropout_seed = np.random.SeedSequence([epoch_seed, self.context.rank]).generate_state(2)
        torch.manual_seed(int(dropout_seed))
        return torch.Generator().manual_seed(int(augment_seed))

    def run_epoch(self, epoch: int, deadline: float | None) -> bool:
        """Train and validate one epoch and save checkpoints; return whether the deadline passed."""
        started = time.monotonic()
        trained_windows: list[tuple[int, int]] = []
        train_loss, hit_deadline = train_epoch(
            self.model,
            self.optimizer,
            self.data.train_windows,
            batch_size=self.config.batch_size,
            settings=self.settings,
            augment=self.config.augment,
            grad_clip=self.config.grad_clip,
            rng=self.rng,
            generator=self._augment_generator(),
            deadline=deadline,
            progress=self.config.progress if self.context.is_main else False,
            description=f"epoch {epoch}",
            preprocessing=self.config.preprocessing,
            context=self.context,
            autocast_dtype=self.autocast_dtype,
            trained_windows=trained_windows,
            episode_shards=self.data.train_shards,
        )
        train_seconds = time.monotonic() - started
        (trained_frames,) = self.context.all_reduce_sum([len(trained_windows) * self.config.seq_len])
        if self.config.log_shards:
            self.shard_log.append({"epoch": epoch, "windows": trained_windows})
        evaluation = evaluate(
            self.policy,
            self.data.val_windows,
            self.settings,
            context=self.context,
            autocast_dtype=self.autocast_dtype,
            indices=self.data.val_indices,
        )
        learning_rates = [group["lr"] for group in self.optimizer.param_groups]
        self.scheduler.step()
        row = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": evaluation.loss,
            "val_mae": evaluation.mae,
            "lr_cnn": learning_rates[0],
            "lr_controller": learning_rates[1],
            "seconds": time.monotonic() - started,
        }
        improved = self.progress.record(row)
        if improved:
            self.best_weights = copy.deepcopy(self.policy.state_dict())
        if self.context.is_main:
            self._write_epoch(row, improved, trained_frames / max(train_seconds, 1e-9))
        return hit_deadline or self.context.any(deadline is not None and time.monotonic() > deadline)

    def _write_epoch(self, row: dict[str, float], improved: bool, frames_per_s: float) -> None:
        """Log an epoch and write its metrics and checkpoints (rank 0 only)."""
        epoch = int(row["epoch"])
        _write_metrics(self.run_dir / "metrics.csv", self.progress.history)
        if self.tensorboard is not None:
            for key in ("train_loss", "val_loss", "val_mae", "lr_cnn", "lr_controller"):
                self.tensorboard.add_scalar(key, row[key], epoch)
            self.tensorboard.flush()
        logger.info(
            "Epoch %d/%d: train loss %.5f, val loss %.5f (constant %.5f), val MAE %.4f 1/m, %.1f s, "
            "%.0f training frames/s (world size %d)",
            epoch,
            self.config.epochs,
            row["train_loss"],
            row["val_loss"],
            self.summary["val_loss_constant"],
            row["val_mae"],
            row["seconds"],
            frames_per_s,
            self.context.world_size,
        )

        self._update_summary()
        if improved:
            _save(self.run_dir / BEST_CHECKPOINT, self.policy, self.config, self.summary)
        _save(self.run_dir / LAST_CHECKPOINT, self.policy, self.config, self.summary)
        self._save_state()

    def write_shard_log(self) -> None:
        """Write this rank's `shards/rank<N>.json`: trained episodes and windows, and the parameters' digest.

        `episodes` lists every training episode of which this rank trained at
        least one window, with its bag (`source`), its index within the bag
        (`episode`) and its index among the training episodes (`train_index`),
        which is the first element of each window in `epochs`.
        """
        folder = self.run_dir / "shards"
        folder.mkdir(parents=True, exist_ok=True)
        trained = sorted({episode for epoch in self.shard_log for episode, _ in epoch["windows"]})
        document = {
            "rank": self.context.rank,
            "world_size": self.context.world_size,
            "shard_by": self.config.shard_by,
            "batch_size": self.config.batch_size,
            "episodes": [
                {
                    "source": self.data.train_episodes[index].source,
                    "episode": self.data.train_bag_indices[index],
                    "train_index": index,
                }
                for index in trained
            ],
            "parameter_digest": parameter_digest(self.policy),
            "epochs": self.shard_log,
        }
        path = folder / f"rank{self.context.rank}.json"
        path.write_text(json.dumps(document) + "\n", encoding="utf-8")

    def _update_summary(self) -> None:
        self.summary.update(
            epochs=self.progress.epoch,
            best_epoch=self.progress.best_epoch,
            best_val_loss=self.progress.best_val_loss,
            best_val_mae=self.progress.best_val_mae,
        )

    def _save_state(self) -> None:
        state = {
            "epoch": self.progress.epoch,
            "progress": dataclasses.asdict(self.progress),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "numpy_rng": self.rng.bit_generator.state,
            "torch_generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        torch.save(state, self.run_dir / LAST_STATE)

    def finish(self, stop_reason: str, seconds: float) -> None:
        """Restore the best weights, then write the final checkpoint, plots and export."""
        if self.progress.best_epoch == 0:
            raise TrainingError(
                f"no epoch produced a finite validation loss (history {self.progress.history}); "
                "check the validation episodes in dataset_report.json."
            )
        if self.tensorboard is not None:
            self.tensorboard.close()
        self.policy.load_state_dict(self.best_weights)
        self._update_summary()
        self.summary.update(stop_reason=stop_reason, seconds=seconds, world_size=self.context.world_size)
        if not self.context.is_main:
            return
        # The validation rollouts run on the CPU, as the perception node does.
        self.policy.cpu()
        self.summary["val_mae_rollout"] = _write_prediction_plot(
            self.run_dir / "val_predictions.png", self.policy, self.data.val_episodes
        )
        _save(self.run_dir / BEST_CHECKPOINT, self.policy, self.config, self.summary)

        history = self.progress.history
        plot_losses(
            self.run_dir / "loss.png",
            [int(row["epoch"]) for row in history],
            [row["train_loss"] for row in history],
            [row["val_loss"] for row in history],
            constant_loss=self.summary["val_loss_constant"],
            best_epoch=self.progress.best_epoch,
        )
        logger.info(
            "Best validation loss %.5f at epoch %d (constant prediction %.5f), MAE %.4f 1/m; "
            "rollout MAE %.4f 1/m",
            self.progress.best_val_loss,
            self.progress.best_epoch,
            self.summary["val_loss_constant"],
            self.progress.best_val_mae,
            self.summary["val_mae_rollout"],
        )

        if self.config.export:
            export_path = Path(self.config.export)
            export_path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.run_dir / BEST_CHECKPOINT, export_path)
            logger.info("Exported the best checkpoint to %s", export_path)


def train(
    config: TrainConfig,
    command_line: Sequence[str] | None = None,
    context: DistributedContext | None = None,
) -> TrainResult:
    """Train a policy as configured and write the run folder.

    `config.resume` names a checkpoint to start from. Resuming from a run's
    `last.safetensors` with its `last_state.pt` beside it continues that run:
    optimiser, schedule, early-stopping counters, random generators and metrics
    history are restored, and training goes on up to `config.epochs` in total.
    Any other checkpoint only provides the starting weights. Either way the
    checkpoint's preprocessing and model settings replace those in `config`.

    `config.threads` sets torch's thread count for the whole process.

    `context` is this process's rank in a torchrun launch, from
    `liquid_driver.train.distributed.init_distributed`; None trains in this
    process alone on `config.device`. Every rank of a distributed run calls
    `train` with the same config. A failure while preparing the run raises on
    the rank that hit it and `SetupError` on the others.

    Raises:
        FileExistsError: `config.out` contains an earlier run and neither
            overwrite nor resume is set.
        liquid_driver.data.dataset.DatasetError: The bags cannot be used.
        liquid_driver.model.CheckpointError: The resume checkpoint is invalid.
        TrainingError: Too little data or a diverging loss.
        ValueError: The device or precision is not available here.
        liquid_driver.train.distributed.SetupError: Another rank failed while preparing the run.
    """
    started = time.monotonic()
    deadline = started + 60.0 * config.max_minutes if config.max_minutes is not None else None
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    context = context if context is not None else single_process_context(config.device)
    check_precision(config.precision, context.device)

    config, run_dir, resumed_policy, resume_state, command = _setup_run(config, command_line, context)
    torch.manual_seed(config.seed)
    data = _load_data_in_turn(config, run_dir, context)
    policy = resumed_policy if resumed_policy is not None else DrivingPolicy(config.policy)
    _check_output_range(policy, data.report.curvature)
    summary: dict[str, Any] = {
        "bags": [str(bag) for bag in config.bags],
        "frames_read": data.report.frames_read,
        "frames_used": data.report.frames_used,
        "train_frames": data.split["train_frames"],
        "val_frames": data.split["val_frames"],
        "train_episodes": len(data.train_episodes),
        "val_episodes": len(data.val_episodes),
        "seed": config.seed,
        "command_line": command,
        "git_commit": _git_commit(),
    }
    trainer = _Trainer(config, run_dir, data, policy, summary, context)
    if resume_state is not None:
        trainer.restore(resume_state, Path(config.resume).with_name(BEST_CHECKPOINT))

    stop_reason = "epochs"
    # Only rank 0 shows progress; None lets tqdm decide from the terminal.
    if not context.is_main:
        hide_progress = True
    elif config.progress is None:
        hide_progress = None
    else:
        hide_progress = not config.progress
    epoch_bar = tqdm(
        range(trainer.progress.epoch, config.epochs),
        desc="epochs",
        initial=trainer.progress.epoch,
        total=config.epochs,
        disable=hide_progress,
        unit="epoch",
    )
    for epoch_index in epoch_bar:
        if trainer.run_epoch(epoch_index + 1, deadline):
            stop_reason = "max_minutes"
            if context.is_main:
                logger.warning(
                    "Stopping after epoch %d: the %.1f-minute limit is reached", epoch_index + 1, config.max_minutes
                )
            break
        # The validation loss is the same on every rank, so this agrees already; the
        # reduction guarantees it, because a rank that stopped alone would hang the others.
        if context.any(trainer.progress.epochs_without_improvement >= config.patience):
            stop_reason = "early_stopping"
            logger.info(
                "Stopping after epoch %d: no better validation loss for %d epochs", epoch_index + 1, config.patience
            )
            break
    epoch_bar.close()
    if config.log_shards:
        trainer.write_shard_log()

    trainer.finish(stop_reason, time.monotonic() - started)
    # Wait for rank 0's final files before any rank leaves the process group. With gloo
    # on torch 2.13, a rank that left while rank 0 was still writing once aborted with
    # "terminate called without an active exception".
    context.raise_if_any_failed(None)
    progress = trainer.progress
    return TrainResult(
        run_dir=run_dir,
        checkpoint=run_dir / BEST_CHECKPOINT,
        best_epoch=progress.best_epoch,
        best_val_loss=progress.best_val_loss,
        best_val_mae=progress.best_val_mae,
        val_loss_constant=float(summary["val_loss_constant"]),
        epochs_completed=progress.epoch,
        stop_reason=stop_reason,
        summary=summary,
    )


def _no_buffer_sync_option() -> dict[str, bool]:
    """Return the DDP keyword that stops the buffer broadcast before every forward pass.

    The policy's buffers are its fixed wiring masks, the same on every rank.
    PyTorch 2.13 renamed `broadcast_buffers` to `forward_sync_buffers` and warns
    about the old name; older releases know only `broadcast_buffers`.
    """
    parameters = inspect.signature(torch.nn.parallel.DistributedDataParallel).parameters
    if "forward_sync_buffers" in parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


# Errors a rank may hit while preparing a run; the other ranks learn of them
# through DistributedContext.raise_if_any_failed instead of waiting forever.
_SETUP_ERRORS = (DatasetError, CheckpointError, TrainingError, OSError, ValueError)


def _setup_run(
    config: TrainConfig, command_line: Sequence[str] | None, context: DistributedContext
) -> tuple[TrainConfig, Path, DrivingPolicy | None, dict[str, Any] | None, list[str]]:
    """Load the resume checkpoint and check the run folder on every rank; rank 0 writes `config.json`."""
    error: BaseException | None = None
    run_dir = Path(config.out)
    resumed_policy = None
    resume_state = None
    command = list(command_line or [])
    try:
        config, resumed_policy, resume_state = _load_resume(config)
        same_folder = resume_state is not None and Path(config.resume).resolve().parent == run_dir.resolve()
        run_dir = _prepare_run_dir(config, same_folder)
        if context.is_main:
            config_document = {**config.to_dict(), "command_line": command}
            (run_dir / "config.json").write_text(json.dumps(config_document, indent=2) + "\n", encoding="utf-8")
    except _SETUP_ERRORS as caught:
        error = caught
    context.raise_if_any_failed(error)
    return config, run_dir, resumed_policy, resume_state, command


def _load_data_in_turn(config: TrainConfig, run_dir: Path, context: DistributedContext) -> _PreparedData:
    """Load the episodes on local rank 0 first, then on the other ranks of each machine.

    Local rank 0 fills the frame cache, and the other ranks read the finished
    entries instead of building the same entries at the same time.
    """
    data: _PreparedData | None = None
    for first_turn in (True, False):
        error: BaseException | None = None
        if (context.local_rank == 0) == first_turn:
            try:
                data = _prepare_data(config, run_dir, write_report=context.is_main, context=context)
            except _SETUP_ERRORS as caught:
                error = caught
        context.raise_if_any_failed(error)
    assert data is not None  # every rank loaded in one of the two turns or raised
    return data


def _open_tensorboard(run_dir: Path) -> Any:
    """Return a TensorBoard SummaryWriter on `run_dir/tensorboard`, or None without tensorboard."""
    # NOTE: only the path without tensorboard has run in this project's tests.
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        logger.debug("tensorboard is not installed; metrics go to metrics.csv only")
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _save(path: Path, policy: DrivingPolicy, config: TrainConfig, summary: dict[str, Any]) -> None:
    save_checkpoint(
        path,
        policy,
        metadata={"preprocessing": config.preprocessing.to_dict(), "training": dict(summary)},
    )


def _check_output_range(policy: DrivingPolicy, curvature: dict[str, float]) -> None:
    """Warn when demonstrated curvature exceeds most of the policy's output range."""
    largest = max(abs(curvature.get("p5", 0.0)), abs(curvature.get("p95", 0.0)))
    if largest > 0.9 * policy.output_scale:
        logger.warning(
            "5-95 %% of the demonstrated curvature reaches %.2f 1/m but the policy output is "
            "limited to +-%.2f 1/m; raise --output-scale.",
            largest,
            policy.output_scale,
        )
