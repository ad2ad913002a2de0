"""Load demonstration episodes from rosbag2 recordings (MCAP or sqlite3).

For each camera frame the loader takes the command in force when the frame was
received: the latest command whose log time is at or before the frame's log
time. It converts that command to path curvature (1/m), drops frames that
cannot teach the policy (no or stale command, standing still, reversing,
excluded driving modes), preprocesses the image and cuts the frames into
episodes. A new episode starts at every bag, wherever the image header stamps
jump backwards (for example on a simulator reset), and wherever consecutive
used frames are more than `DatasetConfig.max_gap` seconds apart.

Typical use:

    episodes, report = load_episodes(["bags/lap1", "bags/lap2"], Preprocessing())
    windows = WindowDataset(episodes, seq_len=16, stride=8)
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from rosbags.highlevel import AnyReader, AnyReaderError

from liquid_driver.data.bag import project_typestore
from liquid_driver.data.cache import load_bag_cached
from liquid_driver.data.errors import DatasetError
from liquid_driver.data.images import ImageFormatError, message_to_rgb
from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.data.report import BagSummary, DatasetReport
from liquid_driver.data.topics import (  # re-exported with the loader
    ACKERMANN_STAMPED_TYPE,
    COMMAND_TYPES,
    IMAGE_TYPES,
    MODE_TYPE,
    BagTopics,
    command_speed_curvature,
    resolve_topics,
)
from liquid_driver.data.windows import WindowDataset  # re-exported with the loader

__all__ = [
    "ACKERMANN_STAMPED_TYPE",
    "BagTopics",
    "COMMAND_TYPES",
    "DEFAULT_EXCLUDED_MODES",
    "DatasetConfig",
    "DatasetError",
    "Episode",
    "IMAGE_TYPES",
    "MODE_TYPE",
    "SkipReason",
    "WindowDataset",
    "command_speed_curvature",
    "find_bags",
    "load_episodes",
    "resolve_topics",
]

logger = logging.getLogger(__name__)

# "perturbation" frames show the expert drifting off the lane centre on
# purpose, and "autonomous" frames show the network's own commands. Training on
# either would teach the drift or copy the policy, so both are dropped.
DEFAULT_EXCLUDED_MODES = ("perturbation", "autonomous")

# Period assumed for the first frame of an episode when a bag has no two
# consecutive frames to measure it from: the simulator camera period (20 Hz).
_FALLBACK_FRAME_PERIOD = 0.05

_NS_PER_S = 1_000_000_000
# File that marks a rosbag2 directory.
_METADATA_FILE = "metadata.yaml"


class SkipReason:
    """Reasons for dropping a frame, as counted in `DatasetReport.skipped`."""

    NO_COMMAND = "no_command"  # no command logged before the frame
    STALE_COMMAND = "stale_command"  # latest command older than max_command_age
    EXCLUDED_MODE = "excluded_mode"  # driving mode in excluded_modes
    INVALID_COMMAND = "invalid_command"  # NaN or infinite speed or curvature
    LOW_SPEED = "low_speed"  # |speed| below min_speed, so curvature is undefined
    REVERSING = "reversing"  # speed below -min_speed; the camera faces forward
    DUPLICATE_STAMP = "duplicate_stamp"  # same header stamp as the previous used frame
    INVALID_IMAGE = "invalid_image"  # image that cannot be converted to RGB


@dataclass(frozen=True)
class DatasetConfig:
    """Topic selection, frame filters and episode splitting of `load_episodes`."""

    # Topics by name. None selects the topic by message type (see resolve_topics).
    image_topic: str | None = None
    command_topic: str | None = None
    mode_topic: str | None = None
    # Use every frame regardless of driving mode, even if the bag has a mode topic.
    ignore_modes: bool = False
    excluded_modes: tuple[str, ...] = DEFAULT_EXCLUDED_MODES
    # Distance between the axles in metres, needed to convert the steering angle
    # of AckermannDriveStamped commands to curvature: tan(angle) / wheelbase.
    wheelbase: float | None = None
    # Speed magnitude in m/s below which a frame is skipped, because the path
    # curvature yaw_rate / speed is undefined when standing still.
    min_speed: float = 0.05
    # Age in seconds after which the latest command no longer counts as the
    # command in force: 0.5 s is ten camera frames at 20 Hz without a command.
    max_command_age: float = 0.5
    # Gap in seconds between consecutive used frames that starts a new episode.
    max_gap: float = 0.5

    def __post_init__(self) -> None:
        for name in ("min_speed", "max_command_age", "max_gap"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(
                    f"invalid DatasetConfig.{name} {value!r}; expected a positive finite number."
                )
        if self.wheelbase is not None and not (
            math.isfinite(self.wheelbase) and self.wheelbase > 0
        ):
            raise ValueError(
                f"invalid DatasetConfig.wheelbase {self.wheelbase!r} m; expected a positive "
                "distance between the axles in metres."
            )
        if isinstance(self.excluded_modes, str):
            raise TypeError(
                f"DatasetConfig.excluded_modes must be a tuple of mode names, got the string "
                f"{self.excluded_modes!r}; write ({self.excluded_modes!r},)."
            )
        object.__setattr__(self, "excluded_modes", tuple(self.excluded_modes))

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-compatible dict."""
        values = dataclasses.asdict(self)
        values["excluded_modes"] = list(self.excluded_modes)
        return values


@dataclass
class Episode:
    """Consecutive used frames of one bag, with their commands.

    All arrays have the frame count N as their first axis.
    """

    frames: np.ndarray  # (N, h, w, 3) uint8, preprocessed RGB
    dt: np.ndarray  # (N,) float32, seconds since the previous frame
    curvature: np.ndarray  # (N,) float32, demonstrated path curvature in 1/m (left positive)
    speed: np.ndarray  # (N,) float32, commanded speed in m/s
    stamps: np.ndarray  # (N,) float64, frame time in seconds
    source: str  # bag name

    def __post_init__(self) -> None:
        count = len(self.frames)
        if self.frames.ndim != 4 or self.frames.shape[3] != 3 or self.frames.dtype != np.uint8:
            raise ValueError(
                f"invalid Episode frames of shape {self.frames.shape} and dtype "
                f"{self.frames.dtype}; expected (N, h, w, 3) uint8."
            )
        for name in ("dt", "curvature", "speed", "stamps"):
            shape = getattr(self, name).shape
            if shape != (count,):
                raise ValueError(
                    f"invalid Episode.{name} shape {shape}; expected ({count},) to match the frames."
                )

    def __len__(self) -> int:
        return len(self.frames)

    def slice(self, start: int, stop: int) -> Episode:
        """Return frames [start, stop) as a new episode; the first dt is kept as recorded."""
        return Episode(
            frames=self.frames[start:stop],
            dt=self.dt[start:stop],
            curvature=self.curvature[start:stop],
            speed=self.speed[start:stop],
            stamps=self.stamps[start:stop],
            source=self.source,
        )


def find_bags(paths: Iterable[str | Path]) -> list[Path]:
    """Expand paths into rosbag2 directories.

    A directory with a `metadata.yaml` is a bag. Any other directory is searched
    for bags at any depth, in sorted order, so `data/demos` selects all recorded
    episodes. A directory without any bag, such as the `logs` folder that a
    shell glob like `data/demos/*` also matches, is skipped with a warning as
    long as another path provides a bag.

    Raises:
        FileNotFoundError: A path does not exist.
        DatasetError: No path is a bag or contains one, or a path is a file
            that is not inside a bag directory.
    """
    bags: list[Path] = []
    without_bags: list[Path] = []
    for path in (Path(item) for item in paths):
        if not path.exists():
            raise FileNotFoundError(f"bag {path} not found; pass a rosbag2 directory.")
        if (path / _METADATA_FILE).is_file():
            bags.append(path)
        elif path.is_dir():
            found = sorted(metadata.parent for metadata in path.rglob(_METADATA_FILE))
            if found:
                logger.info("Found %d bags in %s", len(found), path)
            bags.extend(found)
            without_bags.extend([] if found else [path])
        else:
            raise DatasetError(
                f"{path} is a file, not a rosbag2 directory; pass the directory that contains "
                f"its {_METADATA_FILE}."
            )

    if without_bags and not bags:
        raise DatasetError(
            f"no rosbag2 bag in {', '.join(str(path) for path in without_bags)}; pass bag "
            f"directories (each with a {_METADATA_FILE}) or folders that contain them."
        )
    for path in without_bags:
        logger.warning("Skipping %s: it contains no rosbag2 bag", path)
    return bags


def load_episodes(
    bags: Iterable[str | Path],
    preprocessing: Preprocessing | None = None,
    config: DatasetConfig | None = None,
    cache_dir: str | Path | None = None,
) -> tuple[list[Episode], DatasetReport]:
    """Read bags into preprocessed episodes.

    Args:
        bags: rosbag2 directories (MCAP or sqlite3 storage), or folders that
            contain them (see `find_bags`).
        preprocessing: Crop and resize of each frame; the default `Preprocessing()`
            when None.
        config: Topic selection and filters; the default `DatasetConfig()` when None.
        cache_dir: Folder of the on-disk frame cache (`liquid_driver.data.cache`).
            With a cache, episode frames are memory-mapped from it; with None,
            all frames are held in memory.

    Returns:
        The episodes in bag order and a report of what was used and skipped.

    Raises:
        FileNotFoundError: A bag path does not exist.
        DatasetError: A bag cannot be read, a topic is missing or ambiguous,
            no frame is usable, or the curvature is the same in every frame.
    """
    preprocessing = preprocessing or Preprocessing()
    config = config or DatasetConfig()
    paths = find_bags(bags)
    if not paths:
        raise DatasetError("no bags given; pass at least one rosbag2 directory.")

    report = DatasetReport()
    episodes: list[Episode] = []
    for path in paths:
        if cache_dir is None:
            episodes.extend(_load_bag(path, preprocessing, config, report))
        else:
            episodes.extend(
                load_bag_cached(
                    path,
                    Path(cache_dir),
                    preprocessing,
                    config,
                    report,
                    lambda bag, bag_report: _load_bag(bag, preprocessing, config, bag_report),
                )
            )

    report.episode_lengths = [len(episode) for episode in episodes]
    report.frames_used = sum(report.episode_lengths)
    if not episodes:
        raise DatasetError(
            f"no usable frames in {len(paths)} bags ({report.frames_read} frames read); "
            f"skipped frames per reason: {report.skipped}, per mode: {report.skipped_modes}. "
            "Check the topics, the excluded modes and max_command_age."
        )

    curvature = np.concatenate([episode.curvature for episode in episodes])
    speed = np.concatenate([episode.speed for episode in episodes])
    dt = np.concatenate([episode.dt for episode in episodes])
    report.set_distributions(curvature, speed, dt)
    if float(np.ptp(curvature)) < 1e-6:
        raise DatasetError(
            f"curvature is {float(curvature[0]):.6g} 1/m in all {curvature.size} used frames, so "
            "the recording cannot teach steering; record demonstrations that include turns."
        )
    report.log_summary(logger)
    return episodes, report


class _CommandTrack:
    """Commands of one bag as sorted arrays for lookup by log time."""

    def __init__(self, log_ns: list[int], speed: list[float], curvature: list[float]) -> None:
        order = np.argsort(np.asarray(log_ns, dtype=np.int64), kind="stable")
        self.log_ns = np.asarray(log_ns, dtype=np.int64)[order]
        self.speed = np.asarray(speed, dtype=np.float64)[order]
        self.curvature = np.asarray(curvature, dtype=np.float64)[order]

    def latest_index(self, log_ns: int) -> int:
        """Index of the latest command logged at or before `log_ns`, or -1."""
        return int(np.searchsorted(self.log_ns, log_ns, side="right")) - 1


class _ModeTrack:
    """Driving-mode changes of one bag, for lookup by log time."""

    def __init__(self, log_ns: list[int], modes: list[str]) -> None:
        order = np.argsort(np.asarray(log_ns, dtype=np.int64), kind="stable")
        self.log_ns = np.asarray(log_ns, dtype=np.int64)[order]
        self.modes = [modes[index] for index in order]

    def mode_at(self, log_ns: int) -> str | None:
        """Latest mode logged at or before `log_ns`, or None before the first."""
        index = int(np.searchsorted(self.log_ns, log_ns, side="right")) - 1
        return self.modes[index] if index >= 0 else None


def _open_reader(path: Path) -> AnyReader:
    try:
        reader = AnyReader([path], default_typestore=project_typestore())
        reader.open()
    except (AnyReaderError, FileNotFoundError) as error:
        raise DatasetError(
            f"failed to open bag {path}: {error}. Pass a rosbag2 directory that contains "
            "metadata.yaml and an .mcap or .db3 file."
        ) from error
    return reader


def _load_bag(
    path: Path, preprocessing: Preprocessing, config: DatasetConfig, report: DatasetReport
) -> list[Episode]:
    reader = _open_reader(path)
    try:
        topics = {name: info.msgtype or "" for name, info in reader.topics.items()}
        selected = resolve_topics(topics, config, bag_name=str(path))
        logger.info(
            "Bag %s: images %s [%s], commands %s [%s], modes %s",
            path,
            selected.image,
            selected.image_type,
            selected.command,
            selected.command_type,
            selected.mode or "none",
        )
        summary = BagSummary(
            path=str(path),
            image_topic=selected.image,
            image_type=selected.image_type,
            command_topic=selected.command,
            command_type=selected.command_type,
            mode_topic=selected.mode,
        )
        report.bags.append(summary)
        commands = _read_commands(reader, selected, config)
        modes = _read_modes(reader, selected.mode) if selected.mode else None
        frames = _read_frames(reader, selected, commands, modes, preprocessing, config, report, summary)
    finally:
        reader.close()

    episodes = _split_episodes(frames, path.name, config, report, summary)
    summary.frames_used = sum(len(episode) for episode in episodes)
    summary.episodes = len(episodes)
    return episodes


def _connections(reader: AnyReader, topic: str) -> list[Any]:
    return [connection for connection in reader.connections if connection.topic == topic]


def _read_commands(reader: AnyReader, selected: BagTopics, config: DatasetConfig) -> _CommandTrack:
    log_ns: list[int] = []
    speed: list[float] = []
    curvature: list[float] = []
    for connection, timestamp, raw in reader.messages(connections=_connections(reader, selected.command)):
        msg = reader.deserialize(raw, connection.msgtype)
        command_speed, command_curvature = command_speed_curvature(
            msg, connection.msgtype, config.wheelbase
        )
        log_ns.append(timestamp)
        speed.append(command_speed)
        curvature.append(command_curvature)
    return _CommandTrack(log_ns, speed, curvature)


def _read_modes(reader: AnyReader, topic: str) -> _ModeTrack:
    log_ns: list[int] = []
    modes: list[str] = []
    for connection, timestamp, raw in reader.messages(connections=_connections(reader, topic)):
        msg = reader.deserialize(raw, connection.msgtype)
        log_ns.append(timestamp)
        modes.append(str(msg.data).strip())
    return _ModeTrack(log_ns, modes)


@dataclass
class _UsedFrames:
    """Frames of one bag that passed the filters, in log order."""

    images: list[np.ndarray]
    log_ns: list[int]
    stamp_ns: list[int]
    speed: list[float]
    curvature: list[float]


def _skip_reason(
    log_ns: int,
    commands: _CommandTrack,
    modes: _ModeTrack | None,
    config: DatasetConfig,
    report: DatasetReport,
) -> tuple[str | None, int]:
    """Return (skip reason or None, command index) for a frame logged at `log_ns`.

    Also counts the frame in `report.skipped_modes` or `report.frames_before_first_mode`.
    """
    index = commands.latest_index(log_ns)
    if index < 0:
        return SkipReason.NO_COMMAND, index
    if (log_ns - commands.log_ns[index]) > config.max_command_age * _NS_PER_S:
        return SkipReason.STALE_COMMAND, index
    if modes is not None:
        mode = modes.mode_at(log_ns)
        if mode is None:
            report.frames_before_first_mode += 1
        elif mode in config.excluded_modes:
            report.skipped_modes[mode] = report.skipped_modes.get(mode, 0) + 1
            return SkipReason.EXCLUDED_MODE, index
    speed = commands.speed[index]
    curvature = commands.curvature[index]
    if not math.isfinite(speed):
        return SkipReason.INVALID_COMMAND, index
    if abs(speed) < config.min_speed:
        return SkipReason.LOW_SPEED, index
    if speed < 0.0:
        return SkipReason.REVERSING, index
    if not math.isfinite(curvature):
        return SkipReason.INVALID_COMMAND, index
    return None, index


def _read_frames(
    reader: AnyReader,
    selected: BagTopics,
    commands: _CommandTrack,
    modes: _ModeTrack | None,
    preprocessing: Preprocessing,
    config: DatasetConfig,
    report: DatasetReport,
    summary: BagSummary,
) -> _UsedFrames:
    used = _UsedFrames(images=[], log_ns=[], stamp_ns=[], speed=[], curvature=[])
    for connection, log_ns, raw in reader.messages(connections=_connections(reader, selected.image)):
        report.frames_read += 1
        summary.frames_read += 1
        reason, index = _skip_reason(log_ns, commands, modes, config, report)
        if reason is not None:
            report.count_skip(reason)
            continue

        msg = reader.deserialize(raw, connection.msgtype)
        try:
            rgb = message_to_rgb(msg)
        except ImageFormatError as error:
            if SkipReason.INVALID_IMAGE not in report.skipped:
                logger.warning("Bag %s: skipping invalid images, first at log time %d ns: %s", summary.path, log_ns, error)
            report.count_skip(SkipReason.INVALID_IMAGE)
            continue

        used.images.append(preprocessing.apply(rgb))
        used.log_ns.append(log_ns)
        used.stamp_ns.append(int(msg.header.stamp.sec) * _NS_PER_S + int(msg.header.stamp.nanosec))
        used.speed.append(float(commands.speed[index]))
        used.curvature.append(float(commands.curvature[index]))
    return used


def _split_episodes(
    used: _UsedFrames, source: str, config: DatasetConfig, report: DatasetReport, summary: BagSummary
) -> list[Episode]:
    if not used.images:
        return []
    # A single zero stamp is valid (simulation time starts at 0), but a camera
    # driver that never fills in stamps leaves all of them zero.
    if all(stamp == 0 for stamp in used.stamp_ns):
        logger.warning(
            "Bag %s: all image header stamps are zero, so dt comes from the log (receive) times",
            summary.path,
        )
        summary.time_source = "log"
        times_ns = np.asarray(used.log_ns, dtype=np.int64)
    else:
        times_ns = np.asarray(used.stamp_ns, dtype=np.int64)
    times = times_ns.astype(np.float64) / _NS_PER_S

    # Group frame indices into episodes; duplicates of the previous stamp are dropped.
    groups: list[list[int]] = [[0]]
    for index in range(1, len(times)):
        previous = groups[-1][-1]
        delta = times[index] - times[previous]
        if times_ns[index] == times_ns[previous]:
            report.count_skip(SkipReason.DUPLICATE_STAMP)
            continue
        if delta < 0.0:
            report.count_split("stamp_backwards", delta)
            groups.append([index])
        elif delta > config.max_gap:
            report.count_split("gap", delta)
            groups.append([index])
        else:
            groups[-1].append(index)

    periods = np.concatenate([np.diff(times[group]) for group in groups])
    frame_period = float(np.median(periods)) if periods.size else _FALLBACK_FRAME_PERIOD
    summary.frame_period = frame_period

    speed = np.asarray(used.speed, dtype=np.float32)
    curvature = np.asarray(used.curvature, dtype=np.float32)
    episodes = []
    for group in groups:
        indices = np.asarray(group)
        # dt[0] has no previous frame in the episode, so it takes the bag's median period.
        dt = np.empty(len(indices), dtype=np.float32)
        dt[0] = frame_period
        dt[1:] = np.diff(times[indices])
        episodes.append(
            Episode(
                frames=np.stack([used.images[index] for index in group]),
                dt=dt,
                curvature=curvature[indices],
                speed=speed[indices],
                stamps=times[indices],
                source=source,
            )
        )
    return episodes
