"""Train every compared controller on the same demonstrations and drive each one closed-loop.

Work is split into jobs that run in a pool of worker processes, one torch thread
each: one training job per (variant, seed), then, as soon as that model exists,
one evaluation job that drives it over every condition. Each finished job
leaves a JSON record beside the model, tagged with a fingerprint of the
settings that produced it, so an interrupted comparison continues where it
stopped and a changed setting redoes only what it affects.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from liquid_driver.compare.variants import VARIANTS, Variant, variant_by_name

__all__ = ["CompareSettings", "ModelRecord", "run_comparison", "train_model", "evaluate_model"]

logger = logging.getLogger(__name__)

TRAIN_RECORD = "compare_train.json"
EVAL_RECORD = "compare_eval.json"


@dataclass
class CompareSettings:
    """Settings of a comparison: the models, their training and the closed-loop conditions."""

    demos: str  # rosbag2 directory, or a folder of them
    out: str  # work folder: one training run per model, plus the interpretability files
    variants: tuple[str, ...] = tuple(variant.name for variant in VARIANTS)
    seeds: tuple[int, ...] = (0, 1, 2)
    # Training. Eight epochs keep the whole comparison near an hour on 2 CPU cores. The
    # shipped model's 20-epoch run was within 7 % of its final validation error by epoch 8.
    epochs: int = 8
    max_minutes: float = 8.0  # per training run
    # TrainConfig fields that replace the trainer's defaults for every model, for
    # example a smaller input for a quick check. "policy" may hold a "cnn" dict.
    train_overrides: dict[str, Any] = field(default_factory=dict)
    # Closed loop. Layouts from the demonstrations, and layouts never driven in them.
    train_layouts: tuple[str, ...] = ("kidney",)
    held_out_layouts: tuple[str, ...] = ("curvy", "random:1001")
    visual_seed: int = 1000  # a look (colours, sun, scenery) absent from the demonstrations
    noise_variances: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3)
    lightings: tuple[str, ...] = ("dusk", "night")  # each driven without pixel noise
    laps: float = 1.0
    jobs: int = 2  # worker processes

    def __post_init__(self) -> None:
        self.variants = tuple(self.variants)
        self.seeds = tuple(int(seed) for seed in self.seeds)
        for name in self.variants:
            variant_by_name(name)
        if not self.variants or not self.seeds:
            raise ValueError("the comparison needs at least one variant and one seed.")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"invalid seeds {self.seeds}; each seed may appear once.")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"invalid epochs {self.epochs!r}; expected an int >= 1.")
        if not (math.isfinite(self.max_minutes) and self.max_minutes > 0):
            raise ValueError(f"invalid max_minutes {self.max_minutes!r}; expected a positive number.")
        if not (math.isfinite(self.laps) and self.laps > 0):
            raise ValueError(f"invalid laps {self.laps!r}; expected a positive number.")
        if self.jobs < 1:
            raise ValueError(f"invalid jobs {self.jobs!r}; expected an int >= 1.")
        for variance in self.noise_variances:
            if not 0.0 <= variance <= 1.0:
                raise ValueError(f"invalid noise variance {variance!r}; expected a value in [0, 1].")
        if not self.train_layouts and not self.held_out_layouts:
            raise ValueError("the comparison needs at least one layout to drive.")

    def conditions(self) -> list[dict[str, Any]]:
        """Return every closed-loop condition as a dict of Condition fields plus its layout group."""
        rows = []
        for group, layouts in (("train", self.train_layouts), ("held_out", self.held_out_layouts)):
            for layout in layouts:
                for variance in self.noise_variances:
                    rows.append(dict(group=group, layout=layout, seed=self.visual_seed,
                                     noise_variance=float(variance), lighting="default"))
                for lighting in self.lightings:
                    rows.append(dict(group=group, layout=layout, seed=self.visual_seed,
                                     noise_variance=0.0, lighting=lighting))
        return rows

    def train_fingerprint(self, variant: Variant, seed: int) -> str:
        """Return a digest of everything that decides the trained weights of one model."""
        document = {
            "demos": str(Path(self.demos).resolve()),
            "variant": asdict(variant),
            "seed": seed,
            "epochs": self.epochs,
            "max_minutes": self.max_minutes,
            "train_overrides": self.train_overrides,
        }
        return _digest(document)

    def eval_fingerprint(self, train_fingerprint: str) -> str:
        """Return a digest of the model and every closed-loop setting."""
        return _digest({"model": train_fingerprint, "conditions": self.conditions(), "laps": self.laps})


@dataclass
class ModelRecord:
    """A trained model and what is known about it so far."""

    variant: str
    seed: int
    run_dir: Path
    training: dict[str, Any] | None = None  # the JSON record of the training job
    evaluation: dict[str, Any] | None = None  # the JSON record of the evaluation job
    error: str | None = None  # why training or evaluation failed

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "model.safetensors"


def _digest(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _read_record(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """Return the JSON record at ``path`` if it was written with ``fingerprint``, else None."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("fingerprint") == fingerprint else None


def _write_record(path: Path, record: dict[str, Any]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record, indent=2, allow_nan=True), encoding="utf-8")
    temporary.replace(path)


def build_train_config(settings: CompareSettings, variant: Variant, seed: int, run_dir: Path) -> Any:
    """Return the TrainConfig of one model: the trainer's defaults, the overrides, this variant and seed."""
    from liquid_driver.data.cache import default_cache_dir
    from liquid_driver.model import ConvHeadConfig
    from liquid_driver.train.config import TrainConfig
    from liquid_driver.data.preprocess import Preprocessing

    overrides = dict(settings.train_overrides)
    cnn = ConvHeadConfig(**overrides.pop("cnn", {}))
    preprocessing = Preprocessing(**overrides.pop("preprocessing", {}))
    values: dict[str, Any] = dict(
        bags=[settings.demos],
        out=str(run_dir),
        epochs=settings.epochs,
        patience=settings.epochs,  # every model trains the same number of epochs
        max_minutes=settings.max_minutes,
        seed=seed,
        threads=1,
        progress=False,
        overwrite=True,
        cache_dir=str(default_cache_dir()),
        preprocessing=preprocessing,
        policy=variant.policy_config(seed, cnn),
    )
    values.update(overrides)
    return TrainConfig(**values)


def train_model(settings: CompareSettings, variant_name: str, seed: int, run_dir: str, fingerprint: str) -> dict:
    """Train one model in this process and return its training record (a worker job)."""
    from liquid_driver.model import load_checkpoint
    from liquid_driver.train.run import train

    variant = variant_by_name(variant_name)
    folder = Path(run_dir)
    config = build_train_config(settings, variant, seed, folder)
    started = time.monotonic()
    result = train(config, command_line=["liquid-driver-compare", variant_name, f"seed={seed}"])
    seconds = time.monotonic() - started
    policy, _ = load_checkpoint(result.checkpoint)
    counts = policy.count_parameters()
    record = {
        "fingerprint": fingerprint,
        "variant": variant_name,
        "seed": seed,
        "seconds": seconds,
        "epochs": result.epochs_completed,
        "best_epoch": result.best_epoch,
        "stop_reason": result.stop_reason,
        "val_loss": result.best_val_loss,
        "val_mae": result.best_val_mae,
        "val_mae_rollout": result.summary.get("val_mae_rollout"),
        "val_loss_constant": result.val_loss_constant,
        "controller_parameters": counts["controller"].total,
        "controller_effective_parameters": counts["controller"].effective,
        "model_parameters": counts["total"].total,
        "model_effective_parameters": counts["total"].effective,
        "synapses": counts["controller"].synapses,
        "sensory_synapses": counts["controller"].sensory_synapses,
        "state_size": policy.state_size,
    }
    _write_record(folder / TRAIN_RECORD, record)
    return record


def evaluate_model(settings: CompareSettings, checkpoint: str, fingerprint: str) -> dict:
    """Drive one model over every condition in this process and return its record (a worker job)."""
    from liquid_driver.eval.core import Condition, EvalSettings, drive_run
    from liquid_driver.inference import PolicyRunner

    runner = PolicyRunner(checkpoint, threads=1)
    eval_settings = EvalSettings(laps=settings.laps)
    rows = []
    started = time.monotonic()
    for condition in settings.conditions():
        group = condition.pop("group")
        result = drive_run(runner, Condition(**condition), eval_settings, record_path=False)
        rows.append({"group": group, **result.to_row()})
    record = {"fingerprint": fingerprint, "seconds": time.monotonic() - started, "runs": rows}
    _write_record(Path(checkpoint).parent / EVAL_RECORD, record)
    return record


def _check_demos(settings: CompareSettings) -> None:
    """Load the demonstrations once in this process, so the frame cache exists before the workers start.

    Raises:
        FileNotFoundError, DatasetError: from `load_episodes`, naming the bag.
    """
    from liquid_driver.data.dataset import load_episodes

    config = build_train_config(settings, variant_by_name(settings.variants[0]), settings.seeds[0],
                                Path(settings.out) / "unused")
    episodes, report = load_episodes(config.bags, config.preprocessing, config.dataset, config.cache_dir)
    frames = sum(len(episode.curvature) for episode in episodes)
    logger.info("Demonstrations: %d episodes, %d frames from %s", len(episodes), frames, settings.demos)


def run_comparison(settings: CompareSettings, fresh: bool = False, progress: bool | None = None) -> list[ModelRecord]:
    """Train and evaluate every (variant, seed) model that lacks an up-to-date record.

    Args:
        settings: What to compare.
        fresh: Ignore earlier records and redo every job.
        progress: Show a progress bar; None shows it on a terminal only.

    Returns:
        One record per model, variants in ``settings.variants`` order, then seeds.
    """
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    records = [
        ModelRecord(name, seed, out / "models" / name / f"seed{seed}")
        for name in settings.variants
        for seed in settings.seeds
    ]
    to_train, to_evaluate = [], []
    for record in records:
        variant = variant_by_name(record.variant)
        train_key = settings.train_fingerprint(variant, record.seed)
        record.training = None if fresh else _read_record(record.run_dir / TRAIN_RECORD, train_key)
        if record.training is None or not record.checkpoint.is_file():
            record.training = None
            to_train.append(record)
            continue
        record.evaluation = None if fresh else _read_record(
            record.run_dir / EVAL_RECORD, settings.eval_fingerprint(train_key))
        if record.evaluation is None:
            to_evaluate.append(record)
    logger.info(
        "%d models: %d to train, %d more to evaluate, %d up to date",
        len(records), len(to_train), len(to_evaluate), len(records) - len(to_train) - len(to_evaluate),
    )
    if to_train:
        _check_demos(settings)

    total = 2 * len(to_train) + len(to_evaluate)
    if total == 0:
        return records
    # disable=None lets tqdm show the bar only on a terminal.
    bar = tqdm(total=total, desc="compare", unit="job", disable=None if progress is None else not progress)
    context = multiprocessing.get_context("spawn")  # workers must not inherit torch's threads
    with ProcessPoolExecutor(max_workers=settings.jobs, mp_context=context) as pool:
        pending: dict[Future, tuple[str, ModelRecord]] = {}

        def submit_evaluation(record: ModelRecord) -> None:
            key = settings.eval_fingerprint(settings.train_fingerprint(variant_by_name(record.variant), record.seed))
            future = pool.submit(evaluate_model, settings, str(record.checkpoint), key)
            pending[future] = ("evaluate", record)

        # Slowest jobs first: the LTC trains slowest, the baselines fastest.
        for record in sorted(to_train, key=lambda item: item.variant != "ncp_ltc"):
            record.run_dir.mkdir(parents=True, exist_ok=True)
            key = settings.train_fingerprint(variant_by_name(record.variant), record.seed)
            future = pool.submit(train_model, settings, record.variant, record.seed, str(record.run_dir), key)
            pending[future] = ("train", record)
        for record in to_evaluate:
            submit_evaluation(record)

        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                kind, record = pending.pop(future)
                bar.update(1)
                try:
                    value = future.result()
                except Exception as error:  # a failed model is reported, the others go on
                    record.error = f"{kind} failed: {type(error).__name__}: {error}"
                    logger.error("%s seed %d: %s", record.variant, record.seed, record.error)
                    if kind == "train":
                        bar.update(1)  # its evaluation will not run
                    continue
                if kind == "train":
                    record.training = value
                    logger.info(
                        "%s seed %d trained in %.0f s: validation MAE %.4f 1/m",
                        record.variant, record.seed, value["seconds"], value["val_mae"],
                    )
                    submit_evaluation(record)
                else:
                    record.evaluation = value
                    logger.info("%s seed %d evaluated in %.0f s", record.variant, record.seed, value["seconds"])
    bar.close()
    return records


def load_records(settings: CompareSettings) -> list[ModelRecord]:
    """Return the records of an earlier comparison with these settings, without running anything."""
    out = Path(settings.out)
    records = []
    for name in settings.variants:
        for seed in settings.seeds:
            record = ModelRecord(name, seed, out / "models" / name / f"seed{seed}")
            train_key = settings.train_fingerprint(variant_by_name(name), seed)
            record.training = _read_record(record.run_dir / TRAIN_RECORD, train_key)
            record.evaluation = _read_record(record.run_dir / EVAL_RECORD, settings.eval_fingerprint(train_key))
            records.append(record)
    return records

