"""Training plots: loss curves and validation predictions, written as PNG files."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # file output only; training machines often have no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

__all__ = ["plot_losses", "plot_predictions"]


def plot_losses(
    path: str | Path,
    epochs: Sequence[int],
    train_loss: Sequence[float],
    val_loss: Sequence[float],
    constant_loss: float | None = None,
    best_epoch: int | None = None,
) -> None:
    """Plot training and validation loss per epoch on a log scale.

    Args:
        path: PNG file to write.
        epochs: Epoch numbers, starting at 1.
        train_loss: Weighted MSE on the training windows, (1/m)^2.
        val_loss: Weighted MSE on the validation windows, (1/m)^2.
        constant_loss: Validation loss of always predicting the training mean.
        best_epoch: Epoch of the saved checkpoint, marked with a vertical line.
    """
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.plot(epochs, train_loss, marker="o", label="train")
    axes.plot(epochs, val_loss, marker="o", label="validation")
    if constant_loss is not None:
        axes.axhline(constant_loss, color="grey", linestyle="--", label="validation, constant prediction")
    if best_epoch is not None:
        axes.axvline(best_epoch, color="black", linestyle=":", label=f"best epoch {best_epoch}")
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("weighted MSE of curvature, (1/m)$^2$")
    positive = [value for value in list(train_loss) + list(val_loss) if value > 0]
    if positive:
        axes.set_yscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_predictions(
    path: str | Path,
    episodes: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],
) -> None:
    """Plot predicted and demonstrated curvature over time, one panel per episode.

    Args:
        path: PNG file to write.
        episodes: (title, time in s, demonstrated curvature in 1/m, predicted
            curvature in 1/m) per episode, arrays of equal length.
    """
    count = max(1, len(episodes))
    figure, axes_list = plt.subplots(count, 1, figsize=(10, 2.6 * count), squeeze=False)
    for axes, (title, time, demonstrated, predicted) in zip(axes_list[:, 0], episodes):
        axes.plot(time, demonstrated, label="demonstrated", linewidth=1.2)
        axes.plot(time, predicted, label="predicted", linewidth=1.2)
        mae = float(np.mean(np.abs(predicted - demonstrated))) if len(time) else float("nan")
        axes.set_title(f"{title} (MAE {mae:.3f} 1/m)")
        axes.set_ylabel("curvature, 1/m")
        axes.grid(True, alpha=0.3)
    axes_list[-1, 0].set_xlabel("time in episode, s")
    axes_list[0, 0].legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
