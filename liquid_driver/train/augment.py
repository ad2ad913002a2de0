"""Vectorised photometric augmentation of frame windows.

Each window (one sequence of T frames) draws one set of parameters, so the
lighting stays the same within a window, as it does over 0.8 s of driving.
Only the pixel noise differs between frames. Geometry never changes: flips,
shifts and rotations would change the correct curvature.
"""

from __future__ import annotations

import torch

from liquid_driver.train.config import AugmentConfig

__all__ = ["augment_frames_", "shadow_masks"]


def _uniform(shape: tuple[int, ...], low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator)


def shadow_masks(batch: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """Draw one quadrilateral per window, spanning the image from top to bottom.

    The left and right edges run from random points on the top row to random
    points on the bottom row, like the shadow of a pole or a wall.

    Returns:
        (batch, height, width) bool, True inside the shadow.
    """
    # Edge x positions as fractions of the width; they may start outside the image.
    top = torch.sort(_uniform((batch, 2), -0.3, 1.3, generator), dim=1).values
    bottom = torch.sort(_uniform((batch, 2), -0.3, 1.3, generator), dim=1).values
    rows = torch.linspace(0.0, 1.0, height).view(1, height, 1)  # (1, h, 1)
    columns = torch.linspace(0.0, 1.0, width).view(1, 1, width)  # (1, 1, w)
    left = top[:, 0].view(batch, 1, 1) + (bottom[:, 0] - top[:, 0]).view(batch, 1, 1) * rows
    right = top[:, 1].view(batch, 1, 1) + (bottom[:, 1] - top[:, 1]).view(batch, 1, 1) * rows
    return (columns >= left) & (columns <= right)  # (batch, h, w)


def augment_frames_(frames: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment float frames in place and return them.

    In place, following torch's trailing-underscore convention, because each
    full-size temporary costs about as much as a CNN layer on a CPU.

    Args:
        frames: (B, T, 3, h, w) float in [0, 1]; overwritten.
        config: Augmentation ranges; `config.enabled=False` leaves `frames` unchanged.
        generator: Source of randomness, seeded by the trainer for reproducible runs.

    Returns:
        `frames`, (B, T, 3, h, w) float in [0, 1].
    """
    if not config.enabled:
        return frames
    if frames.ndim != 5 or frames.shape[2] != 3 or not frames.is_floating_point():
        raise ValueError(
            f"invalid frames of shape {tuple(frames.shape)} and dtype {frames.dtype}; "
            "expected float (B, T, 3, h, w)."
        )
    batch, _, _, height, width = frames.shape
    per_window = (batch, 1, 1, 1, 1)

    # Contrast around each frame's mean, brightness offset and colour gain folded into
    # one multiply-add: x' = (contrast * (x - mean) + mean + brightness) * gain.
    contrast = _uniform(per_window, 1.0 - config.contrast, 1.0 + config.contrast, generator)
    brightness = _uniform(per_window, -config.brightness, config.brightness, generator)
    gain = _uniform((batch, 1, 3, 1, 1), 1.0 - config.colour_gain, 1.0 + config.colour_gain, generator)
    mean = frames.mean(dim=(2, 3, 4), keepdim=True)  # (B, T, 1, 1, 1) per-frame mean
    scale = contrast * gain  # (B, 1, 3, 1, 1)
    offset = ((1.0 - contrast) * mean + brightness) * gain  # (B, T, 3, 1, 1)
    frames.mul_(scale).add_(offset)

    if config.shadow_probability > 0.0:
        low, high = config.shadow_factor
        has_shadow = torch.rand(batch, generator=generator) < config.shadow_probability
        shadowed = torch.nonzero(has_shadow).flatten().tolist()
        factors = _uniform((len(shadowed),), low, high, generator)
        masks = shadow_masks(len(shadowed), height, width, generator)  # (S, h, w)
        darkening = torch.where(masks, factors.view(-1, 1, 1), torch.ones(()))  # (S, h, w)
        # Only windows with a shadow are touched. The (h, w) factor broadcasts over
        # (T, 3, h, w), so every frame and channel of a window gets the same shadow.
        for row, window in enumerate(shadowed):
            frames[window].mul_(darkening[row])

    if config.noise_std > 0.0:
        noise_std = _uniform(per_window, 0.0, config.noise_std, generator)
        # One noise value per pixel for all three channels: a third of the random draws.
        noise = torch.randn((batch, frames.shape[1], 1, height, width), generator=generator)
        frames.add_(noise.mul_(noise_std))

    return frames.clamp_(0.0, 1.0)
