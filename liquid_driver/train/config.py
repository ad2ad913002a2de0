"""Settings of a training run: data, optimisation, augmentation and model."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from liquid_driver.data.dataset import DatasetConfig
from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.model import PolicyConfig
from liquid_driver.train.distributed import DEVICES, SHARD_MODES

__all__ = ["PRECISIONS", "AugmentConfig", "CameraGeometry", "TrainConfig"]

PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class CameraGeometry:
    """Forward camera of the recording car, for the view-shift augmentation.

    The defaults are the simulator's camera (`liquid_driver.sim.SimConfig`).
    For a real car, measure the mount and give the camera's native image size,
    before the training preprocessing crops and resizes it.
    """

    width: int = 160  # px, image width as recorded
    height: int = 120  # px, image height as recorded
    fovy_deg: float = 75.0  # vertical field of view, degrees; pixels are assumed square
    mount_height: float = 0.15  # lens height above the ground, m
    pitch: float = 0.35  # downward tilt of the optical axis, rad
    forward: float = 0.31  # lens ahead of the rear axle, m

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"invalid CameraGeometry.{name} {value!r} px; expected an int >= 1.")
        if not (math.isfinite(self.fovy_deg) and 1.0 <= self.fovy_deg <= 170.0):
            raise ValueError(f"invalid CameraGeometry.fovy_deg {self.fovy_deg!r}; expected [1, 170] degrees.")
        if not (math.isfinite(self.mount_height) and self.mount_height > 0.0):
            raise ValueError(
                f"invalid CameraGeometry.mount_height {self.mount_height!r} m; expected a positive height."
            )
        if not (math.isfinite(self.pitch) and abs(self.pitch) < 0.5 * math.pi):
            raise ValueError(f"invalid CameraGeometry.pitch {self.pitch!r} rad; expected (-pi/2, pi/2).")
        if not math.isfinite(self.forward):
            raise ValueError(f"invalid CameraGeometry.forward {self.forward!r} m; expected a finite distance.")

    @property
    def focal_px(self) -> float:
        """Focal length in pixels, from the vertical field of view."""
        return 0.5 * self.height / math.tan(0.5 * math.radians(self.fovy_deg))


@dataclass(frozen=True)
class AugmentConfig:
    """Photometric and view-shift augmentation of training frames, drawn once per window.

    Horizontal flips are deliberately absent: the car drives in the right lane,
    so a mirrored frame would show a left-lane scene with the wrong target.
    """

    enabled: bool = True
    # Additive brightness offset drawn from [-brightness, +brightness] (pixel values in [0, 1]).
    brightness: float = 0.15
    # Contrast factor drawn from [1 - contrast, 1 + contrast], around each frame's mean.
    contrast: float = 0.3
    # Per-channel colour gain drawn from [1 - colour_gain, 1 + colour_gain].
    colour_gain: float = 0.1
    # Probability that a window gets a shadow: a random quadrilateral spanning the
    # image from top to bottom, darkened by a factor from shadow_factor.
    shadow_probability: float = 0.3
    shadow_factor: tuple[float, float] = (0.45, 0.85)
    # Gaussian pixel noise with a standard deviation drawn from [0, noise_std].
    noise_std: float = 0.03
    # Probability that a window gets heavy pixel noise instead, with a standard
    # deviation drawn from [noise_std, heavy_noise_std]. 0.45 is a variance of
    # about 0.2 on pixels in [0, 1], the middle of the noise levels that
    # liquid-driver-eval tests.
    heavy_noise_probability: float = 0.2
    heavy_noise_std: float = 0.45
    # Probability that a window is re-projected as if the car were displaced
    # sideways and turned, with the curvature corrected to steer back (see
    # liquid_driver.train.augment.view_shift_). Offsets are drawn uniformly.
    view_shift_probability: float = 0.5
    max_lateral_shift: float = 0.1  # m, left positive; the lane is 0.6 m wide in the simulator
    max_yaw_shift: float = 0.06  # rad, left positive
    # Distance ahead, m, at which the corrected path rejoins the demonstrated one:
    # the lookahead L of the pure-pursuit correction -2 * (lateral + L * yaw) / L^2.
    recovery_distance: float = 1.0
    camera: CameraGeometry = field(default_factory=CameraGeometry)

    def __post_init__(self) -> None:
        for name in ("brightness", "contrast", "colour_gain", "noise_std", "heavy_noise_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value < 1.0):
                raise ValueError(f"invalid AugmentConfig.{name} {value!r}; expected a value in [0, 1).")
        for name in ("shadow_probability", "heavy_noise_probability", "view_shift_probability"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"invalid AugmentConfig.{name} {value!r}; expected a probability in [0, 1].")
        for name in ("max_lateral_shift", "max_yaw_shift"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"invalid AugmentConfig.{name} {value!r}; expected a finite value >= 0.")
        if not (math.isfinite(self.recovery_distance) and self.recovery_distance > 0.0):
            raise ValueError(
                f"invalid AugmentConfig.recovery_distance {self.recovery_distance!r} m; expected a "
                "positive distance."
            )
        low, high = self.shadow_factor
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(
                f"invalid AugmentConfig.shadow_factor {self.shadow_factor!r}; expected "
                "(low, high) with 0 <= low <= high <= 1."
            )
        object.__setattr__(self, "shadow_factor", (float(low), float(high)))


@dataclass
class TrainConfig:
    """Everything a training run needs; `config.json` in the run folder stores it."""

    # rosbag2 directories, or folders that contain them.
    bags: list[str]
    # Run folder for checkpoints, metrics and plots.
    out: str
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)

    # Frames per training window. 16 frames at 20 Hz are 0.8 s, longer than the
    # CfC time constants that matter for lane keeping.
    seq_len: int = 16
    # Frames between window starts. Equal to seq_len, each frame is in one
    # window per epoch; the window grid shifts randomly every epoch.
    stride: int = 16
    # Leading frames of each window left out of the loss while the state settles.
    burn_in: int = 0
    batch_size: int = 32
    # Upper bound; early stopping and max_minutes usually end the run sooner.
    epochs: int = 20
    # Epochs without a lower validation loss before training stops.
    patience: int = 5
    # Adam learning rates. The controller's few parameters take a larger rate,
    # as in the NCP lane-keeping experiments.
    cnn_lr: float = 1e-3
    controller_lr: float = 3e-3
    # Decoupled weight decay (AdamW) on all parameters.
    weight_decay: float = 1e-4
    # Cosine decay of both rates over `epochs` down to this fraction.
    min_lr_fraction: float = 0.05
    # Max gradient norm before clipping; recurrent training spikes without it.
    grad_clip: float = 1.0
    # Fraction of frames, whole episodes, held out for validation (at least one episode).
    val_fraction: float = 0.15
    seed: int = 0
    # Loss weight 1 + curvature_weight * |curvature| / curvature_scale, so the rarer
    # turns count more than the many straight frames. Scale in 1/m; None uses the
    # 95th percentile of |curvature| in the training frames.
    curvature_weight: float = 1.0
    curvature_scale: float | None = None
    # Wall-clock limit in minutes; training stops after the batch that crosses it.
    max_minutes: float | None = 12.0
    # torch intra-op threads; None keeps torch's default.
    threads: int | None = None
    # Checkpoint to continue from (see liquid_driver.train.run.train).
    resume: str | None = None
    # Copy the best checkpoint here at the end.
    export: str | None = None
    # Folder of the on-disk frame cache, so that frames are memory-mapped instead of
    # held in memory (see liquid_driver.data.cache); None loads everything into memory.
    cache_dir: str | None = None
    # Replace the results of an earlier run in `out`.
    overwrite: bool = False
    # Show tqdm progress bars; None shows them only on a terminal. Under torchrun only rank 0 shows them.
    progress: bool | None = None
    # "auto" trains on the GPU when torch.cuda.is_available(), else on the CPU; under
    # torchrun each rank uses cuda:LOCAL_RANK (see liquid_driver.train.distributed).
    device: str = "auto"
    # "fp32", or "bf16" to run forward passes under torch.autocast with bfloat16. The
    # parameters, optimiser state and loss stay float32. The liquid cells' compiled
    # kernels take only float32 CPU tensors, so under bf16 the cells run on PyTorch operators.
    precision: str = "fp32"
    # Write shards/rank<N>.json per rank: the windows each epoch trained on and a digest
    # of the final parameters, to check how a distributed run split its data.
    log_shards: bool = False
    # Under torchrun: "episode" gives each rank whole training episodes, so a rank reads
    # only their frames from the frame cache; "window" gives each rank every world_size-th
    # window of one shared order, which trains like one process with a world_size times
    # larger batch, up to floating-point rounding.
    shard_by: str = "episode"

    def __post_init__(self) -> None:
        if not self.bags:
            raise ValueError("no bags given; pass at least one rosbag2 directory.")
        self._check_counts()
        self._check_optimisation()

        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError(f"invalid max_minutes {self.max_minutes!r}; expected a positive number or None.")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"invalid threads {self.threads!r}; expected an int >= 1 or None.")
        if self.device not in DEVICES:
            raise ValueError(f"invalid device {self.device!r}; expected one of {', '.join(DEVICES)}.")
        if self.precision not in PRECISIONS:
            raise ValueError(f"invalid precision {self.precision!r}; expected one of {', '.join(PRECISIONS)}.")
        if self.shard_by not in SHARD_MODES:
            raise ValueError(f"invalid shard_by {self.shard_by!r}; expected one of {', '.join(SHARD_MODES)}.")

        image_size = (self.policy.cnn.input_height, self.policy.cnn.input_width)
        if image_size != self.preprocessing.output_size:
            raise ValueError(
                f"model input {image_size} (height, width) differs from the preprocessing output "
                f"{self.preprocessing.output_size}; set both to the same size."
            )

    def _check_counts(self) -> None:
        for name, minimum in (("seq_len", 2), ("stride", 1), ("batch_size", 1), ("epochs", 1), ("patience", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"invalid {name} {value!r}; expected an int >= {minimum}.")
        if not 0 <= self.burn_in < self.seq_len:
            raise ValueError(
                f"invalid burn_in {self.burn_in}; expected 0 <= burn_in < seq_len ({self.seq_len})."
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"invalid val_fraction {self.val_fraction!r}; expected a fraction in (0, 1).")

    def _check_optimisation(self) -> None:
        for name in ("cnn_lr", "controller_lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"invalid {name} {value!r}; expected a positive learning rate.")
        for name in ("weight_decay", "curvature_weight"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"invalid {name} {value!r}; expected a finite value >= 0.")
        if not (math.isfinite(self.grad_clip) and self.grad_clip > 0):
            raise ValueError(f"invalid grad_clip {self.grad_clip!r}; expected a positive gradient norm.")
        if not 0.0 < self.min_lr_fraction <= 1.0:
            raise ValueError(f"invalid min_lr_fraction {self.min_lr_fraction!r}; expected (0, 1].")
        if self.curvature_scale is not None and not self.curvature_scale > 0:
            raise ValueError(
                f"invalid curvature_scale {self.curvature_scale!r} 1/m; expected a positive value "
                "or None for the 95th percentile of the data."
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-compatible dict."""
        values = {
            item.name: getattr(self, item.name)
            for item in dataclasses.fields(self)
            if item.name not in ("dataset", "preprocessing", "augment", "policy")
        }
        values["dataset"] = self.dataset.to_dict()
        values["preprocessing"] = self.preprocessing.to_dict()
        values["augment"] = dataclasses.asdict(self.augment)
        values["policy"] = self.policy.to_dict()
        return values
