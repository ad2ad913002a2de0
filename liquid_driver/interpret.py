"""Offline interpretability of a trained policy: saliency over a bag and neuron traces.

Works for any checkpoint that `PolicyRunner` loads with the torch backend,
without ROS 2:

* `read_camera_frames` yields the raw camera frames of a rosbag2 directory in
  time order.
* `bag_saliency` runs the model over those frames, clean and with Gaussian
  pixel noise, with the recurrent state carried from frame to frame. It
  computes a VisualBackProp mask per frame (`liquid_driver.saliency`) and the
  Pearson correlation between each noisy mask and the clean mask of the same
  frame, which measures how far the network's attention moves under noise.
* `plot_saliency_sheet` draws a grid of frames with their masks.
* `drive_traces` drives one closed-loop run in the embedded simulator and
  records the neuron states, and `plot_neuron_traces` draws them by layer.

Typical use:

    result = bag_saliency("models/lane_keeper.safetensors", "data/demos/oval_seed1")
    plot_saliency_sheet(result, "out/sheet.png")
    plot_neuron_traces(result.neuron_states, result.stamps, result.wiring,
                       "out/traces.png", curvature=result.curvature)

The command-line front end is `liquid-driver-saliency` (liquid_driver/tools/saliency.py).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence, Union

import matplotlib

matplotlib.use("Agg")  # writes files and needs no display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rosbags.highlevel import AnyReader, AnyReaderError  # noqa: E402
from tqdm import tqdm  # noqa: E402

from liquid_driver.data.bag import project_typestore  # noqa: E402
from liquid_driver.data.dataset import find_bags  # noqa: E402
from liquid_driver.data.errors import DatasetError  # noqa: E402
from liquid_driver.data.images import message_to_rgb  # noqa: E402
from liquid_driver.data.topics import DEFAULT_TOPICS, IMAGE_TYPES  # noqa: E402
from liquid_driver.saliency import saliency_overlay, saliency_similarity  # noqa: E402

if TYPE_CHECKING:
    from liquid_driver.eval.core import RunResult
    from liquid_driver.inference import PolicyRunner
    from liquid_driver.model.wiring import Wiring

__all__ = [
    "BagSaliency",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_NOISE_VARIANCES",
    "NoisySaliency",
    "bag_saliency",
    "drive_traces",
    "plot_neuron_traces",
    "plot_saliency_sheet",
    "read_camera_frames",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

# Noise variances (pixels scaled to [0, 1]) of the closed-loop evaluation's robustness runs.
DEFAULT_NOISE_VARIANCES = (0.1, 0.2, 0.3)
# Frames kept per pass. A frame costs about 43 kB per pass at the shipped model's
# 48x128 input (uint8 RGB input plus a float32 mask), so 400 frames with three
# noise levels hold about 70 MB.
DEFAULT_MAX_FRAMES = 400
# Lines drawn per subplot of `plot_neuron_traces`; more would be unreadable.
MAX_TRACE_LINES = 64
# Lines per subplot up to which each line gets a legend entry.
_MAX_LEGEND_LINES = 8
_NS_PER_S = 1_000_000_000


# ----------------------------------------------------------------------
# Reading camera frames


def _resolve_bag(bag: PathLike) -> Path:
    """Return the one rosbag2 directory that `bag` names or contains."""
    bags = find_bags([bag])
    if len(bags) != 1:
        raise DatasetError(
            f"{bag} contains {len(bags)} bags ({', '.join(str(path) for path in bags[:3])}, ...); "
            "pass a single rosbag2 directory.")
    return bags[0]


def _open_reader(path: Path) -> AnyReader:
    try:
        reader = AnyReader([path], default_typestore=project_typestore())
        reader.open()
    except (AnyReaderError, FileNotFoundError) as error:
        raise DatasetError(
            f"failed to open bag {path}: {error}. Pass a rosbag2 directory that contains "
            "metadata.yaml and an .mcap or .db3 file.") from error
    return reader


def _describe_topics(topics: dict[str, str]) -> str:
    if not topics:
        return "The bag contains no topics."
    return "The bag contains: " + ", ".join(f"{name} [{msgtype}]" for name, msgtype in sorted(topics.items()))


def _select_image_topic(topics: dict[str, str], requested: str | None, bag: Path) -> str:
    """Return the camera topic: `requested`, else the only image topic, else /camera/image_raw."""
    if requested is not None:
        if requested not in topics:
            raise DatasetError(
                f"image topic {requested!r} not found in bag {bag}. {_describe_topics(topics)}")
        if topics[requested] not in IMAGE_TYPES:
            raise DatasetError(
                f"topic {requested!r} in bag {bag} has type {topics[requested]}; expected "
                f"{' or '.join(IMAGE_TYPES)}. {_describe_topics(topics)}")
        return requested
    candidates = sorted(name for name, msgtype in topics.items() if msgtype in IMAGE_TYPES)
    if not candidates:
        raise DatasetError(
            f"no image topic in bag {bag}; expected a topic of type {' or '.join(IMAGE_TYPES)}. "
            f"{_describe_topics(topics)}")
    if len(candidates) == 1:
        return candidates[0]
    if DEFAULT_TOPICS["image"] in candidates:
        return DEFAULT_TOPICS["image"]
    raise DatasetError(
        f"several image topics in bag {bag}: {', '.join(candidates)}; choose one with the topic "
        "argument (--topic).")


@dataclass(frozen=True)
class _CameraTopic:
    bag: Path
    topic: str
    msgtype: str
    count: int  # messages on the topic, from the bag's index


def _camera_topic(bag: PathLike, topic: str | None) -> _CameraTopic:
    path = _resolve_bag(bag)
    reader = _open_reader(path)
    try:
        topics = {name: info.msgtype or "" for name, info in reader.topics.items()}
        selected = _select_image_topic(topics, topic, path)
        count = int(reader.topics[selected].msgcount)
    finally:
        reader.close()
    if count == 0:
        raise DatasetError(f"image topic {selected} in bag {path} has no messages.")
    return _CameraTopic(path, selected, topics[selected], count)


def _check_sampling(every: int, max_frames: int | None) -> None:
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"every={every!r} is invalid; expected an int >= 1")
    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                   or max_frames < 1):
        raise ValueError(f"max_frames={max_frames!r} is invalid; expected an int >= 1 or None")


def _iterate_frames(camera: _CameraTopic, max_frames: int | None, every: int
                    ) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield (index on the topic, stamp in s, RGB frame) for every `every`-th message."""
    reader = _open_reader(camera.bag)
    try:
        connections = [c for c in reader.connections if c.topic == camera.topic]
        yielded = 0
        warned = False
        for index, (connection, _log_ns, raw) in enumerate(reader.messages(connections=connections)):
            if max_frames is not None and yielded >= max_frames:
                return
            if index % every != 0:
                continue
            msg = reader.deserialize(raw, connection.msgtype)
            stamp = msg.header.stamp
            stamp_s = int(stamp.sec) + int(stamp.nanosec) / _NS_PER_S
            if stamp_s == 0.0 and yielded > 0 and not warned:
                # A simulator's first frame can be stamped 0, but a later one means unset stamps.
                logger.warning(
                    "Frame %d of %s in %s has a zero header stamp; PolicyRunner resets the state "
                    "on repeated stamps, so record the bag with stamped frames", index,
                    camera.topic, camera.bag)
                warned = True
            yield index, stamp_s, message_to_rgb(msg)
            yielded += 1
    finally:
        reader.close()


def read_camera_frames(
    bag: PathLike, topic: str | None = None, max_frames: int | None = None, every: int = 1
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (stamp in s, (H, W, 3) uint8 RGB frame) for the camera frames of a bag in log-time order.

    The stamp is the header stamp, as the perception node passes it to
    `PolicyRunner`. The bag and topic are checked when this function is
    called, before the first frame is read.

    Args:
        bag: rosbag2 directory (MCAP or sqlite3), or a folder that contains exactly one.
        topic: image topic; None picks the only `sensor_msgs/msg/Image` or
            `CompressedImage` topic, or /camera/image_raw among several.
        max_frames: stop after this many frames; None reads all.
        every: keep every `every`-th message of the topic, starting with the first.

    Raises:
        FileNotFoundError: the bag does not exist.
        DatasetError: the path is not a bag, the topic is missing, has another
            type or no messages, or several image topics exist and none was chosen.
            The message lists the bag's topics.
        ValueError: `every` or `max_frames` is not a positive int.
        ImageFormatError: (while iterating) a frame's encoding cannot be converted to RGB.
    """
    _check_sampling(every, max_frames)
    camera = _camera_topic(bag, topic)
    return ((stamp, rgb) for _, stamp, rgb in _iterate_frames(camera, max_frames, every))


# ----------------------------------------------------------------------
# Saliency over a bag


@dataclass
class NoisySaliency:
    """Saliency of one noisy pass over the frames, compared with the clean pass."""

    variance: float  # Gaussian pixel-noise variance, pixels scaled to [0, 1]
    frames: np.ndarray  # (N, h, w, 3) uint8 noisy model inputs
    masks: np.ndarray  # (N, h, w) float32 VisualBackProp masks in [0, 1]
    curvature: np.ndarray  # (N,) float32 model output, 1/m
    similarity: np.ndarray  # (N,) float64 Pearson correlation with the clean mask of each frame

    @property
    def mean_similarity(self) -> float:
        """Mean of `similarity` over the frames."""
        return float(np.mean(self.similarity))

    @property
    def std_similarity(self) -> float:
        """Standard deviation (ddof=0) of `similarity` over the frames."""
        return float(np.std(self.similarity))


@dataclass
class BagSaliency:
    """Result of `bag_saliency`: the clean pass, its neuron states and the noisy passes."""

    model: str  # checkpoint path
    bag: str  # rosbag2 directory
    topic: str  # image topic
    frame_indices: np.ndarray  # (N,) int64 index of each frame among the topic's messages
    stamps: np.ndarray  # (N,) float64 frame stamps, s
    frames: np.ndarray  # (N, h, w, 3) uint8 clean model inputs
    masks: np.ndarray  # (N, h, w) float32 clean VisualBackProp masks in [0, 1]
    curvature: np.ndarray  # (N,) float32 clean model output, 1/m
    neuron_states: np.ndarray  # (N, state_size) float32 controller state after each clean frame
    wiring: Wiring | None = None  # the controller's wiring, for `plot_neuron_traces`
    noisy: list[NoisySaliency] = field(default_factory=list)  # one per noise variance, in order

    def __len__(self) -> int:
        return len(self.stamps)

    def summary(self) -> dict[str, Any]:
        """Return the figures per noise variance as a JSON-compatible dict."""
        noise = []
        for result in self.noisy:
            difference = np.abs(result.curvature.astype(np.float64) - self.curvature)
            noise.append({
                "variance": result.variance,
                "mean_similarity": result.mean_similarity,
                "std_similarity": result.std_similarity,
                "min_similarity": float(np.min(result.similarity)),
                "mean_abs_curvature_difference": float(np.nanmean(difference)),
            })
        return {
            "model": self.model,
            "bag": self.bag,
            "topic": self.topic,
            "frames": len(self),
            "first_stamp": float(self.stamps[0]),
            "last_stamp": float(self.stamps[-1]),
            "noise": noise,
        }


class _Pass:
    """One sequential pass of the model over the frames, with its own recurrent state and noise."""

    def __init__(self, runner: PolicyRunner, variance: float, seed: int) -> None:
        # Imported here because liquid_driver.eval loads MuJoCo, which reading a bag does not need.
        from liquid_driver.eval.core import add_gaussian_noise

        self.add_noise = add_gaussian_noise
        self.runner = runner
        self.variance = variance
        # One reproducible noise stream per variance, as the closed-loop evaluation does per run.
        self.rng = np.random.default_rng([seed, int(round(variance * 1e6))])
        self.frames: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []
        self.curvature: list[float] = []
        self.states: list[np.ndarray] = []

    def step(self, rgb: np.ndarray, stamp: float, record_states: bool = False) -> None:
        noisy = self.add_noise(rgb, self.variance, self.rng)
        prediction = self.runner.predict(noisy, stamp, debug=record_states, saliency=True)
        assert prediction.saliency is not None and prediction.frame is not None
        self.frames.append(prediction.frame)
        self.masks.append(prediction.saliency)
        self.curvature.append(prediction.curvature)
        if record_states:
            assert prediction.neuron_states is not None
            self.states.append(prediction.neuron_states.astype(np.float32))


def _check_variances(noise_variances: Sequence[float]) -> list[float]:
    variances = [float(variance) for variance in noise_variances]
    for variance in variances:
        if not (math.isfinite(variance) and 0.0 <= variance <= 1.0):
            raise ValueError(
                f"noise variance {variance!r} is invalid; expected a value in [0, 1] "
                "(pixels scaled to [0, 1])")
    return variances


def _load_runner(model_path: PathLike, threads: int) -> PolicyRunner:
    from liquid_driver.inference import PolicyRunner

    runner = PolicyRunner(model_path, threads=threads)
    if not runner.supports_saliency:
        raise ValueError(
            f"model {model_path} runs on the {runner.backend.name} backend, which has no "
            "convolution maps for saliency; pass the .safetensors checkpoint")
    return runner


def _progress_disabled(progress: bool | None) -> bool | None:
    """Map the progress setting to tqdm's `disable` (None: only on a terminal)."""
    return None if progress is None else not progress


def bag_saliency(
    model_path: PathLike,
    bag: PathLike,
    noise_variances: Sequence[float] = DEFAULT_NOISE_VARIANCES,
    *,
    topic: str | None = None,
    every: int = 1,
    max_frames: int | None = DEFAULT_MAX_FRAMES,
    seed: int = 0,
    threads: int = 1,
    progress: bool | None = False,
) -> BagSaliency:
    """Compute VisualBackProp saliency over a bag's camera frames, clean and with pixel noise.

    The model runs over the frames in order once clean and once per noise
    variance. Each pass has its own recurrent state, and dt comes from the
    frame stamps as in `PolicyRunner.predict`. Noise is added to the raw
    camera frame before preprocessing, as `liquid-driver-eval` does, so the
    crop and resize average part of it away. Each noisy mask is compared with
    the clean mask of the same frame by `saliency_similarity` (Pearson
    correlation): 1 means the attention did not move.

    Args:
        model_path: safetensors checkpoint (the ONNX export has no convolution maps).
        bag: rosbag2 directory, or a folder that contains exactly one.
        noise_variances: Gaussian pixel-noise variances in [0, 1], pixels scaled
            to [0, 1]. A variance of 0 repeats the clean pass.
        topic: image topic; None picks it by type (see `read_camera_frames`).
        every: use every `every`-th frame. Skipping frames feeds the network a
            longer dt, as a slower camera would, and gaps above the runner's
            max_dt (0.5 s) reset the state at every frame.
        max_frames: frames to process; None processes the whole bag, with memory
            growing by about 43 kB per frame and pass at a 48x128 input.
        seed: seed of the noise generators; each variance gets its own stream.
        threads: torch intra-op threads.
        progress: show a tqdm bar over the frames; None shows it only on a terminal.

    Raises:
        FileNotFoundError: the bag or the model file does not exist.
        CheckpointError: the model file is not a valid checkpoint.
        DatasetError, ImageFormatError: see `read_camera_frames`.
        ValueError: an argument is invalid, or the model is an ONNX export.
    """
    variances = _check_variances(noise_variances)
    _check_sampling(every, max_frames)
    camera = _camera_topic(bag, topic)

    clean = _Pass(_load_runner(model_path, threads), 0.0, seed)
    passes = [_Pass(_load_runner(model_path, threads), variance, seed) for variance in variances]
    policy = getattr(clean.runner.backend, "policy", None)
    wiring = getattr(policy, "wiring", None)
    logger.info("Saliency of %s over %s (%s), noise variances %s",
                clean.runner.description, camera.bag, camera.topic,
                ", ".join(f"{variance:g}" for variance in variances) or "none")

    expected = -(-camera.count // every)  # ceil(count / every)
    if max_frames is not None:
        expected = min(expected, max_frames)
    indices: list[int] = []
    stamps: list[float] = []
    frames = _iterate_frames(camera, max_frames, every)
    for index, stamp, rgb in tqdm(frames, total=expected, desc="frames", unit="frame",
                                  disable=_progress_disabled(progress)):
        indices.append(index)
        stamps.append(stamp)
        clean.step(rgb, stamp, record_states=True)
        for noisy_pass in passes:
            noisy_pass.step(rgb, stamp)
    if not stamps:
        raise DatasetError(f"image topic {camera.topic} in bag {camera.bag} yielded no frames.")

    result = BagSaliency(
        model=str(model_path),
        bag=str(camera.bag),
        topic=camera.topic,
        frame_indices=np.asarray(indices, dtype=np.int64),
        stamps=np.asarray(stamps, dtype=np.float64),
        frames=np.stack(clean.frames),
        masks=np.stack(clean.masks),
        curvature=np.asarray(clean.curvature, dtype=np.float32),
        neuron_states=np.stack(clean.states),
        wiring=wiring,
    )
    for noisy_pass in passes:
        masks = np.stack(noisy_pass.masks)
        similarity = [saliency_similarity(clean_mask, mask) for clean_mask, mask in zip(result.masks, masks)]
        result.noisy.append(NoisySaliency(
            variance=noisy_pass.variance,
            frames=np.stack(noisy_pass.frames),
            masks=masks,
            curvature=np.asarray(noisy_pass.curvature, dtype=np.float32),
            similarity=np.asarray(similarity, dtype=np.float64),
        ))
        logger.info("Noise variance %g: saliency similarity %.3f +- %.3f over %d frames",
                    noisy_pass.variance, result.noisy[-1].mean_similarity,
                    result.noisy[-1].std_similarity, len(result))
    return result


# ----------------------------------------------------------------------
# Plots


def _sheet_columns(count: int, columns: int) -> np.ndarray:
    """Return up to `columns` evenly spaced frame positions in [0, count)."""
    return np.unique(np.linspace(0, count - 1, min(columns, count)).round().astype(np.int64))


def plot_saliency_sheet(result: BagSaliency, path: PathLike, frames: int = 8) -> Path:
    """Write a PNG grid of model inputs with their saliency overlaid, and return its path.

    Rows are the clean pass and each noise variance, columns are `frames`
    evenly spaced frames. Noisy cells show the noisy model input, and their
    titles give the Pearson correlation r with the clean mask of that frame.

    Raises:
        ValueError: `frames` < 1 or the result contains no frames.
    """
    if frames < 1:
        raise ValueError(f"frames={frames!r} is invalid; expected at least 1 column")
    if len(result) == 0:
        raise ValueError("the saliency result contains no frames; run bag_saliency on a bag with camera frames")
    positions = _sheet_columns(len(result), frames)
    rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]] = [
        ("clean", result.frames, result.masks, None)]
    for noisy in result.noisy:
        label = (f"noise variance {noisy.variance:g}\n"
                 f"r = {noisy.mean_similarity:.2f} ± {noisy.std_similarity:.2f}")
        rows.append((label, noisy.frames, noisy.masks, noisy.similarity))

    height, width = result.frames.shape[1:3]
    cell_width = 2.2
    cell_height = cell_width * height / width + 0.45
    figure, axes = plt.subplots(
        len(rows), len(positions), squeeze=False,
        figsize=(cell_width * len(positions) + 1.4, cell_height * len(rows) + 0.6))
    start = float(result.stamps[0])
    for row, (label, row_frames, row_masks, similarity) in enumerate(rows):
        for column, position in enumerate(positions):
            axis = axes[row, column]
            axis.imshow(saliency_overlay(row_frames[position], row_masks[position]))
            axis.set_xticks([])
            axis.set_yticks([])
            if similarity is None:
                axis.set_title(f"frame {result.frame_indices[position]}, "
                               f"{result.stamps[position] - start:.1f} s", fontsize="small")
            else:
                axis.set_title(f"r = {similarity[position]:.2f}", fontsize="small")
        axes[row, 0].set_ylabel(label, fontsize="small")
    figure.suptitle(f"VisualBackProp saliency: {Path(result.model).name} on {Path(result.bag).name}",
                    fontsize="medium")
    figure.tight_layout()
    return _save(figure, path, "saliency sheet")


def _save(figure: Any, path: PathLike, description: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        figure.savefig(path, dpi=110)
    finally:
        plt.close(figure)
    logger.info("Wrote %s %s", description, path)
    return path


def _trace_groups(state_size: int, wiring: Wiring | None) -> list[tuple[str, range]]:
    """Return (subplot title, state columns) per subplot."""
    if wiring is None:
        return [("state", range(state_size))]
    if state_size < wiring.units:
        raise ValueError(
            f"states have {state_size} columns but the wiring has {wiring.units} neurons; "
            "pass the wiring of the model that produced the states")
    motor = set(wiring.motor_neurons)
    groups = []
    for layer in wiring.layers:
        if layer.size == 1:
            name = f"{layer.name} neuron {layer.start}"
        else:
            name = f"{layer.name} neurons {layer.start}-{layer.stop - 1}"
        if layer.name != "motor" and motor.intersection(range(layer.start, layer.stop)):
            name += f" (motor: {', '.join(str(n) for n in sorted(motor))})"
        groups.append((name, range(layer.start, layer.stop)))
    if state_size > wiring.units:
        # Mixed memory: the LSTM gate's memory cell follows the neuron states.
        groups.append((f"memory cell, columns {wiring.units}-{state_size - 1}", range(wiring.units, state_size)))
    return groups


def plot_neuron_traces(
    states: np.ndarray,
    times: np.ndarray,
    wiring: Wiring | None,
    path: PathLike,
    curvature: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG of neuron states over time, one subplot per layer, and return its path.

    With a wiring, the first `wiring.units` state columns are grouped by its
    layers (inter, command, motor for an NCP) and any further columns (the
    memory cell of a mixed-memory cell) get a subplot of their own. Without
    one, every column goes into one subplot. A subplot draws at most
    `MAX_TRACE_LINES` columns, the first ones. With `curvature`, a bottom
    subplot shows the model output in 1/m.

    Args:
        states: (T, state_size) states, one row per frame.
        times: (T,) times in s.
        wiring: the controller's wiring, or None.
        path: destination PNG file.
        curvature: (T,) model output in 1/m, or None.
        title: figure title.

    Raises:
        ValueError: the shapes do not match each other or the wiring, or T is 0.
    """
    states = np.asarray(states, dtype=np.float32)
    times = np.asarray(times, dtype=np.float64)
    if states.ndim != 2 or states.shape[0] == 0:
        raise ValueError(f"states have shape {states.shape}; expected (T, state_size) with T >= 1")
    if times.shape != (states.shape[0],):
        raise ValueError(f"times have shape {times.shape}; expected ({states.shape[0]},) to match the states")
    if curvature is not None:
        curvature = np.asarray(curvature, dtype=np.float64)
        if curvature.shape != times.shape:
            raise ValueError(
                f"curvature has shape {curvature.shape}; expected {times.shape} to match the states")
    groups = _trace_groups(states.shape[1], wiring)
    panels = len(groups) + (curvature is not None)
    figure, axes = plt.subplots(panels, 1, sharex=True, squeeze=False, figsize=(10.0, 2.1 * panels + 0.6))
    axes = axes[:, 0]
    for axis, (name, columns) in zip(axes, groups):
        drawn = columns[:MAX_TRACE_LINES]
        for column in drawn:
            axis.plot(times, states[:, column], lw=0.8, label=f"{column}")
        if len(drawn) < len(columns):
            name += f", first {len(drawn)} of {len(columns)} drawn"
        axis.set_title(name, fontsize="small", loc="left")
        axis.set_ylabel("state")
        if len(drawn) <= _MAX_LEGEND_LINES:
            axis.legend(fontsize="x-small", loc="upper right", ncol=len(drawn))
        axis.grid(True, alpha=0.3)
    if curvature is not None:
        axis = axes[-1]
        axis.plot(times, curvature, color="black", lw=1.0)
        axis.axhline(0.0, color="gray", lw=0.5)
        axis.set_title("model output", fontsize="small", loc="left")
        axis.set_ylabel("curvature, 1/m")
        axis.grid(True, alpha=0.3)
    axes[-1].set_xlabel("time, s")
    if title is not None:
        figure.suptitle(title, fontsize="medium")
    figure.tight_layout()
    return _save(figure, path, "neuron traces")


# ----------------------------------------------------------------------
# Closed-loop traces


class _TracingPolicy:
    """`drive_run` policy that wraps a `PolicyRunner` and records each frame's state and output."""

    def __init__(self, runner: PolicyRunner) -> None:
        self.runner = runner
        self.times: list[float] = []
        self.states: list[np.ndarray] = []
        self.curvature: list[float] = []

    def predict(self, rgb: np.ndarray, stamp: float) -> Any:
        prediction = self.runner.predict(rgb, stamp, debug=True)
        self.times.append(float(stamp))
        self.states.append(prediction.neuron_states.astype(np.float32))
        self.curvature.append(prediction.curvature)
        return prediction

    def reset(self) -> None:
        self.runner.reset()


def drive_traces(
    model_path: PathLike,
    layout: str = "curvy",
    seed: int = 1000,
    laps: float = 1.0,
    noise_variance: float = 0.0,
    threads: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, RunResult]:
    """Drive one closed-loop run in the embedded simulator and record the neuron states.

    The run is `liquid_driver.eval.core.drive_run` with its default simulator
    and settings apart from `laps`. Interventions reset the recurrent state,
    so the traces restart from rest there. The clock keeps running across them.
    For `plot_neuron_traces`, the wiring is `load_checkpoint(model_path)[0].wiring`.

    Args:
        model_path: safetensors checkpoint or ONNX export.
        layout: track layout, such as "curvy" or "random:1001:reverse".
        seed: visual seed of the simulator.
        laps: laps to drive; fractions allowed.
        noise_variance: Gaussian pixel-noise variance, pixels scaled to [0, 1].
        threads: torch intra-op threads.

    Returns:
        (times (T,) in s, states (T, state_size) float32, curvature (T,) in 1/m,
        the run's `RunResult`), with one row per frame.
    """
    from liquid_driver.eval.core import Condition, EvalSettings, drive_run
    from liquid_driver.inference import PolicyRunner

    policy = _TracingPolicy(PolicyRunner(model_path, threads=threads))
    condition = Condition(layout=layout, seed=seed, noise_variance=noise_variance)
    run = drive_run(policy, condition, EvalSettings(laps=laps))
    return (
        np.asarray(policy.times, dtype=np.float64),
        np.stack(policy.states) if policy.states else np.zeros((0, 0), dtype=np.float32),
        np.asarray(policy.curvature, dtype=np.float64),
        run,
    )
