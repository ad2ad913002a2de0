"""Frame-by-frame driving with a trained policy, independent of ROS 2.

`PolicyRunner` owns a loaded checkpoint, its preprocessing and the recurrent
state. It derives dt from image stamps and resets the state when time does not
move forward as a camera's would, so a looping bag or a simulator reset never
feeds the network a negative or huge dt.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.metrics import percentile_ms
from liquid_driver.model import load_checkpoint

logger = logging.getLogger(__name__)

# dt assumed for the first frame after a (re)start, when no earlier stamp exists.
DEFAULT_FRAME_PERIOD_S = 0.05


@dataclass
class Prediction:
    """Result of one frame."""

    curvature: float  # 1/m, path curvature to follow; NaN when the output was not finite
    dt: float  # s, elapsed time fed to the network
    reset_reason: str | None  # why the recurrent state was reset before this frame, if it was
    latency: float  # s, preprocessing plus inference time


class PolicyRunner:
    """Run a checkpoint on single frames, keeping the recurrent state between them.

    Args:
        checkpoint_path: file written by `save_checkpoint`.
        max_dt: a gap between stamps above this many seconds resets the state.
        threads: torch intra-op threads; 1 keeps latency steady next to other nodes.
    """

    def __init__(self, checkpoint_path: str | Path, max_dt: float = 0.5, threads: int = 1):
        if not max_dt > 0.0:
            raise ValueError(f"max_dt={max_dt!r} must be a positive number of seconds")
        self.checkpoint_path = Path(checkpoint_path)
        torch.set_num_threads(int(threads))
        self.policy, self.metadata = load_checkpoint(self.checkpoint_path)
        self.policy.eval()
        self.preprocessing = Preprocessing.from_dict(self.metadata["preprocessing"])
        training = self.metadata.get("training") or {}
        self.nominal_dt = float(training.get("median_dt", DEFAULT_FRAME_PERIOD_S))
        self.max_dt = float(max_dt)
        self.state = self.policy.initial_state(1)
        self.last_stamp: float | None = None
        self.latencies: deque[float] = deque(maxlen=2000)
        self.resets = 0
        self._warm_up()

    @property
    def description(self) -> str:
        """One line naming the checkpoint and its network, for logs."""
        config = self.metadata.get("policy_config", {})
        controller = config.get("controller", {})
        params = sum(p.numel() for p in self.policy.parameters())
        return (
            f"{self.checkpoint_path.name}: {controller.get('cell', '?')} "
            f"{controller.get('wiring', '?')} with {controller.get('units', '?')} neurons, "
            f"{params} parameters, input {self.preprocessing.height}x{self.preprocessing.width}"
        )

    def _warm_up(self) -> None:
        """Run one dummy frame so the first real frame does not pay for lazy set-up."""
        h, w = self.preprocessing.height, self.preprocessing.width
        with torch.inference_mode():
            self.policy.step(torch.zeros(1, 3, h, w), self.policy.initial_state(1), self.nominal_dt)

    def reset(self) -> None:
        """Forget the recurrent state and the last stamp."""
        self.state = self.policy.initial_state(1)
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
        self.state = self.policy.initial_state(1)
        return self.nominal_dt, reason

    def predict(self, rgb: np.ndarray, stamp: float) -> Prediction:
        """Preprocess one RGB frame, advance the network by the time since the last frame.

        Args:
            rgb: (H, W, 3) uint8 image of any size; preprocessing crops and resizes it.
            stamp: capture time in seconds (header stamp), in any clock that only moves forward.
        """
        started = time.perf_counter()
        dt, reset_reason = self._dt_from_stamp(float(stamp))
        self.last_stamp = float(stamp)

        frame = self.preprocessing.apply(rgb)  # (h, w, 3) uint8
        image = torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)  # (1, 3, h, w)
        with torch.inference_mode():
            curvature, self.state = self.policy.step(image, self.state, dt)
        value = float(curvature.reshape(-1)[0])
        if not math.isfinite(value):
            # A non-finite output poisons the state too; start over on the next frame.
            self.state = self.policy.initial_state(1)
            value = float("nan")
        latency = time.perf_counter() - started
        self.latencies.append(latency)
        return Prediction(curvature=value, dt=dt, reset_reason=reset_reason, latency=latency)

    def latency_ms(self) -> tuple[float, float]:
        """Return (p50, p99) latency in ms over the recent frames."""
        return percentile_ms(self.latencies, 50), percentile_ms(self.latencies, 99)
