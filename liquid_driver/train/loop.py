"""Training and evaluation passes over window datasets.

Every window starts from the zero state and runs with the recorded dt, so
gradients flow through at most `seq_len` steps (truncated backpropagation
through time). The loss is a weighted mean squared error of curvature in
(1/m)^2 in which large |curvature| counts more.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from liquid_driver.data.dataset import Episode
from liquid_driver.data.preprocess import frames_to_tensor
from liquid_driver.data.windows import WindowDataset
from liquid_driver.model import DrivingPolicy
from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.train.augment import augment_frames_, view_shift_
from liquid_driver.train.config import AugmentConfig
from liquid_driver.train.distributed import DistributedContext, EpisodeShards, single_process_context

__all__ = [
    "Evaluation",
    "LossSettings",
    "TrainingError",
    "constant_loss",
    "curvature_weights",
    "evaluate",
    "rollout",
    "train_epoch",
    "weighted_mse",
]

# Windows per forward pass during evaluation; no gradients are kept, so it can
# exceed the training batch size.
_EVAL_BATCH_SIZE = 64
# Frames per forward pass of a continuous rollout; the state carries across chunks.
_ROLLOUT_CHUNK = 256


class TrainingError(RuntimeError):
    """Training cannot continue, with the reason and what to change."""


def curvature_weights(curvature: torch.Tensor, weight: float, scale: float) -> torch.Tensor:
    """Return loss weights 1 + weight * |curvature| / scale (curvature and scale in 1/m)."""
    return 1.0 + weight * curvature.abs() / scale


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Return sum(weights * (prediction - target)^2) / sum(weights), in (1/m)^2."""
    return (weights * (prediction - target).square()).sum() / weights.sum()


@dataclass
class LossSettings:
    """Loss weighting shared by training and evaluation."""

    burn_in: int  # leading steps of each window left out of the loss
    curvature_weight: float  # alpha in 1 + alpha * |curvature| / scale
    curvature_scale: float  # 1/m


def _window_loss_terms(
    policy: DrivingPolicy,
    frames_uint8: torch.Tensor,
    dt: torch.Tensor,
    curvature: torch.Tensor,
    settings: LossSettings,
    augment: AugmentConfig | None = None,
    generator: torch.Generator | None = None,
    preprocessing: Preprocessing | None = None,
    device: torch.device | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run a batch of windows; return (prediction, target, weights) after burn-in, each (B, T').

    With `augment` and `generator`, the frames are augmented; with `preprocessing`
    too, some windows are also view-shifted and their curvature corrected. The
    augmentation runs on the CPU with the CPU `generator`; the batch then moves to
    `device`. With `autocast_dtype` the forward pass runs under `torch.autocast`;
    the returned prediction is float32 either way.
    """
    frames = frames_to_tensor(frames_uint8)  # (B, T, h, w, 3) uint8 -> (B, T, 3, h, w) float
    if augment is not None and generator is not None:
        if preprocessing is not None:
            frames, curvature = view_shift_(frames, curvature, augment, preprocessing, generator)
        frames = augment_frames_(frames, augment, generator)
    if device is not None and device.type != "cpu":
        frames = frames.to(device, non_blocking=True)
        dt = dt.to(device, non_blocking=True)
        curvature = curvature.to(device, non_blocking=True)
    with torch.autocast(frames.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        prediction, _ = policy(frames, dt)  # (B, T, 1) in 1/m
    prediction = prediction.float()[..., 0][:, settings.burn_in :]  # (B, T, 1) -> (B, T')
    target = curvature[:, settings.burn_in :]
    weights = curvature_weights(target, settings.curvature_weight, settings.curvature_scale)
    return prediction, target, weights


def train_epoch(
    policy: DrivingPolicy,
    optimizer: torch.optim.Optimizer,
    windows: WindowDataset,
    *,
    batch_size: int,
    settings: LossSettings,
    augment: AugmentConfig,
    grad_clip: float,
    rng: np.random.Generator,
    generator: torch.Generator,
    deadline: float | None = None,
    progress: bool | None = None,
    description: str = "train",
    preprocessing: Preprocessing | None = None,
    context: DistributedContext | None = None,
    autocast_dtype: torch.dtype | None = None,
    trained_windows: list[tuple[int, int]] | None = None,
    episode_shards: EpisodeShards | None = None,
) -> tuple[float, bool]:
    """Run one epoch of shuffled windows with gradient clipping.

    Args:
        policy: The policy, or the `DistributedDataParallel` wrapper around it.
        preprocessing: Crop and resize of the frames; needed for the view-shift
            augmentation, which is skipped when None.
        deadline: `time.monotonic()` value after which the epoch stops early. In a
            distributed run all ranks stop after the same batch.
        progress: Show a tqdm bar; None shows it only on a terminal.
        context: Rank, world size and device; None trains in this process alone on the CPU.
            Every rank must pass the same `rng` state, so that all ranks draw the
            same window grid and order and then train on their own share of it.
            That share is every `world_size`-th window of the order, or the windows
            of the rank's own episodes with `episode_shards`.
        autocast_dtype: Run forward passes under `torch.autocast` with this dtype.
        trained_windows: Receives (episode index, start frame) of each window this rank trained on.
        episode_shards: The training episodes of every rank; each rank then trains on
            the windows of its own episodes (see `EpisodeShards.shard`). None shards by window.

    Returns:
        (mean training loss in (1/m)^2 weighted by batch size, over all ranks; whether the
        deadline stopped the epoch).

    Raises:
        TrainingError: The loss became NaN or infinite.
    """
    context = context if context is not None else single_process_context("cpu")
    policy.train()
    windows.shift_windows(rng)
    permutation = rng.permutation(len(windows))
    if context.is_distributed and episode_shards is not None:
        window_episodes = windows.window_ids(np.arange(len(windows)))[:, 0]
        order = episode_shards.shard(permutation, window_episodes, context.rank)
    else:
        order = context.shard(permutation)
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    parameters = [parameter for parameter in policy.parameters() if parameter.requires_grad]

    total_loss = 0.0
    total_windows = 0
    hit_deadline = False
    bar = tqdm(batches, desc=description, leave=False, disable=_tqdm_disable(progress), unit="batch")
    for indices in bar:
        frames, dt, curvature = windows.get_batch(indices)
        if trained_windows is not None:
            trained_windows.extend((int(episode), int(start)) for episode, start in windows.window_ids(indices))
        prediction, target, weights = _window_loss_terms(
            policy, frames, dt, curvature, settings, augment, generator, preprocessing,
            context.device, autocast_dtype,
        )
        if context.is_distributed:
            loss, loss_value = _global_weighted_mse(prediction, target, weights, context)
        else:
            loss = weighted_mse(prediction, target, weights)
            loss_value = float(loss.detach())
        if not math.isfinite(loss_value):
            raise TrainingError(
                f"training loss became {loss_value}; lower the learning rates "
                "(--cnn-lr, --controller-lr) or the gradient clip (--grad-clip)."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        optimizer.step()

        total_loss += loss_value * len(indices)
        total_windows += len(indices)
        bar.set_postfix(loss=f"{loss_value:.4f}")
        if deadline is not None and context.any(time.monotonic() > deadline):
            hit_deadline = True
            break
    bar.close()
    return total_loss / max(total_windows, 1), hit_deadline


def _global_weighted_mse(
    prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, context: DistributedContext
) -> tuple[torch.Tensor, float]:
    """Return this rank's loss term for backward, and the weighted MSE of the global batch.

    `DistributedDataParallel` averages gradients over the ranks, so this rank's
    sum(weights * error^2) scaled by world_size / (global sum of weights) makes
    the averaged gradient that of the weighted MSE over all ranks' windows. That
    is what one process would compute on the same global batch, even when the
    ranks' weight sums differ.
    """
    weighted_error = (weights * (prediction - target).square()).sum()
    global_error, global_weight = context.all_reduce_sum([float(weighted_error.detach()), float(weights.sum())])
    loss = weighted_error * (context.world_size / global_weight)
    return loss, global_error / global_weight


@dataclass
class Evaluation:
    """Validation metrics over all windows."""

    loss: float  # weighted MSE, (1/m)^2
    mae: float  # mean absolute curvature error, 1/m


@torch.no_grad()
def evaluate(
    policy: DrivingPolicy,
    windows: WindowDataset,
    settings: LossSettings,
    *,
    context: DistributedContext | None = None,
    autocast_dtype: torch.dtype | None = None,
    indices: Sequence[int] | None = None,
) -> Evaluation:
    """Compute the loss and MAE of the policy on every window, without augmentation.

    In a distributed run each rank evaluates its share of the windows, `indices`
    or, when None, every `world_size`-th window. The error sums are added over
    the ranks, so every rank returns the metrics of all windows as long as the
    ranks' shares together cover each window once.
    """
    context = context if context is not None else single_process_context("cpu")
    policy.eval()
    weighted_error = 0.0
    absolute_error = 0.0
    weight_sum = 0.0
    count = 0
    shard = range(context.rank, len(windows), context.world_size) if indices is None else list(indices)
    for start in range(0, len(shard), _EVAL_BATCH_SIZE):
        batch = shard[start : start + _EVAL_BATCH_SIZE]
        frames, dt, curvature = windows.get_batch(batch)
        prediction, target, weights = _window_loss_terms(
            policy, frames, dt, curvature, settings, device=context.device, autocast_dtype=autocast_dtype
        )
        weighted_error += float((weights * (prediction - target).square()).sum())
        absolute_error += float((prediction - target).abs().sum())
        weight_sum += float(weights.sum())
        count += target.numel()
    if context.is_distributed:
        weighted_error, absolute_error, weight_sum, count = context.all_reduce_sum(
            [weighted_error, absolute_error, weight_sum, count]
        )
    if count == 0:
        return Evaluation(math.nan, math.nan)
    return Evaluation(loss=weighted_error / weight_sum, mae=absolute_error / count)


def constant_loss(windows: WindowDataset, settings: LossSettings, constant: float) -> float:
    """Return the loss in (1/m)^2 of predicting `constant` (1/m) in every window."""
    target = torch.from_numpy(windows.curvature_windows()[:, settings.burn_in :])
    if target.numel() == 0:
        return math.nan
    weights = curvature_weights(target, settings.curvature_weight, settings.curvature_scale)
    return float(weighted_mse(torch.full_like(target, constant), target, weights))


@torch.no_grad()
def rollout(policy: DrivingPolicy, episode: Episode) -> np.ndarray:
    """Run the policy over a whole episode from the zero state, as the perception node does.

    Returns:
        (N,) float32 predicted curvature in 1/m.
    """
    policy.eval()
    state = policy.initial_state(1)
    predictions = []
    for start in range(0, len(episode), _ROLLOUT_CHUNK):
        stop = min(start + _ROLLOUT_CHUNK, len(episode))
        frames = frames_to_tensor(episode.frames[start:stop])[None]  # (1, n, 3, h, w)
        dt = torch.from_numpy(episode.dt[start:stop].astype(np.float32))[None]  # (1, n)
        prediction, state = policy(frames, dt, state)
        predictions.append(prediction[0, :, 0].numpy())  # (1, n, 1) -> (n,)
    return np.concatenate(predictions).astype(np.float32)


def _tqdm_disable(progress: bool | None) -> bool | None:
    """Map the progress setting to tqdm's `disable` (None: only on a terminal)."""
    return None if progress is None else not progress
