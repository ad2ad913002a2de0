"""Benchmark training throughput of the default CNN + NCP policy on this CPU, in frames/s.

Times full training steps on synthetic windows of the default shape: a batch
of 32 windows x 16 frames x 48x128 RGB. A step is the uint8 to float
conversion, view-shift and photometric augmentation, forward pass, weighted
loss, backward pass, gradient clipping and the AdamW update. Data loading from bags is not
included; `liquid-driver-train` logs the whole epoch time.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/bench_train.py
    PYTHONPATH=. .venv/bin/python bench/bench_train.py --threads 1 2 --steps 20 --no-augment
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from liquid_driver.data.dataset import Episode
from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.data.windows import WindowDataset
from liquid_driver.model import DrivingPolicy, PolicyConfig
from liquid_driver.train.config import AugmentConfig, TrainConfig
from liquid_driver.train.loop import LossSettings, train_epoch
from liquid_driver.train.run import _build_optimizer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to time")
    parser.add_argument("--steps", type=int, default=15, help="timed training steps per thread count")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per step")
    parser.add_argument("--seq-len", type=int, default=16, help="frames per window")
    parser.add_argument("--no-augment", action="store_true", help="time without augmentation")
    return parser.parse_args()


def synthetic_windows(steps: int, batch_size: int, seq_len: int) -> WindowDataset:
    """Build one episode with enough frames for `steps` batches of distinct windows."""
    preprocessing = Preprocessing()
    frames = steps * batch_size * seq_len
    rng = np.random.default_rng(0)
    episode = Episode(
        frames=rng.integers(0, 256, (frames, preprocessing.height, preprocessing.width, 3), dtype=np.uint8),
        dt=np.full(frames, 0.05, dtype=np.float32),
        curvature=rng.uniform(-1.5, 1.5, frames).astype(np.float32),
        speed=np.ones(frames, dtype=np.float32),
        stamps=0.05 * np.arange(frames),
        source="synthetic",
    )
    return WindowDataset([episode], seq_len=seq_len, stride=seq_len)


def bench(threads: int, args: argparse.Namespace) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    config = TrainConfig(bags=["synthetic"], out="unused", augment=AugmentConfig(enabled=not args.no_augment))
    policy = DrivingPolicy(PolicyConfig())
    optimizer = _build_optimizer(policy, config)
    settings = LossSettings(burn_in=0, curvature_weight=1.0, curvature_scale=1.0)
    rng = np.random.default_rng(0)
    generator = torch.Generator().manual_seed(0)

    def run(steps: int) -> float:
        windows = synthetic_windows(steps, args.batch_size, args.seq_len)
        started = time.perf_counter()
        train_epoch(
            policy, optimizer, windows, batch_size=args.batch_size, settings=settings,
            augment=config.augment, grad_clip=1.0, rng=rng, generator=generator,
            progress=False, preprocessing=config.preprocessing,
        )
        return time.perf_counter() - started

    run(args.warmup)
    seconds = [run(1) for _ in range(args.steps)]
    frames_per_step = args.batch_size * args.seq_len
    median = statistics.median(seconds)
    return {"threads": threads, "step_s": median, "frames_per_s": frames_per_step / median}


def main() -> None:
    args = parse_args()
    print(f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
          f"torch {torch.__version__}")
    print(f"batch {args.batch_size} windows x {args.seq_len} frames, augmentation "
          f"{'off' if args.no_augment else 'on'}, median of {args.steps} steps")
    for threads in args.threads:
        result = bench(threads, args)
        print(f"threads {result['threads']}: {result['step_s'] * 1000:.0f} ms per step, "
              f"{result['frames_per_s']:.0f} frames/s")


if __name__ == "__main__":
    main()
