"""`liquid-driver-train`: train a driving policy from rosbag2 demonstrations.

Examples:

    liquid-driver-train data/demos --out runs/lane_keeper
    liquid-driver-train bags/lap1 bags/lap2 --out runs/ltc --cell ltc --epochs 30
    liquid-driver-train bags/* --out runs/lane_keeper --resume runs/lane_keeper/last.safetensors
    liquid-driver-train bags/* --out runs/final --export models/lane_keeper.safetensors
    torchrun --nproc_per_node 4 -m liquid_driver.train.cli data/demos --out runs/ddp

Under torchrun every rank runs this same command and trains with PyTorch
DistributedDataParallel (see `liquid_driver.train.distributed` and
docs/training-at-scale.md). See `liquid_driver.train.run` for the files written
into the run folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Sequence

import torch.distributed as dist
from tqdm.contrib.logging import logging_redirect_tqdm

from liquid_driver.help_format import DefaultsHelpFormatter
from liquid_driver.data.cache import default_cache_dir
from liquid_driver.data.dataset import DatasetConfig, DatasetError
from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.model import CheckpointError, ControllerConfig, ConvHeadConfig, PolicyConfig
from liquid_driver.model.policy import CELL_TYPES
from liquid_driver.train.config import PRECISIONS, AugmentConfig, CameraGeometry, TrainConfig
from liquid_driver.train.distributed import (
    DEVICES,
    SHARD_MODES,
    SetupError,
    check_precision,
    init_distributed,
    shutdown_distributed,
)
from liquid_driver.train.loop import TrainingError
from liquid_driver.train.run import train

__all__ = ["build_parser", "config_from_args", "main"]

logger = logging.getLogger(__name__)

# Wiring kinds that need no per-layer sizes, so the command line can select them.
_CLI_WIRINGS = ("auto_ncp", "fully_connected", "random")
_EXIT_USAGE = 2


def _default(cls: type, name: str):
    """Return the default of dataclass field `name`, so help texts never drift from the code."""
    for item in dataclasses.fields(cls):
        if item.name == name:
            if item.default is not dataclasses.MISSING:
                return item.default
            return item.default_factory()  # type: ignore[misc]
    raise KeyError(name)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid list {text!r}; expected comma-separated ints like 24,36,48") from None
    return values


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of `liquid-driver-train`."""
    parser = argparse.ArgumentParser(
        prog="liquid-driver-train",
        description="Train a CNN + liquid neural circuit policy that maps camera frames to path "
        "curvature (1/m) from rosbag2 demonstrations.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("bags", nargs="+", help="rosbag2 directories (MCAP or sqlite3), or folders that contain them")
    parser.add_argument("--out", required=True, help="run folder for checkpoints, metrics and plots")

    data = parser.add_argument_group("data")
    data.add_argument("--image-topic", help="camera topic (Image or CompressedImage); found by type when omitted")
    data.add_argument("--command-topic", help="Twist, TwistStamped or AckermannDriveStamped topic; found by type when omitted")
    data.add_argument("--mode-topic", help="std_msgs/String driving-mode topic; found by type when omitted")
    data.add_argument("--ignore-modes", action="store_true", help="use frames of every driving mode")
    data.add_argument(
        "--exclude-modes", nargs="*", metavar="MODE", default=list(_default(DatasetConfig, "excluded_modes")),
        help="driving modes whose frames are dropped",
    )
    data.add_argument("--cache-dir", default=str(default_cache_dir()),
                      help="folder of the preprocessed-frame cache; frames are memory-mapped from it, "
                      "so datasets larger than memory train in bounded memory")
    data.add_argument("--no-cache", action="store_true",
                      help="hold all frames in memory instead of using --cache-dir")
    data.add_argument("--wheelbase", type=float, help="wheelbase in m, needed for Ackermann commands")
    data.add_argument("--min-speed", type=float, default=_default(DatasetConfig, "min_speed"),
                      help="skip frames whose |speed| is below this, m/s")
    data.add_argument("--max-command-age", type=float, default=_default(DatasetConfig, "max_command_age"),
                      help="skip frames whose latest command is older than this, s")
    data.add_argument("--max-gap", type=float, default=_default(DatasetConfig, "max_gap"),
                      help="start a new episode after a gap between frames longer than this, s")

    prep = parser.add_argument_group("preprocessing")
    for side in ("top", "bottom", "left", "right"):
        prep.add_argument(f"--crop-{side}", type=float, default=_default(Preprocessing, f"crop_{side}"),
                          help=f"fraction of the camera frame cropped at the {side}")
    prep.add_argument("--input-height", type=int, default=_default(Preprocessing, "height"),
                      help="model input height after crop and resize, px")
    prep.add_argument("--input-width", type=int, default=_default(Preprocessing, "width"),
                      help="model input width after crop and resize, px")

    optimisation = parser.add_argument_group("training")
    for name, kind, text in (
        ("seq_len", int, "frames per training window"),
        ("stride", int, "frames between window starts"),
        ("burn_in", int, "leading frames of each window left out of the loss"),
        ("batch_size", int, "windows per batch"),
        ("epochs", int, "maximum number of epochs"),
        ("patience", int, "epochs without a better validation loss before stopping"),
        ("cnn_lr", float, "AdamW learning rate of the CNN"),
        ("controller_lr", float, "AdamW learning rate of the liquid controller"),
        ("weight_decay", float, "AdamW weight decay"),
        ("min_lr_fraction", float, "final learning rate of the cosine schedule, as a fraction"),
        ("grad_clip", float, "maximum gradient norm"),
        ("val_fraction", float, "fraction of frames held out for validation, by whole episodes"),
        ("seed", int, "seed of the model initialisation, split, shuffling and augmentation"),
        ("curvature_weight", float, "loss weight alpha in 1 + alpha * |curvature| / scale"),
    ):
        optimisation.add_argument(f"--{name.replace('_', '-')}", type=kind, default=_default(TrainConfig, name), help=text)
    optimisation.add_argument("--curvature-scale", type=float,
                              help="scale of the loss weighting in 1/m; default: 95th percentile of |curvature|")
    optimisation.add_argument("--max-minutes", type=float, default=_default(TrainConfig, "max_minutes"),
                              help="wall-clock limit in minutes; 0 removes the limit")
    optimisation.add_argument("--threads", type=int, help="torch CPU threads; default: torch's choice")
    optimisation.add_argument("--no-augment", action="store_true",
                              help="disable all augmentation: brightness, contrast, colour, shadow, noise and view shifts")
    optimisation.add_argument("--resume", metavar="CKPT",
                              help="checkpoint to start from; a run's last.safetensors continues that run")
    optimisation.add_argument("--export", metavar="PATH", help="copy the best checkpoint to this file")
    optimisation.add_argument("--overwrite", action="store_true", help="replace an earlier run in --out")
    optimisation.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                              help="show progress bars (default: only on a terminal; only rank 0 under torchrun)")

    hardware = parser.add_argument_group(
        "hardware", "under torchrun every rank trains on its own share of the data with "
        "DistributedDataParallel; --batch-size is per rank; see docs/training-at-scale.md")
    hardware.add_argument("--device", choices=DEVICES, default=_default(TrainConfig, "device"),
                          help="auto: CUDA when available, else CPU; under torchrun each rank uses cuda:LOCAL_RANK")
    hardware.add_argument("--precision", choices=PRECISIONS, default=_default(TrainConfig, "precision"),
                          help="bf16 runs forward passes under torch.autocast with bfloat16; the liquid "
                          "cells then run on PyTorch operators instead of their float32 CPU kernels")
    hardware.add_argument("--log-shards", action="store_true",
                          help="write shards/rank<N>.json per rank: the episodes and windows trained on "
                          "and a SHA-256 digest of the final parameters")
    hardware.add_argument("--shard-by", choices=SHARD_MODES, default=_default(TrainConfig, "shard_by"),
                          help="under torchrun, episode: each rank trains on its own whole episodes and reads only "
                          "their frames from the frame cache; window: each rank takes every world-size-th "
                          "window of one shared order, like one process with a world-size times larger batch")

    augment = parser.add_argument_group(
        "augmentation", "view shifts re-project frames as if the car were displaced and turned, "
        "and correct the curvature to steer back; see docs/training.md")
    for name, text in (
        ("heavy_noise_probability", "probability that a window gets heavy Gaussian pixel noise"),
        ("heavy_noise_std", "largest standard deviation of the heavy pixel noise, pixels in [0, 1]"),
        ("view_shift_probability", "probability that a window is view-shifted"),
        ("max_lateral_shift", "largest sideways view shift, m"),
        ("max_yaw_shift", "largest heading view shift, rad"),
        ("recovery_distance", "distance ahead at which a view-shifted car rejoins its path, m"),
    ):
        augment.add_argument(f"--{name.replace('_', '-')}", type=float, default=_default(AugmentConfig, name),
                             help=text)
    for name, kind, text in (
        ("width", int, "camera image width as recorded, px"),
        ("height", int, "camera image height as recorded, px"),
        ("fovy_deg", float, "camera vertical field of view, degrees"),
        ("mount_height", float, "camera lens height above the ground, m"),
        ("pitch", float, "camera downward tilt, rad"),
        ("forward", float, "camera lens distance ahead of the rear axle, m"),
    ):
        augment.add_argument(f"--camera-{name.replace('_', '-')}", type=kind,
                             default=_default(CameraGeometry, name), help=text)

    model = parser.add_argument_group("model")
    model.add_argument("--cell", choices=CELL_TYPES, default=_default(ControllerConfig, "cell"),
                       help="controller: the liquid cells cfc and ltc, or the baselines lstm and "
                       "feedforward (a PilotNet-style MLP without state)")
    model.add_argument("--units", type=int, default=_default(ControllerConfig, "units"),
                       help="neurons of the liquid controller, or the hidden size of an lstm")
    model.add_argument("--hidden-layers", type=_int_list, default=_default(ControllerConfig, "hidden_layers"),
                       help="hidden layer widths of the feedforward controller, comma-separated")
    model.add_argument("--wiring", choices=_CLI_WIRINGS, default=_default(ControllerConfig, "wiring"),
                       help="synapse wiring of the controller")
    model.add_argument("--sparsity", type=float, default=_default(ControllerConfig, "sparsity"),
                       help="fraction of possible synapses left out (auto_ncp, random)")
    model.add_argument("--output-scale", type=float, default=_default(ControllerConfig, "output_scale"),
                       help="largest curvature the policy can output, 1/m")
    model.add_argument("--cnn-channels", type=_int_list, default=_default(ConvHeadConfig, "channels"),
                       help="output channels per convolution layer, comma-separated")
    model.add_argument("--cnn-features", type=int, default=_default(ConvHeadConfig, "feature_size"),
                       help="CNN output features feeding the sensory neurons")
    model.add_argument("--cnn-dropout", type=float, default=_default(ConvHeadConfig, "dropout"),
                       help="dropout on the flattened convolution output")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Build a `TrainConfig` from parsed arguments.

    Raises:
        ValueError: A value is out of range.
    """
    preprocessing = Preprocessing(
        crop_top=args.crop_top,
        crop_bottom=args.crop_bottom,
        crop_left=args.crop_left,
        crop_right=args.crop_right,
        height=args.input_height,
        width=args.input_width,
    )
    channels = tuple(args.cnn_channels)
    default_layers = len(_default(ConvHeadConfig, "channels"))
    if len(channels) == default_layers:
        cnn = ConvHeadConfig(
            input_height=preprocessing.height,
            input_width=preprocessing.width,
            channels=channels,
            feature_size=args.cnn_features,
            dropout=args.cnn_dropout,
        )
    else:
        # Another layer count keeps the first layer's 5x5 kernel and uses 3x3 with stride 2 after it.
        cnn = ConvHeadConfig(
            input_height=preprocessing.height,
            input_width=preprocessing.width,
            channels=channels,
            kernel_sizes=(5,) + (3,) * (len(channels) - 1),
            strides=(2,) * len(channels),
            feature_size=args.cnn_features,
            dropout=args.cnn_dropout,
        )
    controller = ControllerConfig(
        cell=args.cell,
        units=args.units,
        hidden_layers=tuple(args.hidden_layers),
        wiring=args.wiring,
        sparsity=args.sparsity,
        output_scale=args.output_scale,
    )
    dataset = DatasetConfig(
        image_topic=args.image_topic,
        command_topic=args.command_topic,
        mode_topic=args.mode_topic,
        ignore_modes=args.ignore_modes,
        excluded_modes=tuple(args.exclude_modes),
        wheelbase=args.wheelbase,
        min_speed=args.min_speed,
        max_command_age=args.max_command_age,
        max_gap=args.max_gap,
    )
    return TrainConfig(
        bags=list(args.bags),
        out=args.out,
        dataset=dataset,
        preprocessing=preprocessing,
        augment=AugmentConfig(
            enabled=not args.no_augment,
            heavy_noise_probability=args.heavy_noise_probability,
            heavy_noise_std=args.heavy_noise_std,
            view_shift_probability=args.view_shift_probability,
            max_lateral_shift=args.max_lateral_shift,
            max_yaw_shift=args.max_yaw_shift,
            recovery_distance=args.recovery_distance,
            camera=CameraGeometry(
                width=args.camera_width,
                height=args.camera_height,
                fovy_deg=args.camera_fovy_deg,
                mount_height=args.camera_mount_height,
                pitch=args.camera_pitch,
                forward=args.camera_forward,
            ),
        ),
        policy=PolicyConfig(cnn=cnn, controller=controller),
        seq_len=args.seq_len,
        stride=args.stride,
        burn_in=args.burn_in,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        cnn_lr=args.cnn_lr,
        controller_lr=args.controller_lr,
        weight_decay=args.weight_decay,
        min_lr_fraction=args.min_lr_fraction,
        grad_clip=args.grad_clip,
        val_fraction=args.val_fraction,
        seed=args.seed,
        curvature_weight=args.curvature_weight,
        curvature_scale=args.curvature_scale,
        max_minutes=args.max_minutes if args.max_minutes else None,
        threads=args.threads,
        resume=args.resume,
        export=args.export,
        overwrite=args.overwrite,
        progress=args.progress,
        cache_dir=None if args.no_cache else args.cache_dir,
        device=args.device,
        precision=args.precision,
        log_shards=args.log_shards,
        shard_by=args.shard_by,
    )


def _configure_logging(verbose: bool, run_dir: Path, rank: int | None) -> logging.Handler | None:
    """Log to stderr and, on rank 0, to `train.log`; other ranks log warnings and errors only.

    `rank` is None for a plain run and the torchrun rank otherwise.
    """
    level = logging.DEBUG if verbose else logging.INFO
    format_text = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if rank is not None:
        format_text = f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s"
    formatter = logging.Formatter(format_text)
    root = logging.getLogger()
    root.setLevel(level if not rank else logging.WARNING)
    if not any(isinstance(handler, logging.StreamHandler) for handler in root.handlers):
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(formatter)
        root.addHandler(console)
    if rank:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    log_file = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    log_file.setFormatter(formatter)
    root.addHandler(log_file)
    return log_file


def main(argv: Sequence[str] | None = None) -> int:
    """Run `liquid-driver-train`; return the process exit status."""
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    try:
        config = config_from_args(args)
    except (TypeError, ValueError) as error:
        parser.error(str(error))

    try:
        context = init_distributed(config.device)
        check_precision(config.precision, context.device)
    except ValueError as error:
        parser.error(str(error))
    torchrun_rank = context.rank if dist.is_initialized() else None
    log_file = _configure_logging(args.verbose, Path(config.out), torchrun_rank)
    try:
        with logging_redirect_tqdm():
            result = train(config, command_line=["liquid-driver-train", *arguments], context=context)
    except (DatasetError, CheckpointError, TrainingError, SetupError, FileExistsError, FileNotFoundError) as error:
        logger.error("Training failed: %s", error)
        return _EXIT_USAGE
    finally:
        shutdown_distributed()
        if log_file is not None:
            logging.getLogger().removeHandler(log_file)
            log_file.close()

    if not context.is_main:
        return 0
    print(
        f"Best checkpoint {result.checkpoint} from epoch {result.best_epoch}: validation loss "
        f"{result.best_val_loss:.5f} (constant prediction {result.val_loss_constant:.5f}), "
        f"MAE {result.best_val_mae:.4f} 1/m; stopped by {result.stop_reason} after "
        f"{result.epochs_completed} epochs."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
