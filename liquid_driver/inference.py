"""Frame-by-frame driving with a trained policy, independent of ROS 2.

`PolicyRunner` owns a loaded model (a PyTorch checkpoint or an exported ONNX
file), its preprocessing and the recurrent state. It derives dt from image
stamps and resets the state when time does not move forward as a camera's
would, so a looping bag or a simulator reset never feeds the network a negative
or huge dt.

`CommandShaper` turns the network's curvature into a speed and a steering angle
within the vehicle's limits: clamped steering, a steering rate limit and a
speed that is fixed, scheduled from the curvature or taken from the model.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.metrics import percentile_ms

logger = logging.getLogger(__name__)

# dt assumed for the first frame after a (re)start, when no earlier stamp exists.
DEFAULT_FRAME_PERIOD_S = 0.05

BACKENDS = ("torch", "onnx")
SPEED_MODES = ("fixed", "curvature", "model")


@dataclass
class Prediction:
    """Result of one frame."""

    curvature: float  # 1/m, path curvature to follow; NaN when the output was not finite
    dt: float  # s, elapsed time fed to the network
    reset_reason: str | None  # why the recurrent state was reset before this frame, if it was
    latency: float  # s, preprocessing plus inference time
    speed: float | None = None  # m/s, only from a model that predicts a speed
    features: np.ndarray | None = None  # (feature_size,) CNN output, when requested
    neuron_states: np.ndarray | None = None  # (state_size,) NCP state after the step, when requested
    saliency: np.ndarray | None = None  # (h, w) float32 in [0, 1] at the model input size, when requested
    frame: np.ndarray | None = None  # (h, w, 3) uint8 model input, returned with the saliency


class TorchBackend:
    """A safetensors checkpoint run with PyTorch on the CPU."""

    name = "torch"

    def __init__(self, path: Path, threads: int):
        import torch

        from liquid_driver.model import load_checkpoint

        self._torch = torch
        torch.set_num_threads(int(threads))
        self.policy, self.metadata = load_checkpoint(path)
        self.policy.eval()
        self.parameters = sum(p.numel() for p in self.policy.parameters())

    def initial_state(self):
        return self.policy.initial_state(1)

    def step(self, frame: np.ndarray, state, dt: float, debug: bool, saliency: bool):
        """Run one (h, w, 3) uint8 frame; return (curvature, state, features, saliency mask)."""
        torch = self._torch
        image = torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)  # (1, 3, h, w)
        mask = None
        with torch.inference_mode():
            if saliency:
                from liquid_driver.saliency import conv_activations, visual_backprop

                features, maps = conv_activations(self.policy.cnn, image)  # (1, feature_size)
                mask = visual_backprop(maps, frame.shape[:2])
                output, state = self.policy.controller.step(features, state, dt)
                curvature = output[:, :1] * self.policy.output_scale
            elif debug:
                features = self.policy.cnn(image)  # (1, feature_size)
                output, state = self.policy.controller.step(features, state, dt)
                curvature = output[:, :1] * self.policy.output_scale
            else:
                features = None
                curvature, state = self.policy.step(image, state, dt)
        feature_values = features.reshape(-1).numpy().copy() if features is not None else None
        return float(curvature.reshape(-1)[0]), state, feature_values, mask

    @staticmethod
    def state_values(state) -> np.ndarray:
        return state.reshape(-1).numpy().copy()


class OnnxBackend:
    """An ONNX file written by `liquid-driver-export`, run with onnxruntime."""

    name = "onnx"

    def __init__(self, path: Path, threads: int):
        from liquid_driver.model.onnx_runtime import OnnxPolicy

        self.policy = OnnxPolicy(path, threads=threads)
        self.metadata = self.policy.metadata
        self.parameters = None

    def initial_state(self):
        return self.policy.initial_state()

    def step(self, frame: np.ndarray, state, dt: float, debug: bool, saliency: bool):
        """Run one (h, w, 3) uint8 frame; features and saliency are not in the exported graph."""
        # (h, w, 3) uint8 -> (1, 3, h, w) float32 in [0, 1]
        image = np.ascontiguousarray(frame.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)
        image *= 1.0 / 255.0
        curvature, state = self.policy.step(image, state, dt)
        return float(curvature), state, None, None

    @staticmethod
    def state_values(state) -> np.ndarray:
        return np.asarray(state, dtype=np.float32).reshape(-1).copy()


def load_backend(path: Path, backend: str, threads: int):
    """Load a model file with the named backend.

    Raises:
        ValueError: `backend` is not one of `BACKENDS`, or the file is not a model.
        FileNotFoundError: the file does not exist.
        ImportError: the backend's runtime (torch or onnxruntime) is not installed.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is invalid; expected one of {', '.join(BACKENDS)}")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} not found; check model_path")
    # Each runtime's own error on the other format is cryptic, so check the suffix first.
    if path.suffix.lower() == ".onnx" and backend != "onnx":
        raise ValueError(
            f"model file {path} is an ONNX export, which the {backend} backend cannot load; "
            "set backend to onnx, or pass the .safetensors checkpoint it was exported from")
    if backend == "onnx" and path.suffix.lower() == ".safetensors":
        raise ValueError(
            f"model file {path} is a safetensors checkpoint, which the onnx backend cannot "
            "load; export it with `liquid-driver-export CKPT --onnx OUT.onnx`, or set backend "
            "to torch")
    if backend == "onnx":
        return OnnxBackend(path, threads)
    return TorchBackend(path, threads)


class PolicyRunner:
    """Run a model on single frames, keeping the recurrent state between them.

    Args:
        checkpoint_path: safetensors file written by `save_checkpoint` (backend "torch")
            or ONNX file written by `liquid-driver-export` (backend "onnx").
        max_dt: a gap between stamps above this many seconds resets the state.
        threads: intra-op threads of the backend; 1 keeps latency steady next to other nodes.
        backend: "torch" or "onnx".
    """

    def __init__(self, checkpoint_path: str | Path, max_dt: float = 0.5, threads: int = 1,
                 backend: str = "torch"):
        if not max_dt > 0.0:
            raise ValueError(f"max_dt={max_dt!r} must be a positive number of seconds")
        self.checkpoint_path = Path(checkpoint_path)
        self.backend = load_backend(self.checkpoint_path, backend, threads)
        self.metadata: dict[str, Any] = self.backend.metadata
        self.preprocessing = Preprocessing.from_dict(self.metadata.get("preprocessing") or {})
        training = self.metadata.get("training") or {}
        self.nominal_dt = float(training.get("median_dt", DEFAULT_FRAME_PERIOD_S))
        self.max_dt = float(max_dt)
        self.state = self.backend.initial_state()
        self.last_stamp: float | None = None
        self.latencies: deque[float] = deque(maxlen=2000)
        self.resets = 0
        self._warm_up()

    @property
    def predicts_speed(self) -> bool:
        """Whether the model outputs a speed next to the curvature."""
        # NOTE: the policies of this package output only a curvature, so no model
        # predicts a speed yet; speed_mode "model" is rejected for all of them.
        return False

    @property
    def supports_saliency(self) -> bool:
        """Whether the backend exposes the convolution maps that saliency needs."""
        return self.backend.name == "torch"

    @property
    def description(self) -> str:
        """One line naming the model file, its network and the backend, for logs."""
        config = self.metadata.get("policy_config", {})
        controller = config.get("controller", {})
        parameters = self.backend.parameters
        counted = f"{parameters} parameters, " if parameters is not None else ""
        cell = controller.get("cell", "?")
        if cell == "lstm":
            network = f"lstm with {controller.get('units', '?')} units"
        elif cell == "feedforward":
            network = f"feedforward with hidden layers {controller.get('hidden_layers', '?')}"
        else:
            network = f"{cell} {controller.get('wiring', '?')} with {controller.get('units', '?')} neurons"
        return (
            f"{self.checkpoint_path.name}: {network}, "
            f"{counted}input {self.preprocessing.height}x{self.preprocessing.width}, "
            f"{self.backend.name} backend"
        )

    def _warm_up(self) -> None:
        """Run one dummy frame so the first real frame does not pay for lazy set-up."""
        frame = np.zeros((self.preprocessing.height, self.preprocessing.width, 3), dtype=np.uint8)
        self.backend.step(frame, self.backend.initial_state(), self.nominal_dt, False, False)

    def reset(self) -> None:
        """Forget the recurrent state and the last stamp."""
        self.state = self.backend.initial_state()
        self.last_stamp = None

    def _dt_from_stamp(self, stamp: float) -> tuple[float, str | None]:
        if self.last_stamp is None:
            return self.nominal_dt, None
        dt = stamp - self.last_stamp
        if dt < 0.0:
            reason = f"stamp went backwards by {-dt:.3f} s"
        elif dt == 0.0:
            reason = "stamp repeated"
        elif dt > self.max_dt:
            reason = f"stamp jumped forward by {dt:.3f} s (max_dt={self.max_dt:.3f} s)"
        else:
            return dt, None
        self.resets += 1
        self.state = self.backend.initial_state()
        return self.nominal_dt, reason

    def predict(self, rgb: np.ndarray, stamp: float, debug: bool = False,
                saliency: bool = False) -> Prediction:
        """Preprocess one RGB frame, advance the network by the time since the last frame.

        Args:
            rgb: (H, W, 3) uint8 image of any size; preprocessing crops and resizes it.
            stamp: capture time in seconds (header stamp), in any clock that only moves forward.
            debug: also return the CNN features and the neuron states.
            saliency: also return a VisualBackProp mask (torch backend only).

        Raises:
            TypeError, ValueError: the image is not (H, W, 3) uint8, or too small for the crop.
        """
        started = time.perf_counter()
        frame = self.preprocessing.apply(rgb)  # (h, w, 3) uint8
        dt, reset_reason = self._dt_from_stamp(float(stamp))
        self.last_stamp = float(stamp)

        saliency = saliency and self.supports_saliency
        value, self.state, features, mask = self.backend.step(frame, self.state, dt, debug, saliency)
        neuron_states = self.backend.state_values(self.state) if debug else None
        if not math.isfinite(value):
            # A non-finite output poisons the state too; start over on the next frame.
            self.state = self.backend.initial_state()
            value = float("nan")
        latency = time.perf_counter() - started
        self.latencies.append(latency)
        return Prediction(
            curvature=value, dt=dt, reset_reason=reset_reason, latency=latency,
            features=features, neuron_states=neuron_states, saliency=mask,
            frame=frame if mask is not None else None)

    def latency_ms(self) -> tuple[float, float]:
        """Return (p50, p99) latency in ms over the recent frames."""
        return percentile_ms(self.latencies, 50), percentile_ms(self.latencies, 99)


@dataclass
class CommandLimits:
    """Speed schedule and steering limits of the vehicle."""

    speed_mode: str = "fixed"  # "fixed", "curvature" (slower in bends) or "model"
    speed: float = 1.0  # m/s, cruise speed; the fixed speed and the top of the schedule
    min_speed: float = 0.3  # m/s, floor of the curvature schedule
    max_speed: float = 2.0  # m/s, clamp on every speed, the model's included
    max_lateral_acceleration: float = 1.5  # m/s^2, sets the schedule's speed in a bend
    wheelbase: float = 0.26  # m, front to rear axle, for steering = atan(wheelbase * curvature)
    max_steering_angle: float = 0.4  # rad, clamp on the front wheel angle
    max_steering_rate: float = 4.0  # rad/s, clamp on the change of the front wheel angle

    def validate(self) -> str | None:
        """Return why these limits are invalid, or None when they are valid."""
        if self.speed_mode not in SPEED_MODES:
            return f"speed_mode={self.speed_mode!r} is invalid; expected one of {', '.join(SPEED_MODES)}"
        for name in ("speed", "min_speed", "max_speed", "max_lateral_acceleration", "wheelbase",
                     "max_steering_angle", "max_steering_rate"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0.0:
                return f"{name}={value!r} is invalid; expected a finite value >= 0"
        if not self.min_speed <= self.speed <= self.max_speed:
            return (f"speeds are inconsistent: expected min_speed <= speed <= max_speed, got "
                    f"{self.min_speed} <= {self.speed} <= {self.max_speed} m/s; change one of them")
        if self.wheelbase <= 0.0:
            return f"wheelbase={self.wheelbase} m is invalid; expected a positive length"
        if not 0.0 < self.max_steering_angle < 0.5 * math.pi:
            return (f"max_steering_angle={self.max_steering_angle} rad is invalid; "
                    f"expected a value in (0, {0.5 * math.pi:.4f}) rad")
        return None


@dataclass
class Command:
    """One shaped driving command."""

    speed: float  # m/s
    curvature: float  # 1/m, after the steering limits
    steering_angle: float  # rad, front wheel angle of the bicycle model, positive to the left

    @property
    def yaw_rate(self) -> float:
        """Yaw rate in rad/s: speed x curvature."""
        return self.speed * self.curvature


class CommandShaper:
    """Apply `CommandLimits` to the network's curvature, keeping the last steering angle."""

    def __init__(self, limits: CommandLimits):
        reason = limits.validate()
        if reason is not None:
            raise ValueError(reason)
        self.limits = limits
        self.last_steering: float | None = None

    def reset(self) -> None:
        """Forget the last steering angle, so the next command is not rate limited."""
        self.last_steering = None

    def shape(self, curvature: float, dt: float, model_speed: float | None = None) -> Command:
        """Return the command for a finite curvature in 1/m, dt s after the previous one.

        Raises:
            ValueError: the curvature or dt is not finite.
        """
        if not math.isfinite(curvature) or not math.isfinite(dt):
            raise ValueError(f"curvature={curvature!r} 1/m and dt={dt!r} s must be finite")
        limits = self.limits
        steering = math.atan(limits.wheelbase * curvature)
        steering = max(-limits.max_steering_angle, min(limits.max_steering_angle, steering))
        if self.last_steering is not None:
            max_change = limits.max_steering_rate * max(dt, 0.0)
            change = max(-max_change, min(max_change, steering - self.last_steering))
            steering = self.last_steering + change
        self.last_steering = steering
        limited_curvature = math.tan(steering) / limits.wheelbase

        if limits.speed_mode == "model" and model_speed is not None and math.isfinite(model_speed):
            speed = max(0.0, min(limits.max_speed, model_speed))
        elif limits.speed_mode == "curvature":
            # v^2 * |curvature| is the lateral acceleration of a steady turn.
            bend_speed = math.sqrt(limits.max_lateral_acceleration / max(abs(limited_curvature), 1e-6))
            speed = max(limits.min_speed, min(limits.speed, bend_speed))
        else:
            speed = limits.speed
        speed = min(speed, limits.max_speed)
        return Command(speed=speed, curvature=limited_curvature, steering_angle=steering)
