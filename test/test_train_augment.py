"""View-shift augmentation: re-projection geometry, curvature correction and heavy noise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from liquid_driver.data.preprocess import Preprocessing, frames_to_tensor
from liquid_driver.train import augment
from liquid_driver.train.augment import augment_frames_, recovery_curvature, view_shift_, view_shift_pixels
from liquid_driver.train.config import AugmentConfig, CameraGeometry

PREPROCESSING = Preprocessing()
SHIFT_ONLY = AugmentConfig(view_shift_probability=1.0, max_lateral_shift=0.1, max_yaw_shift=0.1)


def shift_with(frames, curvature, lateral, yaw, monkeypatch, config=SHIFT_ONLY):
    """Run view_shift_ with the lateral and yaw offsets fixed to the given values."""
    draws = iter([torch.full((frames.shape[0],), lateral), torch.full((frames.shape[0],), yaw)])
    original = augment._uniform

    def fixed_uniform(shape, low, high, generator):
        if low < 0.0 < high:
            return next(draws)
        return original(shape, low, high, generator)

    monkeypatch.setattr(augment, "_uniform", fixed_uniform)
    return view_shift_(frames, curvature, config, PREPROCESSING, torch.Generator().manual_seed(0))


def test_recovery_curvature_steers_back():
    lateral = torch.tensor([0.1, -0.1, 0.0, 0.0])
    yaw = torch.tensor([0.0, 0.0, 0.05, -0.05])
    correction = recovery_curvature(lateral, yaw, recovery_distance=1.0)
    # Left of the path or turned left: steer right (negative curvature), and vice versa.
    assert correction.tolist() == pytest.approx([-0.2, 0.2, -0.1, 0.1])


def test_shift_pixels_grow_towards_bottom():
    shift = view_shift_pixels(torch.tensor([0.1]), torch.tensor([0.0]), CameraGeometry(), PREPROCESSING)
    assert shift.shape == (1, PREPROCESSING.height)
    # Near ground (bottom rows) moves more than far ground for a sideways offset.
    assert torch.all(torch.diff(shift[0]) > 0.0)
    assert float(shift[0, 0]) > 0.0


def test_shift_pixels_yaw_uniform():
    camera = CameraGeometry(forward=0.0)
    shift = view_shift_pixels(torch.tensor([0.0]), torch.tensor([0.05]), camera, PREPROCESSING)
    column_scale = PREPROCESSING.width / camera.width
    expected = camera.focal_px * math.tan(0.05) * column_scale
    assert torch.allclose(shift, torch.full_like(shift, expected))


def test_view_shift_moves_column_and_corrects(monkeypatch):
    frames = torch.zeros((2, 3, 3, PREPROCESSING.height, PREPROCESSING.width))
    frames[..., 60] = 1.0
    curvature = torch.full((2, 3), 0.5)
    yaw = 0.05
    shifted, corrected = shift_with(frames.clone(), curvature, 0.0, yaw, monkeypatch)
    expected_shift = view_shift_pixels(torch.tensor([0.0]), torch.tensor([yaw]), CameraGeometry(), PREPROCESSING)
    # The bright column moved right by the computed shift in every row and frame.
    centre = (shifted[0, 0, 0] * torch.arange(PREPROCESSING.width)).sum(dim=-1) / shifted[0, 0, 0].sum(dim=-1)
    assert torch.allclose(centre, 60.0 + expected_shift[0], atol=0.05)
    assert torch.equal(shifted[:, :1].expand_as(shifted), shifted)
    assert torch.allclose(corrected, 0.5 + recovery_curvature(torch.tensor(0.0), torch.tensor(yaw), 1.0))
    assert torch.equal(curvature, torch.full((2, 3), 0.5))


def test_view_shift_probability_zero_is_identity():
    frames = torch.rand((4, 2, 3, PREPROCESSING.height, PREPROCESSING.width))
    curvature = torch.rand((4, 2))
    config = AugmentConfig(view_shift_probability=0.0)
    shifted, corrected = view_shift_(frames.clone(), curvature, config, PREPROCESSING, torch.Generator())
    assert torch.equal(shifted, frames)
    assert torch.equal(corrected, curvature)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("lateral,yaw", [(0.08, 0.0), (-0.08, 0.0), (0.0, 0.05), (0.05, -0.04)])
def test_view_shift_matches_displaced_render(lateral, yaw, monkeypatch):
    from liquid_driver.sim import Simulator

    sim = Simulator.from_layout("oval", seed=0)
    try:
        def view(lateral_offset, heading_offset):
            sim.reset(progress=2.0, lateral_offset=lateral_offset, heading_offset=heading_offset)
            frame = torch.from_numpy(PREPROCESSING.apply(sim.render()))
            return frames_to_tensor(frame[None, None])  # (1, 1, 3, h, w)

        centred = view(0.0, 0.0)
        displaced = view(lateral, yaw)
    finally:
        sim.close()
    shifted, _ = shift_with(centred.clone(), torch.zeros(1, 1), lateral, yaw, monkeypatch)
    mirrored, _ = shift_with(centred.clone(), torch.zeros(1, 1), -lateral, -yaw, monkeypatch)

    error_unshifted = float((centred - displaced).abs().mean())
    error_shifted = float((shifted - displaced).abs().mean())
    error_mirrored = float((mirrored - displaced).abs().mean())
    # The re-projected view is much closer to the true displaced camera image than
    # the original frame, and the opposite sign is no better than no shift.
    assert error_shifted < 0.5 * error_unshifted
    assert error_mirrored > error_unshifted * 0.9


def test_heavy_noise_reaches_large_deviation():
    frames = torch.full((64, 2, 3, 12, 16), 0.5)
    config = AugmentConfig(brightness=0.0, contrast=0.0, colour_gain=0.0, shadow_probability=0.0,
                           noise_std=0.0, heavy_noise_probability=1.0, heavy_noise_std=0.45)
    augmented = augment_frames_(frames, config, torch.Generator().manual_seed(0))
    deviation = (augmented - 0.5).std(dim=(1, 2, 3, 4))  # (B,)
    assert float(deviation.max()) > 0.3
    assert float(deviation.max()) <= 0.45


def test_heavy_noise_independent_per_channel():
    frames = torch.full((4, 1, 3, 12, 16), 0.5)
    config = AugmentConfig(brightness=0.0, contrast=0.0, colour_gain=0.0, shadow_probability=0.0,
                           noise_std=0.0, heavy_noise_probability=1.0)
    augmented = augment_frames_(frames, config, torch.Generator().manual_seed(1))
    assert not torch.equal(augmented[:, :, 0], augmented[:, :, 1])


@pytest.mark.parametrize(
    "values",
    [{"view_shift_probability": 1.5}, {"max_lateral_shift": -0.1}, {"max_yaw_shift": float("nan")},
     {"recovery_distance": 0.0}, {"heavy_noise_probability": -0.1}, {"heavy_noise_std": 1.0}],
)
def test_view_shift_config_validation(values):
    with pytest.raises(ValueError, match=next(iter(values))):
        AugmentConfig(**values)


@pytest.mark.parametrize(
    "values", [{"width": 0}, {"fovy_deg": 0.0}, {"mount_height": -0.1}, {"pitch": 2.0}, {"forward": np.inf}]
)
def test_camera_geometry_validation(values):
    with pytest.raises(ValueError, match=next(iter(values))):
        CameraGeometry(**values)
