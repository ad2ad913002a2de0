"""Closed-loop evaluation of a driving policy in the embedded simulator, without ROS.

The simulator and the policy run in lock-step in this process: render a frame,
optionally add Gaussian pixel noise, predict the path curvature, convert it to a
bicycle steering angle at the evaluation speed, step the physics by one camera
period. Nothing waits on a wall clock, so a run goes as fast as the CPU allows.

An intervention stands in for a safety driver: when the car's |cross-track
error| exceeds half the lane width plus `intervention_margin`, the car is put
back at rest on its lane centre `intervention_skip` metres further along the
track, the policy's recurrent state is reset, and the drive continues. Each
intervention counts, so one run reports how often a human would have had to
take over, per kilometre.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Protocol

import numpy as np

from liquid_driver.sim import Simulator, steering_from_twist

__all__ = [
    "Condition",
    "EvalSettings",
    "Policy",
    "RunResult",
    "add_gaussian_noise",
    "build_conditions",
    "drive_run",
]

logger = logging.getLogger(__name__)

# Camera period of the simulator node (20 Hz), s. The shipped model was trained at this rate.
CAMERA_PERIOD_S = 0.05


class Policy(Protocol):
    """Policy interface that `drive_run` calls, as `liquid_driver.inference.PolicyRunner` provides."""

    def predict(self, rgb: np.ndarray, stamp: float):
        """Return an object whose `curvature` attribute is the path curvature in 1/m."""

    def reset(self) -> None:
        """Forget the recurrent state."""


@dataclass(frozen=True)
class Condition:
    """One evaluation run: where, how it looks and how noisy the camera is."""

    layout: str  # make_track name, e.g. "curvy" or "random:1001:reverse"
    seed: int  # visual seed: colours, lighting and scenery
    noise_variance: float = 0.0  # variance of the Gaussian pixel noise, pixels scaled to [0, 1]
    lighting: str = "default"  # name in liquid_driver.sim.style.LIGHTING_PRESETS; "default" is the seed's own

    @property
    def label(self) -> str:
        """Short name for tables and logs."""
        label = f"{self.layout} seed {self.seed} noise {self.noise_variance:g}"
        if self.lighting != "default":
            label += f" lighting {self.lighting}"
        return label


@dataclass(frozen=True)
class EvalSettings:
    """Driving and intervention settings shared by all runs of an evaluation."""

    laps: float = 2.0  # laps of the driving lane to drive per run; fractions allowed
    speed: float = 1.0  # m/s, constant forward speed
    period: float = CAMERA_PERIOD_S  # s, camera and control period
    # Extra distance, m, beyond half the lane width before an intervention. The
    # car's reference point is the rear axle, so 0.1 m past the lane edge means
    # the car is well into the neighbouring lane or off the road.
    intervention_margin: float = 0.1
    # Distance along the track, m, between where the car left its lane and where
    # an intervention puts it back, so the same corner is not retried at once.
    intervention_skip: float = 1.0
    # Time limit per run as a multiple of the ideal time for the requested laps.
    time_budget_factor: float = 2.0
    # Seed of the pixel-noise generator; each run derives its own stream from it.
    noise_seed: int = 0

    def __post_init__(self) -> None:
        checks = {
            "laps": self.laps,
            "speed": self.speed,
            "period": self.period,
            "time_budget_factor": self.time_budget_factor,
        }
        for name, value in checks.items():
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"invalid EvalSettings.{name} {value!r}; expected a positive number.")
        for name in ("intervention_margin", "intervention_skip"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"invalid EvalSettings.{name} {value!r} m; expected a distance >= 0.")
        if self.time_budget_factor < 1.0:
            raise ValueError(
                f"invalid EvalSettings.time_budget_factor {self.time_budget_factor!r}; expected at "
                "least 1, since the requested laps need the ideal time at the least."
            )


@dataclass
class RunResult:
    """Lane-keeping figures of one closed-loop run."""

    layout: str
    seed: int
    noise_variance: float
    lighting: str  # lighting preset, "default" for the seed's own
    laps_requested: float
    laps_completed: int
    laps_driven: float  # fraction of laps along the track, for runs shorter than a lap
    completed: bool  # reached the requested laps within the time budget
    sim_time: float  # s
    distance: float  # m, path length driven (skipped intervention distance not included)
    mean_abs_cross_track_error: float  # m
    max_abs_cross_track_error: float  # m
    off_track_events: int  # times |cross-track error| rose above half the lane width
    interventions: int
    interventions_per_km: float
    invalid_outputs: int  # frames whose policy output was NaN or infinite
    frames: int
    wall_time: float  # s
    path: list[tuple[float, float]] = field(default_factory=list, repr=False)  # (x, y) in m
    intervention_points: list[tuple[float, float]] = field(default_factory=list, repr=False)

    def to_row(self) -> dict:
        """Return the figures without the path, for tables."""
        row = asdict(self)
        row.pop("path")
        row.pop("intervention_points")
        return row


def add_gaussian_noise(rgb: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    """Return `rgb` plus zero-mean Gaussian noise of `variance` on pixels scaled to [0, 1].

    Every pixel and channel gets its own draw; the result is clipped to [0, 1]
    and converted back to uint8, as a camera driver would deliver it.

    Args:
        rgb: (H, W, 3) uint8 image.
        variance: Noise variance in (pixel / 255)^2, e.g. 0.1; 0 returns `rgb` unchanged.
        rng: Source of the noise.
    """
    if not (math.isfinite(variance) and variance >= 0.0):
        raise ValueError(f"invalid noise variance {variance!r}; expected a finite value >= 0.")
    if variance == 0.0:
        return rgb
    image = rgb.astype(np.float32) * (1.0 / 255.0)  # (H, W, 3) in [0, 1]
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(math.sqrt(variance))
    np.clip(image, 0.0, 1.0, out=image)
    return (image * 255.0 + 0.5).astype(np.uint8)


def build_conditions(
    layouts: Iterable[str],
    seeds: Iterable[int],
    noise_variances: Iterable[float],
    lightings: Iterable[str] = ("default",),
) -> list[Condition]:
    """Return every combination of layout, visual seed, noise variance and lighting, in that nesting order."""
    seeds = list(seeds)
    noise_variances = list(noise_variances)
    lightings = list(lightings)
    return [
        Condition(layout, seed, float(variance), lighting)
        for layout in layouts
        for seed in seeds
        for variance in noise_variances
        for lighting in lightings
    ]


class _Progress:
    """Unwrapped progress along the track, m, across interventions."""

    def __init__(self, track_length: float, start: float) -> None:
        self.track_length = track_length
        self.previous = start
        self.total = 0.0

    def update(self, progress: float) -> None:
        half = 0.5 * self.track_length
        change = (progress - self.previous + half) % self.track_length - half  # shortest way round
        self.total += change
        self.previous = progress

    def jump(self, distance: float, progress: float) -> None:
        """Account for an intervention that moved the car `distance` ahead to `progress`."""
        self.total += distance
        self.previous = progress


def _default_simulator(layout: str, seed: int, lighting: str) -> Simulator:
    return Simulator.from_layout(layout, seed=seed, lighting=lighting)


def drive_run(
    policy: Policy,
    condition: Condition,
    settings: EvalSettings,
    *,
    simulator_factory: Callable[[str, int, str], Simulator] | None = None,
    record_path: bool = True,
) -> RunResult:
    """Drive one run of `condition` with `policy` and return its figures.

    The run ends when the car has covered `settings.laps` laps of the track
    (interventions included) or when the time budget is used up.

    Args:
        policy: Object with `predict(rgb, stamp)` and `reset()`, such as `PolicyRunner`.
        condition: Layout, visual seed, noise variance and lighting.
        settings: Speed, laps and intervention settings.
        simulator_factory: Builds the simulator from (layout, seed, lighting);
            `Simulator.from_layout` when None.
        record_path: Keep the driven (x, y) path for plots.
    """
    factory = simulator_factory or _default_simulator
    sim = factory(condition.layout, condition.seed, condition.lighting)
    # One independent noise stream per run, reproducible from the settings and the condition.
    # Runs that differ only in lighting get the same noise, so lightings compare on equal terms.
    noise_rng = np.random.default_rng(
        [settings.noise_seed, condition.seed, int(round(condition.noise_variance * 1e6))]
    )
    try:
        return _drive(policy, sim, condition, settings, noise_rng, record_path)
    finally:
        sim.close()


def _drive(
    policy: Policy,
    sim: Simulator,
    condition: Condition,
    settings: EvalSettings,
    noise_rng: np.random.Generator,
    record_path: bool,
) -> RunResult:
    started = time.perf_counter()
    track = sim.track
    lane = sim.config.lane
    intervention_limit = 0.5 * track.lane_width + settings.intervention_margin
    target_progress = settings.laps * track.length
    ideal_time = settings.laps * track.lane_length(lane) / settings.speed
    max_frames = int(math.ceil(settings.time_budget_factor * ideal_time / settings.period))

    sim.reset()
    policy.reset()
    progress = _Progress(track.length, sim.lane_state().progress)
    # Distance and off-track events of the segments before the latest intervention;
    # sim.reset() zeroes the simulator's own counters.
    distance_before = 0.0
    off_track_before = 0
    abs_cte_sum = 0.0
    abs_cte_max = 0.0
    interventions = 0
    invalid_outputs = 0
    frames = 0
    clock = 0.0  # s, continuous across interventions, for the policy's stamps
    path: list[tuple[float, float]] = []
    intervention_points: list[tuple[float, float]] = []

    while frames < max_frames and progress.total < target_progress:
        rgb = add_gaussian_noise(sim.render(), condition.noise_variance, noise_rng)
        curvature = float(policy.predict(rgb, clock).curvature)
        speed = settings.speed
        if not math.isfinite(curvature):
            # The perception node publishes a stop in this case, so the car stays stopped for this period.
            invalid_outputs += 1
            curvature, speed = 0.0, 0.0
        steering = steering_from_twist(speed, speed * curvature, sim.wheelbase, sim.config.max_steering)
        sim.set_command(speed, steering)
        sim.step(settings.period)
        clock += settings.period
        frames += 1

        state = sim.lane_state()
        progress.update(state.progress)
        abs_cte = abs(state.cross_track_error)
        abs_cte_sum += abs_cte
        abs_cte_max = max(abs_cte_max, abs_cte)
        if record_path:
            x, y, _ = sim.pose
            path.append((x, y))

        if abs_cte > intervention_limit:
            interventions += 1
            x, y, _ = sim.pose
            intervention_points.append((x, y))
            distance_before += state.distance
            off_track_before += state.off_track_events
            restart = (state.progress + settings.intervention_skip) % track.length
            sim.reset(progress=restart)
            progress.jump(settings.intervention_skip, sim.lane_state().progress)
            policy.reset()
            logger.debug(
                "%s: intervention %d at %.1f s, |cross-track error| %.2f m",
                condition.label, interventions, clock, abs_cte,
            )

    final = sim.lane_state()
    distance = distance_before + final.distance
    laps_completed = int(math.floor(progress.total / track.length + 1e-9))
    result = RunResult(
        layout=condition.layout,
        seed=condition.seed,
        noise_variance=condition.noise_variance,
        lighting=condition.lighting,
        laps_requested=settings.laps,
        laps_completed=laps_completed,
        laps_driven=progress.total / track.length,
        completed=progress.total >= target_progress,
        sim_time=clock,
        distance=distance,
        mean_abs_cross_track_error=abs_cte_sum / frames if frames else math.nan,
        max_abs_cross_track_error=abs_cte_max,
        off_track_events=off_track_before + final.off_track_events,
        interventions=interventions,
        interventions_per_km=interventions / (distance / 1000.0) if distance > 0.0 else math.nan,
        invalid_outputs=invalid_outputs,
        frames=frames,
        wall_time=time.perf_counter() - started,
        path=path,
        intervention_points=intervention_points,
    )
    logger.info(
        "%s: %.2f laps, mean |cte| %.1f cm, max %.1f cm, %d off-track, %d interventions, %.1f s",
        condition.label,
        result.laps_driven,
        100.0 * result.mean_abs_cross_track_error,
        100.0 * result.max_abs_cross_track_error,
        result.off_track_events,
        result.interventions,
        result.wall_time,
    )
    return result
