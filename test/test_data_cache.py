"""On-disk frame cache: identical episodes and report from the cache, memory-mapped frames."""

from __future__ import annotations

import numpy as np
import pytest

from liquid_driver.data.dataset import DatasetConfig, load_episodes
from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.data.synthetic import BarSceneConfig, write_bar_bag

PREPROCESSING = Preprocessing(crop_top=0.0, height=24, width=32)


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache_bags")
    paths = []
    for seed in range(2):
        path = folder / f"drive{seed}"
        write_bar_bag(path, 80, BarSceneConfig(), seed=seed, start_s=100.0 * (seed + 1))
        paths.append(path)
    return paths


def test_cache_matches_memory_load(bags, tmp_path):
    cache = tmp_path / "cache"
    in_memory, memory_report = load_episodes(bags, PREPROCESSING)
    built, built_report = load_episodes(bags, PREPROCESSING, cache_dir=cache)
    cached, cached_report = load_episodes(bags, PREPROCESSING, cache_dir=cache)

    assert len(list(cache.iterdir())) == len(bags)
    for episodes in (built, cached):
        assert len(episodes) == len(in_memory)
        for expected, episode in zip(in_memory, episodes):
            assert isinstance(episode.frames, np.memmap)
            assert np.array_equal(episode.frames, expected.frames)
            assert np.array_equal(episode.curvature, expected.curvature)
            assert np.array_equal(episode.dt, expected.dt)
            assert np.array_equal(episode.stamps, expected.stamps)
            assert episode.source == expected.source
    for report in (built_report, cached_report):
        assert report.frames_read == memory_report.frames_read
        assert report.frames_used == memory_report.frames_used
        assert report.skipped == memory_report.skipped
        assert report.episode_lengths == memory_report.episode_lengths
        assert report.curvature == memory_report.curvature
        assert [bag.path for bag in report.bags] == [bag.path for bag in memory_report.bags]


def test_cache_key_follows_settings(bags, tmp_path):
    cache = tmp_path / "cache"
    load_episodes(bags[:1], PREPROCESSING, cache_dir=cache)
    load_episodes(bags[:1], Preprocessing(crop_top=0.0, height=24, width=48), cache_dir=cache)
    load_episodes(bags[:1], PREPROCESSING, DatasetConfig(max_gap=0.3), cache_dir=cache)
    load_episodes(bags[:1], PREPROCESSING, cache_dir=cache)
    assert len(list(cache.iterdir())) == 3


def test_cache_rebuilds_changed_bag(tmp_path):
    bag = tmp_path / "bag"
    cache = tmp_path / "cache"
    write_bar_bag(bag, 60, BarSceneConfig(), seed=0)
    first, _ = load_episodes([bag], PREPROCESSING, cache_dir=cache)
    for item in bag.iterdir():
        item.unlink()
    bag.rmdir()
    write_bar_bag(bag, 90, BarSceneConfig(), seed=1)
    second, _ = load_episodes([bag], PREPROCESSING, cache_dir=cache)
    assert sum(len(e) for e in first) != sum(len(e) for e in second)
    assert len(list(cache.iterdir())) == 2
