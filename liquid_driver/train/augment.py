"""Vectorised augmentation of frame windows: photometric changes and view shifts.

Each window (one sequence of T frames) draws one set of parameters, so the
lighting stays the same within a window, as it does over 0.8 s of driving.
Only the pixel noise differs between frames.

`view_shift_` re-projects a window as if the car had been displaced sideways
and turned, and corrects the target curvature so that the network learns to
steer back to the demonstrated path. `augment_frames_` changes only pixel
values, never the geometry.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as functional

from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.train.config import AugmentConfig, CameraGeometry

__all__ = ["augment_frames_", "recovery_curvature", "shadow_masks", "view_shift_", "view_shift_pixels"]


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

    if config.noise_std > 0.0 or config.heavy_noise_probability > 0.0:
        noise_std = _uniform(per_window, 0.0, config.noise_std, generator)
        heavy = torch.rand(per_window, generator=generator) < config.heavy_noise_probability
        heavy_std = _uniform(per_window, config.noise_std, max(config.heavy_noise_std, config.noise_std), generator)
        noise_std = torch.where(heavy, heavy_std, noise_std)
        # Independent noise per channel, like the sensor noise liquid-driver-eval adds.
        noise = torch.randn(frames.shape, generator=generator)  # (B, T, 3, h, w)
        frames.add_(noise.mul_(noise_std))

    return frames.clamp_(0.0, 1.0)


@functools.lru_cache(maxsize=8)
def _shift_factors(camera: CameraGeometry, preprocessing: Preprocessing) -> tuple[np.ndarray, float, float]:
    """Return the image shift per unit offset, in preprocessed pixels.

    The result is (ground, yaw, column scale): ground (h,) is px per m of
    lateral offset for each preprocessed row, yaw is px per rad of heading
    offset, and the column scale is preprocessed columns per camera column.
    """
    top, bottom, left, right = preprocessing.crop_box(camera.height, camera.width)
    focal = camera.focal_px
    centre_row = 0.5 * (camera.height - 1)
    # Centre of each preprocessed row in camera rows (resize maps pixel centres linearly).
    rows = top + (np.arange(preprocessing.height) + 0.5) * (bottom - top) / preprocessing.height - 0.5
    below_axis = np.arctan((rows - centre_row) / focal)  # rad, angle of each row's ray below the optical axis
    depression = camera.pitch + below_axis  # rad, angle of the ray below the horizon
    # A ground point seen at this row moves sideways by focal * d * sin(depression) /
    # (mount_height * cos(below_axis)) px when the camera moves sideways by d. Rows
    # at or above the horizon see far scenery, which does not move.
    ground = np.where(
        depression > 0.0, focal * np.sin(depression) / (camera.mount_height * np.cos(below_axis)), 0.0
    )
    column_scale = preprocessing.width / (right - left)
    return (ground * column_scale).astype(np.float32), float(focal * column_scale), float(column_scale)


def view_shift_pixels(
    lateral: torch.Tensor, yaw: torch.Tensor, camera: CameraGeometry, preprocessing: Preprocessing
) -> torch.Tensor:
    """Return the horizontal image shift of each preprocessed row, px, positive to the right.

    The car is displaced `lateral` m to the left and turned `yaw` rad to the
    left of where the frame was recorded, so the scene moves to the right.

    Args:
        lateral: (B,) lateral offsets of the rear axle, m, left positive.
        yaw: (B,) heading offsets, rad, left positive.

    Returns:
        (B, h) shifts in preprocessed pixels.
    """
    ground, yaw_px, _ = _shift_factors(camera, preprocessing)
    # Turning about the rear axle also moves the lens sideways by forward * sin(yaw).
    camera_lateral = lateral + camera.forward * torch.sin(yaw)  # (B,)
    ground_rows = torch.from_numpy(ground).view(1, -1)  # (1, h)
    return camera_lateral.view(-1, 1) * ground_rows + (yaw_px * torch.tan(yaw)).view(-1, 1)  # (B, h)


def recovery_curvature(lateral: torch.Tensor, yaw: torch.Tensor, recovery_distance: float) -> torch.Tensor:
    """Return the curvature change, 1/m, that steers a displaced car back onto its path.

    Pure pursuit towards the demonstrated path `recovery_distance` (L) ahead:
    the target lies -(lateral + L * yaw) to the side for small angles, so the
    added curvature is -2 * (lateral + L * yaw) / L^2. Left offsets (positive)
    give a right turn (negative curvature).
    """
    return -2.0 * (lateral + recovery_distance * yaw) / (recovery_distance**2)


def view_shift_(
    frames: torch.Tensor,
    curvature: torch.Tensor,
    config: AugmentConfig,
    preprocessing: Preprocessing,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-project some windows as seen from a displaced, turned car and correct their targets.

    For each chosen window, one lateral offset and one yaw offset hold for all
    its frames. Each image row shifts horizontally by the amount a flat ground
    plane would move (`view_shift_pixels`); columns that move in from outside
    repeat the edge pixels. The geometry assumes flat ground and small angles,
    so keep the offsets within a few centimetres and degrees.

    Args:
        frames: (B, T, 3, h, w) float in [0, 1]; shifted windows are overwritten.
        curvature: (B, T) demonstrated curvature, 1/m; a corrected copy is returned.
        config: Probability and ranges (`view_shift_probability`, `max_lateral_shift`,
            `max_yaw_shift`, `recovery_distance`, `camera`).
        preprocessing: Crop and resize that produced the frames from the camera image.
        generator: Source of randomness.

    Returns:
        (frames, curvature), the same frames tensor and the corrected curvature.
    """
    if not config.enabled or config.view_shift_probability <= 0.0:
        return frames, curvature
    if (config.max_lateral_shift == 0.0 and config.max_yaw_shift == 0.0):
        return frames, curvature
    batch, steps, channels, height, width = frames.shape
    chosen = torch.rand(batch, generator=generator) < config.view_shift_probability
    lateral = _uniform((batch,), -config.max_lateral_shift, config.max_lateral_shift, generator)
    yaw = _uniform((batch,), -config.max_yaw_shift, config.max_yaw_shift, generator)
    indices = torch.nonzero(chosen).flatten()
    if indices.numel() == 0:
        return frames, curvature
    lateral = lateral[indices]
    yaw = yaw[indices]

    shift = view_shift_pixels(lateral, yaw, config.camera, preprocessing)  # (S, h) px
    # Sampling grid in grid_sample's normalised coordinates (align_corners=False):
    # output column x reads input column x - shift.
    columns = (2.0 * torch.arange(width, dtype=frames.dtype) + 1.0) / width - 1.0  # (w,)
    rows = (2.0 * torch.arange(height, dtype=frames.dtype) + 1.0) / height - 1.0  # (h,)
    grid_x = columns.view(1, 1, width) - (2.0 / width) * shift.to(frames.dtype).view(-1, height, 1)  # (S, h, w)
    grid_y = rows.view(1, height, 1).expand_as(grid_x)  # (S, h, w)
    grid = torch.stack([grid_x, grid_y], dim=-1)  # (S, h, w, 2)
    grid = grid.repeat_interleave(steps, dim=0)  # (S * T, h, w, 2), one grid per frame
    selected = frames[indices].reshape(-1, channels, height, width)  # (S, T, 3, h, w) -> (S * T, 3, h, w)
    shifted = functional.grid_sample(selected, grid, mode="bilinear", padding_mode="border", align_corners=False)
    frames[indices] = shifted.view(-1, steps, channels, height, width)  # (S * T, 3, h, w) -> (S, T, 3, h, w)

    corrected = curvature.clone()
    correction = recovery_curvature(lateral, yaw, config.recovery_distance).to(curvature.dtype)  # (S,)
    corrected[indices] += correction.view(-1, 1)
    return frames, corrected
