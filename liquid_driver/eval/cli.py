"""`liquid-driver-eval`: closed-loop evaluation of a checkpoint in the embedded simulator.

Drives the checkpoint over a grid of layouts, visual seeds, image-noise
levels and lighting presets in lock-step, without ROS, and writes results.csv,
results.md, results.png and summary.json into the output folder.

Examples:

    liquid-driver-eval                                   # shipped model, default grid
    liquid-driver-eval --model runs/try2/model.safetensors --out out/eval/try2
    liquid-driver-eval --layouts curvy oval --seeds 0 1000 1001 1002 --laps 3
    liquid-driver-eval --quick                           # one short clean run
    liquid-driver-eval --lighting default dusk glare     # each run also at dusk and in glare

The default grid holds out what the shipped model never saw in training: the
`curvy` layout, its reversed direction, a random layout that is not among the
training layouts, and visual seeds from 1000 on (training used seeds 1-24).
Each combination runs clean and with Gaussian pixel noise of variance 0.1, 0.2
and 0.3 (pixels scaled to [0, 1]), under each seed's own lighting unless
--lighting names presets (see liquid_driver.sim.style.LIGHTING_PRESETS).

Exit status: 0 when every run finished, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

from liquid_driver.help_format import DefaultsHelpFormatter
from liquid_driver.eval.core import EvalSettings, build_conditions, drive_run
from liquid_driver.eval.report import write_report
from liquid_driver.sim.style import LIGHTING_PRESETS

__all__ = ["DEFAULT_LAYOUTS", "DEFAULT_NOISE_VARIANCES", "DEFAULT_SEEDS", "build_parser", "main"]

logger = logging.getLogger(__name__)

# Held out from the shipped model's training: curvy in both directions and a
# random layout with a seed far from the training ones (random:1 to random:4).
DEFAULT_LAYOUTS = ("curvy", "curvy:reverse", "random:1001")
# Visual seeds (colours, lighting, scenery) never used for training data (1-24).
DEFAULT_SEEDS = (1000, 1001)
# Noise variances of the robustness experiments with NCP lane keepers.
DEFAULT_NOISE_VARIANCES = (0.0, 0.1, 0.2, 0.3)
DEFAULT_LAPS = 1.0
# --quick: a quarter lap of the held-out layout, clean, one held-out visual seed.
QUICK_LAYOUTS = ("curvy",)
QUICK_SEEDS = (1000,)
QUICK_NOISE_VARIANCES = (0.0,)
QUICK_LAPS = 0.25
_EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of `liquid-driver-eval`."""
    defaults = EvalSettings()
    parser = argparse.ArgumentParser(
        prog="liquid-driver-eval",
        description="Drive a checkpoint in the embedded simulator over layouts, visual seeds, "
        "image-noise levels and lighting presets, and report lane keeping and interventions per km.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--model", help="checkpoint to evaluate (default: the shipped model)")
    parser.add_argument("--out", default="out/eval", help="folder for the tables and the plot")
    parser.add_argument("--layouts", nargs="+", default=list(DEFAULT_LAYOUTS),
                        help="track layouts: oval, curvy, tight, chicane, kidney or random:<n>, "
                        "each optionally with :reverse")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS),
                        help="visual seeds (colours, lighting, scenery); 0 is the neutral look")
    parser.add_argument("--noise", nargs="+", type=float, default=list(DEFAULT_NOISE_VARIANCES),
                        metavar="VARIANCE",
                        help="Gaussian pixel-noise variances, pixels scaled to [0, 1]; 0 is clean")
    parser.add_argument("--lighting", nargs="+", choices=LIGHTING_PRESETS, default=["default"],
                        metavar="NAME",
                        help="lighting presets, one run per name: "
                        f"{', '.join(LIGHTING_PRESETS[1:])} are lighting that the training seeds never "
                        "show (default: default, each seed's own lighting)")
    parser.add_argument("--laps", type=float, default=DEFAULT_LAPS,
                        help="laps to drive per run; fractions allowed")
    parser.add_argument("--speed", type=float, default=defaults.speed, help="forward speed, m/s")
    parser.add_argument("--intervention-margin", type=float, default=defaults.intervention_margin,
                        help="distance beyond half the lane width at which the car is put back "
                        "on its lane, m")
    parser.add_argument("--intervention-skip", type=float, default=defaults.intervention_skip,
                        help="distance along the track between leaving the lane and the restart "
                        "point, m")
    parser.add_argument("--time-budget-factor", type=float, default=defaults.time_budget_factor,
                        help="time limit of a run as a multiple of the ideal time for its laps")
    parser.add_argument("--noise-seed", type=int, default=defaults.noise_seed,
                        help="seed of the pixel-noise generator")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--path-plots", action="store_true",
                        help="also save a top-down plot of each run's path into OUT/paths/")
    parser.add_argument("--quick", action="store_true",
                        help=f"one clean run of {QUICK_LAPS} laps on {QUICK_LAYOUTS[0]} with seed "
                        f"{QUICK_SEEDS[0]}, for smoke tests; overrides --layouts, --seeds, --noise, --laps")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every intervention")
    return parser


def _run(args: argparse.Namespace, command: str) -> int:
    # Imported here so that `--help` returns without loading torch and MuJoCo.
    from liquid_driver.inference import PolicyRunner
    from liquid_driver.paths import default_model_path
    from liquid_driver.sim.plot import plot_drive
    from liquid_driver.sim import make_track

    model = Path(args.model) if args.model else default_model_path()
    if not model.is_file():
        logger.error("Model file %s not found; pass --model PATH or run `make model`", model)
        return _EXIT_USAGE
    settings = EvalSettings(
        laps=args.laps,
        speed=args.speed,
        intervention_margin=args.intervention_margin,
        intervention_skip=args.intervention_skip,
        time_budget_factor=args.time_budget_factor,
        noise_seed=args.noise_seed,
    )
    conditions = build_conditions(args.layouts, args.seeds, args.noise, args.lighting)
    runner = PolicyRunner(model, threads=args.threads)
    logger.info("Evaluating %s on %d runs", runner.description, len(conditions))

    out = Path(args.out)
    results = []
    started = time.monotonic()
    for index, condition in enumerate(conditions, start=1):
        logger.info("Run %d/%d: %s", index, len(conditions), condition.label)
        result = drive_run(runner, condition, settings, record_path=args.path_plots)
        results.append(result)
        if args.path_plots:
            name = f"{condition.layout}_seed{condition.seed}_noise{condition.noise_variance:g}"
            if condition.lighting != "default":
                name += f"_{condition.lighting}"
            plot_drive(
                make_track(condition.layout),
                result.path,
                out / "paths" / (name.replace(":", "_") + ".png"),
                title=f"{condition.label}: {result.interventions} interventions",
                markers=result.intervention_points or None,
            )

    lane_half_width = 0.5 * make_track(conditions[0].layout).lane_width
    metadata = {
        "model": str(model),
        "command": command,
        "speed": settings.speed,
        "laps": settings.laps,
        "intervention_limit": round(lane_half_width + settings.intervention_margin, 3),
        "settings": vars(args),
        "wall_time": time.monotonic() - started,
    }
    paths = write_report(out, results, metadata)
    print(paths["markdown"].read_text(encoding="utf-8"))
    print(f"Wrote {paths['csv']}, {paths['markdown']}, {paths['plot']} in "
          f"{metadata['wall_time']:.0f} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run `liquid-driver-eval`; return the process exit status."""
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    if args.quick:
        args.layouts = list(QUICK_LAYOUTS)
        args.seeds = list(QUICK_SEEDS)
        args.noise = list(QUICK_NOISE_VARIANCES)
        args.laps = QUICK_LAPS
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.threads < 1:
        parser.error(f"invalid --threads {args.threads}; expected an int >= 1")
    for variance in args.noise:
        if not 0.0 <= variance <= 1.0:
            parser.error(f"invalid --noise variance {variance}; expected a value in [0, 1]")
    try:
        EvalSettings(
            laps=args.laps,
            speed=args.speed,
            intervention_margin=args.intervention_margin,
            intervention_skip=args.intervention_skip,
            time_budget_factor=args.time_budget_factor,
        )
        from liquid_driver.sim import make_track

        for layout in args.layouts:
            make_track(layout)
    except ValueError as error:
        parser.error(str(error))
    command = shlex.join(["liquid-driver-eval", *arguments])
    return _run(args, command)


if __name__ == "__main__":
    sys.exit(main())
