"""Trainer pieces: episode split, augmentation, loss weighting and configuration checks."""

import numpy as np
import pytest
import torch

from liquid_driver.data.dataset import Episode
from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.model import ConvHeadConfig, PolicyConfig
from liquid_driver.train.augment import augment_frames_, shadow_masks
from liquid_driver.train.config import AugmentConfig, TrainConfig
from liquid_driver.train.loop import TrainingError, curvature_weights, weighted_mse
from liquid_driver.train.run import split_episodes


def make_episode(length, source="bag", start=0.0):
    return Episode(
        frames=np.zeros((length, 4, 6, 3), dtype=np.uint8),
        dt=np.full(length, 0.05, dtype=np.float32),
        curvature=np.linspace(-1.0, 1.0, length).astype(np.float32),
        speed=np.ones(length, dtype=np.float32),
        stamps=start + 0.05 * np.arange(length),
        source=source,
    )


def test_split_keeps_whole_episodes():
    episodes = [make_episode(100 + 10 * index, source=f"bag{index}") for index in range(8)]
    train, val = split_episodes(episodes, 0.2, 16, seed=4)
    assert len(val) >= 1
    assert len(train) >= 1
    assert sorted(e.source for e in train + val) == sorted(e.source for e in episodes)
    val_frames = sum(len(e) for e in val)
    total = sum(len(e) for e in episodes)
    assert val_frames >= 0.2 * total
    # No surplus episode: without the largest validation episode the fraction is not reached.
    assert val_frames - max(len(e) for e in val) < 0.2 * total


def test_split_deterministic_per_seed():
    episodes = [make_episode(50, source=f"bag{index}") for index in range(10)]
    first = split_episodes(episodes, 0.3, 16, seed=1)
    again = split_episodes(episodes, 0.3, 16, seed=1)
    other_seeds = [split_episodes(episodes, 0.3, 16, seed=seed) for seed in range(2, 8)]
    sources = lambda split: [e.source for e in split[1]]  # noqa: E731
    assert sources(first) == sources(again)
    assert any(sources(split) != sources(first) for split in other_seeds)


def test_split_two_episodes_one_each():
    train, val = split_episodes([make_episode(500, "a"), make_episode(40, "b")], 0.99, 16, seed=0)
    assert len(train) == 1
    assert len(val) == 1


def test_split_drops_short_episodes():
    train, val = split_episodes([make_episode(10, "short"), make_episode(60, "a"), make_episode(60, "b")], 0.2, 16, 0)
    assert "short" not in [e.source for e in train + val]


def test_split_single_episode_in_time():
    train, val = split_episodes([make_episode(200)], 0.25, 16, seed=0)
    assert [len(train[0]), len(val[0])] == [150, 50]
    assert val[0].stamps[0] > train[0].stamps[-1]


@pytest.mark.parametrize("lengths", [[10, 12], [20]], ids=["all short", "one too short to cut"])
def test_split_too_little_data(lengths):
    with pytest.raises(TrainingError):
        split_episodes([make_episode(length) for length in lengths], 0.2, 16, seed=0)


def test_curvature_weights_and_loss():
    curvature = torch.tensor([0.0, 1.0, -2.0])
    weights = curvature_weights(curvature, weight=2.0, scale=1.0)
    assert weights.tolist() == pytest.approx([1.0, 3.0, 5.0])
    prediction = torch.tensor([1.0, 1.0, 0.0])
    loss = weighted_mse(prediction, curvature, weights)
    assert float(loss) == pytest.approx((1.0 * 1.0 + 0.0 + 5.0 * 4.0) / 9.0)


def random_frames(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((6, 4, 3, 12, 16), generator=generator)


def test_augment_range_and_shape():
    frames = random_frames()
    augmented = augment_frames_(frames.clone(), AugmentConfig(), torch.Generator().manual_seed(1))
    assert augmented.shape == frames.shape
    assert float(augmented.min()) >= 0.0
    assert float(augmented.max()) <= 1.0
    assert not torch.equal(augmented, frames)


def test_augment_reproducible():
    first = augment_frames_(random_frames(), AugmentConfig(), torch.Generator().manual_seed(5))
    second = augment_frames_(random_frames(), AugmentConfig(), torch.Generator().manual_seed(5))
    third = augment_frames_(random_frames(), AugmentConfig(), torch.Generator().manual_seed(6))
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


def test_augment_disabled_is_identity():
    frames = random_frames()
    assert torch.equal(augment_frames_(frames.clone(), AugmentConfig(enabled=False), torch.Generator()), frames)


def test_augment_never_mirrors():
    # A bright column on the left must stay on the left under every augmentation.
    frames = torch.full((32, 2, 3, 12, 16), 0.2)
    frames[..., 2] = 0.9
    augmented = augment_frames_(frames, AugmentConfig(noise_std=0.0, heavy_noise_probability=0.0), torch.Generator().manual_seed(2))
    brightest = augmented.mean(dim=(1, 2, 3)).argmax(dim=-1)  # (B, T, 3, h, w) -> (B, w)
    assert brightest.tolist() == [2] * 32


def test_augment_same_lighting_within_window():
    frames = torch.full((8, 5, 3, 12, 16), 0.5)
    config = AugmentConfig(noise_std=0.0, heavy_noise_probability=0.0)
    augmented = augment_frames_(frames, config, torch.Generator().manual_seed(3))
    # Without noise every frame of a window gets identical parameters.
    assert torch.equal(augmented[:, :1].expand_as(augmented), augmented)
    assert augmented[:, 0].std(dim=0).max() > 0.01  # windows differ from each other


def test_shadow_darkens_only_mask():
    frames = torch.full((16, 2, 3, 12, 16), 0.5)
    config = AugmentConfig(brightness=0.0, contrast=0.0, colour_gain=0.0, noise_std=0.0, heavy_noise_probability=0.0,
                           shadow_probability=1.0)
    augmented = augment_frames_(frames, config, torch.Generator().manual_seed(4))
    darkened = augmented < 0.5
    assert darkened.any()
    assert not darkened.all()
    assert float(augmented.min()) >= 0.5 * config.shadow_factor[0] - 1e-6


def test_shadow_mask_spans_rows():
    masks = shadow_masks(50, 12, 16, torch.Generator().manual_seed(0))
    assert masks.shape == (50, 12, 16)
    assert masks.dtype == torch.bool
    fraction = masks.float().mean()
    assert 0.05 < float(fraction) < 0.95


@pytest.mark.parametrize(
    "values",
    [{"brightness": 1.5}, {"noise_std": -0.1}, {"shadow_probability": 2.0}, {"shadow_factor": (0.9, 0.5)}],
)
def test_augment_config_validation(values):
    with pytest.raises(ValueError):
        AugmentConfig(**values)


def test_augment_rejects_bad_shape():
    with pytest.raises(ValueError, match=r"\(B, T, 3, h, w\)"):
        augment_frames_(torch.rand(2, 3, 12, 16), AugmentConfig(), torch.Generator())


@pytest.mark.parametrize(
    "values, pattern",
    [
        ({"bags": []}, "no bags"),
        ({"seq_len": 1}, "seq_len"),
        ({"burn_in": 16}, "burn_in"),
        ({"cnn_lr": 0.0}, "cnn_lr"),
        ({"val_fraction": 0.0}, "val_fraction"),
        ({"max_minutes": -1.0}, "max_minutes"),
        ({"curvature_scale": 0.0}, "curvature_scale"),
        ({"preprocessing": Preprocessing(height=24, width=32)}, "differs from the preprocessing output"),
    ],
)
def test_train_config_validation(values, pattern):
    arguments = {"bags": ["bag"], "out": "runs/x", **values}
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**arguments)


def test_train_config_matching_sizes():
    policy = PolicyConfig(cnn=ConvHeadConfig(input_height=24, input_width=32))
    config = TrainConfig(bags=["bag"], out="runs/x", preprocessing=Preprocessing(height=24, width=32), policy=policy)
    document = config.to_dict()
    assert document["preprocessing"]["height"] == 24
    assert document["policy"]["cnn"]["input_width"] == 32
    assert document["dataset"]["excluded_modes"] == ["perturbation", "autonomous"]
