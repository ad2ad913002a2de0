"""Convolutional feature extractor that turns a camera image into sensory features.

The head follows the lane-keeping NCP of Lechner et al., "Neural circuit policies enabling
auditable autonomy", Nature Machine Intelligence 2, 2020: standardise each image, apply a
few strided convolutions, then reduce to a small vector that feeds the sensory synapses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)


@dataclass
class ConvHeadConfig:
    """Settings of :class:`ConvHead`."""

    # Model input in pixels (height, width). The caller crops and resizes to this size.
    input_height: int = 48
    input_width: int = 128
    # Output channels, kernel sizes and strides of the convolutions, one entry per layer.
    # Four stride-2 layers take 48 x 128 down to 3 x 8, which keeps the lane's lateral
    # position in the flattened features.
    channels: tuple[int, ...] = (24, 36, 48, 64)
    kernel_sizes: tuple[int, ...] = (5, 3, 3, 3)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    # Sensory features produced, the input size of the liquid controller.
    feature_size: int = 32
    # Dropout probability on the flattened convolution output during training.
    dropout: float = 0.0
    # Standardise each image to zero mean and unit variance, which makes the features
    # robust to global brightness and contrast changes.
    standardize: bool = True

    def __post_init__(self) -> None:
        self.channels = tuple(int(value) for value in self.channels)
        self.kernel_sizes = tuple(int(value) for value in self.kernel_sizes)
        self.strides = tuple(int(value) for value in self.strides)
        lengths = {len(self.channels), len(self.kernel_sizes), len(self.strides)}
        if len(lengths) != 1 or not self.channels:
            raise ValueError(
                f"channels {self.channels}, kernel_sizes {self.kernel_sizes} and strides "
                f"{self.strides} must be non-empty and of equal length (one entry per layer)"
            )
        for name in ("channels", "kernel_sizes", "strides"):
            if min(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)} is invalid: every entry must be >= 1")
        for name in ("input_height", "input_width", "feature_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} is invalid: use 1 or more")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} is invalid: use a value in [0, 1)")

    def conv_output_shape(self) -> tuple[int, int, int]:
        """Return (channels, height, width) of the last convolution's output.

        Each layer pads by ``kernel // 2``, so every layer keeps at least one row and column.
        """
        height, width = self.input_height, self.input_width
        for kernel, stride in zip(self.kernel_sizes, self.strides):
            padding = kernel // 2
            height = (height + 2 * padding - kernel) // stride + 1
            width = (width + 2 * padding - kernel) // stride + 1
        return self.channels[-1], height, width


def standardize_images(images: torch.Tensor) -> torch.Tensor:
    """Standardise each image of (batch, channels, height, width) over all its pixels.

    The standard deviation is floored at ``1 / sqrt(pixels)``, so a uniform image maps to
    zeros instead of dividing by zero.
    """
    pixels = images[0].numel()
    std, mean = torch.std_mean(images, dim=(1, 2, 3), keepdim=True, correction=0)
    return (images - mean) / std.clamp_min(pixels**-0.5)


class ConvHead(nn.Module):
    """Strided convolutions plus a linear reduction: (B, 3, H, W) -> (B, feature_size).

    Args:
        config: Layer sizes and input size.
    """

    def __init__(self, config: ConvHeadConfig) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        in_channels = 3
        for channels, kernel, stride in zip(config.channels, config.kernel_sizes, config.strides):
            layers.append(nn.Conv2d(in_channels, channels, kernel, stride, padding=kernel // 2))
            layers.append(nn.ReLU(inplace=True))
            in_channels = channels
        self.conv = nn.Sequential(*layers)
        channels, height, width = config.conv_output_shape()
        self.dropout = nn.Dropout(config.dropout)
        self.features = nn.Linear(channels * height * width, config.feature_size)

    @property
    def input_size(self) -> tuple[int, int]:
        """Expected image size (height, width) in pixels."""
        return self.config.input_height, self.config.input_width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Extract features from images (batch, 3, height, width), floats in [0, 1].

        Returns:
            Sensory features, shape (batch, feature_size).
        """
        if self.config.standardize:
            images = standardize_images(images)
        maps = self.conv(images)  # (batch, channels, rows, columns)
        flat = maps.flatten(start_dim=1)  # (batch, channels * rows * columns)
        return self.features(self.dropout(flat))
