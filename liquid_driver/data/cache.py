"""On-disk cache of preprocessed episodes, read back as numpy memory maps.

The first load of a bag decodes and preprocesses its frames as usual, then
writes them into `<cache_dir>/<key>/frames.npy` with the per-frame arrays and
the bag's part of the `DatasetReport` beside it. Later loads map
`frames.npy` read-only, so the episodes' frames live in the page cache
instead of process memory and a dataset larger than RAM trains in bounded
memory: `WindowDataset` copies only the frames of each batch.

The key hashes the bag directory's path, the names, sizes and modification
times of its files, the preprocessing and the dataset settings, so a changed
bag or setting builds a new entry. Old entries are never deleted; remove the
cache folder to reclaim the space.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from liquid_driver.data.report import BagSummary, DatasetReport

if TYPE_CHECKING:
    from liquid_driver.data.dataset import DatasetConfig, Episode
    from liquid_driver.data.preprocess import Preprocessing

__all__ = ["CACHE_VERSION", "cache_key", "default_cache_dir", "load_bag_cached", "merge_report"]

logger = logging.getLogger(__name__)

# Raise when the cached layout or the loader's frame selection changes.
CACHE_VERSION = 1
_FRAMES_FILE = "frames.npy"
_ARRAYS_FILE = "arrays.npz"
_REPORT_FILE = "report.json"


def default_cache_dir() -> Path:
    """Return `$XDG_CACHE_HOME/liquid_driver/frames`, or `~/.cache/liquid_driver/frames`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "liquid_driver" / "frames"


def cache_key(bag: Path, preprocessing: Preprocessing, config: DatasetConfig) -> str:
    """Return the hex key of a bag's cache entry (see the module docstring)."""
    files = sorted(
        (item.name, item.stat().st_size, item.stat().st_mtime_ns) for item in bag.iterdir() if item.is_file()
    )
    description = {
        "version": CACHE_VERSION,
        "bag": str(bag.resolve()),
        "files": files,
        "preprocessing": preprocessing.to_dict(),
        "dataset": config.to_dict(),
    }
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode("utf-8")).hexdigest()[:32]


def merge_report(total: DatasetReport, part: DatasetReport) -> None:
    """Add the per-bag counts of `part` to `total`; distributions are computed later."""
    total.bags.extend(part.bags)
    total.frames_read += part.frames_read
    for reason, count in part.skipped.items():
        total.count_skip(reason, count)
    for mode, count in part.skipped_modes.items():
        total.skipped_modes[mode] = total.skipped_modes.get(mode, 0) + count
    total.frames_before_first_mode += part.frames_before_first_mode
    for reason, count in part.splits.items():
        total.splits[reason] = total.splits.get(reason, 0) + count
    total.max_gap = max(total.max_gap, part.max_gap)


def load_bag_cached(
    bag: Path,
    cache_dir: Path,
    preprocessing: Preprocessing,
    config: DatasetConfig,
    report: DatasetReport,
    load_bag: Callable[[Path, DatasetReport], list[Episode]],
) -> list[Episode]:
    """Return the episodes of `bag` with memory-mapped frames, building the cache entry if needed.

    Args:
        load_bag: Reads the bag into in-memory episodes and fills the report it is given.
    """
    entry = cache_dir / cache_key(bag, preprocessing, config)
    if not (entry / _REPORT_FILE).is_file():
        part = DatasetReport()
        episodes = load_bag(bag, part)
        _write_entry(entry, episodes, part)
        logger.info("Cached %d frames of %s in %s", sum(len(e) for e in episodes), bag, entry)
    else:
        logger.info("Using cached frames of %s from %s", bag, entry)
    return _read_entry(entry, report)


def _write_entry(entry: Path, episodes: list[Episode], part: DatasetReport) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    # Build in a temporary folder and rename, so an interrupted build never leaves a partial entry.
    staging = Path(tempfile.mkdtemp(prefix=entry.name + ".", dir=entry.parent))
    try:
        lengths = np.asarray([len(episode) for episode in episodes], dtype=np.int64)
        if episodes:
            shape = (int(lengths.sum()), *episodes[0].frames.shape[1:])  # (N, h, w, 3)
            frames = np.lib.format.open_memmap(staging / _FRAMES_FILE, mode="w+", dtype=np.uint8, shape=shape)
            start = 0
            for episode in episodes:
                frames[start : start + len(episode)] = episode.frames
                start += len(episode)
            frames.flush()
            del frames

        def joined(name: str, dtype: type) -> np.ndarray:
            if not episodes:
                return np.zeros(0, dtype=dtype)
            return np.concatenate([getattr(episode, name) for episode in episodes]).astype(dtype)

        np.savez(
            staging / _ARRAYS_FILE,
            lengths=lengths,
            dt=joined("dt", np.float32),
            curvature=joined("curvature", np.float32),
            speed=joined("speed", np.float32),
            stamps=joined("stamps", np.float64),
        )
        document = {
            **{key: value for key, value in part.to_dict().items() if key != "bags"},
            "bags": [dataclasses.asdict(summary) for summary in part.bags],
            "sources": [episode.source for episode in episodes],
        }
        (staging / _REPORT_FILE).write_text(json.dumps(document), encoding="utf-8")
        if entry.exists():
            shutil.rmtree(entry)
        staging.rename(entry)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _read_entry(entry: Path, report: DatasetReport) -> list[Episode]:
    from liquid_driver.data.dataset import Episode

    document = json.loads((entry / _REPORT_FILE).read_text(encoding="utf-8"))
    part = DatasetReport(
        bags=[BagSummary(**summary) for summary in document["bags"]],
        frames_read=document["frames_read"],
        skipped=document["skipped"],
        skipped_modes=document["skipped_modes"],
        frames_before_first_mode=document["frames_before_first_mode"],
        splits=document["splits"],
        max_gap=document["max_gap"],
    )
    merge_report(report, part)

    with np.load(entry / _ARRAYS_FILE) as arrays:
        lengths = arrays["lengths"]
        columns = {name: arrays[name] for name in ("dt", "curvature", "speed", "stamps")}
    if lengths.size == 0:
        return []
    # Copy-on-write map: torch.from_numpy accepts it (it rejects read-only arrays with a
    # warning), and nothing is ever written back to the file.
    frames = np.load(entry / _FRAMES_FILE, mmap_mode="c")  # (N, h, w, 3) uint8
    episodes = []
    start = 0
    for index, length in enumerate(int(value) for value in lengths):
        stop = start + length
        episodes.append(
            Episode(
                frames=frames[start:stop],
                dt=columns["dt"][start:stop],
                curvature=columns["curvature"][start:stop],
                speed=columns["speed"][start:stop],
                stamps=columns["stamps"][start:stop],
                source=document["sources"][index],
            )
        )
        start = stop
    return episodes
