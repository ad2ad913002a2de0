"""`liquid-driver-compare`: train the NCP and its baselines, drive them all, write the report.

Examples:

    liquid-driver-compare                     # the full comparison, docs/liquid-vs-baselines.md
    liquid-driver-compare --quick             # one seed, one epoch, short drives, into out/compare-quick
    liquid-driver-compare --report-only       # rebuild the report from the finished jobs
    liquid-driver-compare --variants ncp_cfc lstm --seeds 0 1

The run continues where an interrupted one stopped: each model's training and
evaluation records are kept in --out with a fingerprint of their settings.
When --demos contains no bags, the demonstrations are recorded first with
`liquid-driver-collect` over ROS 2.

Exit status: 0 when every model trained and drove, 1 when some failed (the
report lists them), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from liquid_driver.compare.run import CompareSettings
from liquid_driver.compare.variants import VARIANTS
from liquid_driver.help_format import DefaultsHelpFormatter

__all__ = ["build_parser", "main"]

logger = logging.getLogger("liquid_driver.compare")

DEFAULT_DOC = "docs/liquid-vs-baselines.md"
QUICK_OUT = "out/compare-quick"
_EXIT_FAILED = 1
_EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of `liquid-driver-compare`."""
    defaults = CompareSettings(demos="", out="")
    parser = argparse.ArgumentParser(
        prog="liquid-driver-compare",
        description="Train the NCP and the baseline controllers on the same demonstrations, drive each "
        "in the simulator under pixel noise and changed lighting, and write a Markdown report.",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--demos", default="data/demos",
                        help="rosbag2 demonstrations; recorded with liquid-driver-collect when empty")
    parser.add_argument("--out", default="out/compare", help="work folder for the models and records")
    parser.add_argument("--doc", default=None,
                        help=f"Markdown report to write (default: {DEFAULT_DOC}, or OUT/report.md with --quick)")

    parser.add_argument("--variants", nargs="+", default=list(defaults.variants),
                        choices=[variant.name for variant in VARIANTS], help="controllers to compare")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(defaults.seeds),
                        help="training seeds; each model trains once per seed")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="epochs per model")
    parser.add_argument("--max-minutes", type=float, default=defaults.max_minutes,
                        help="wall-clock limit per training run, minutes")
    parser.add_argument("--jobs", type=int, default=defaults.jobs,
                        help="worker processes, each with one torch thread")

    parser.add_argument("--train-layouts", nargs="*", default=list(defaults.train_layouts),
                        help="layouts that the demonstrations drove, for closed-loop runs")
    parser.add_argument("--held-out-layouts", nargs="*", default=list(defaults.held_out_layouts),
                        help="layouts absent from the demonstrations, for closed-loop runs")
    parser.add_argument("--visual-seed", type=int, default=defaults.visual_seed,
                        help="visual seed (colours, sun, scenery) of every closed-loop run")
    parser.add_argument("--noise", nargs="+", type=float, default=list(defaults.noise_variances),
                        metavar="VARIANCE", help="pixel-noise variances, pixels scaled to [0, 1]")
    parser.add_argument("--lighting", nargs="*", default=list(defaults.lightings),
                        help="lighting presets driven without noise: dusk, glare, overcast or night "
                        "(see liquid_driver.sim.style)")
    parser.add_argument("--laps", type=float, default=defaults.laps, help="laps per closed-loop run")

    parser.add_argument("--quick", action="store_true",
                        help="a check of the whole pipeline in minutes: seed 0, 1 epoch, quarter-lap runs "
                        "on kidney and curvy, clean, noise 0.3 and dusk; writes into " + QUICK_OUT)
    parser.add_argument("--report-only", action="store_true",
                        help="write the report from the finished jobs without training or evaluating; the "
                        "saliency and neuron traces are computed again unless --no-interpret is given")
    parser.add_argument("--fresh", action="store_true", help="redo every job, ignoring earlier records")
    parser.add_argument("--note", action="append", default=[], metavar="TEXT",
                        help="a remark on the run's conditions for the report, such as other load on the "
                        "machine; repeat for several")
    parser.add_argument("--no-interpret", action="store_true",
                        help="leave out saliency, neuron traces and wiring plots")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="show a progress bar (default: on a terminal only)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser


def _apply_quick(args: argparse.Namespace) -> None:
    args.seeds = [0]
    args.epochs = 1
    args.laps = 0.25
    args.train_layouts = ["kidney"]
    args.held_out_layouts = ["curvy"]
    args.noise = [0.0, 0.3]
    args.lighting = ["dusk"]
    if args.out == "out/compare":
        args.out = QUICK_OUT


def machine_description() -> str:
    """Return the CPU model, core count and OS of this machine, for the report."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def _find_bags(demos: Path) -> list[Path]:
    from liquid_driver.data.dataset import find_bags

    if not demos.exists():
        return []
    try:
        return find_bags([demos])
    except (FileNotFoundError, ValueError):
        return []


def _collect(demos: Path) -> int:
    """Record the default demonstrations into ``demos`` with liquid-driver-collect; return its status."""
    command = [sys.executable, "-m", "liquid_driver.tools.collect", "--out", str(demos)]
    logger.info("No demonstrations in %s; recording them first (a few minutes): %s", demos, shlex.join(command))
    return subprocess.call(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `liquid-driver-compare`; return the process exit status."""
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(arguments)
    if args.quick:
        _apply_quick(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = CompareSettings(
            demos=args.demos,
            out=args.out,
            variants=tuple(args.variants),
            seeds=tuple(args.seeds),
            epochs=args.epochs,
            max_minutes=args.max_minutes,
            train_layouts=tuple(args.train_layouts),
            held_out_layouts=tuple(args.held_out_layouts),
            visual_seed=args.visual_seed,
            noise_variances=tuple(args.noise),
            lightings=tuple(args.lighting),
            laps=args.laps,
            jobs=args.jobs,
        )
        _check_conditions(settings)
    except ValueError as error:
        parser.error(str(error))
    if args.doc:
        doc = Path(args.doc)
    elif args.quick:
        doc = Path(args.out) / "report.md"  # a quick check never replaces the committed report
    else:
        doc = Path(DEFAULT_DOC)
    command = shlex.join(["liquid-driver-compare", *arguments])
    return run(settings, doc, command, args)


def _check_conditions(settings: CompareSettings) -> None:
    """Raise ValueError for an unknown layout or lighting before anything trains."""
    from liquid_driver.sim import make_track
    from liquid_driver.sim.style import LIGHTING_PRESETS

    for layout in settings.train_layouts + settings.held_out_layouts:
        make_track(layout)
    for lighting in settings.lightings:
        if lighting not in LIGHTING_PRESETS:
            raise ValueError(f"invalid lighting {lighting!r}; expected one of {', '.join(LIGHTING_PRESETS)}")


def run(settings: CompareSettings, doc: Path, command: str, args: argparse.Namespace) -> int:
    """Train, evaluate, explain and report; return the exit status."""
    from liquid_driver.compare.report import write_outputs
    from liquid_driver.compare.run import load_records, run_comparison

    started = time.monotonic()
    if args.report_only:
        records = load_records(settings)
    else:
        demos = Path(settings.demos)
        if not _find_bags(demos):
            collect_started = time.monotonic()
            status = _collect(demos)
            args.note.append(f"The wall time includes {(time.monotonic() - collect_started) / 60.0:.1f} min "
                             f"of recording the demonstrations into {demos}.")
            if status != 0 or not _find_bags(demos):
                logger.error("Recording demonstrations into %s failed (exit status %d)", demos, status)
                return _EXIT_FAILED
        try:
            records = run_comparison(settings, fresh=args.fresh, progress=args.progress)
        except (FileNotFoundError, ValueError) as error:
            logger.error("%s", error)
            return _EXIT_USAGE
    missing = [record for record in records if record.training is None or record.evaluation is None]
    if args.report_only and len(missing) == len(records):
        logger.error("No finished models in %s for these settings; run without --report-only first", settings.out)
        return _EXIT_USAGE

    interpretability = None
    if not args.no_interpret:
        from liquid_driver.compare.interpret import explain_models

        interpretability = explain_models(records, settings, doc.parent / doc.stem, relative=doc.stem)
    metadata = {
        "command": command,
        "machine": machine_description(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_time_s": time.monotonic() - started,
    }
    if args.report_only:
        # The figures come from the earlier run, so the report keeps its command, date, machine and time.
        previous = _previous_metadata(doc)
        metadata.update({key: previous[key] for key in ("command", "machine", "date", "wall_time_s") if key in previous})
        if not args.note:
            args.note = list(previous.get("notes", []))
    metadata["notes"] = list(args.note)
    paths = write_outputs(records, settings, doc, metadata, interpretability)
    print(f"Wrote {paths['doc']} and its files in {paths['summary'].parent} "
          f"({metadata['wall_time_s'] / 60.0:.1f} min)")
    failed = [record for record in records if record.error or record.training is None or record.evaluation is None]
    return _EXIT_FAILED if failed else 0


def _previous_metadata(doc: Path) -> dict:
    """Return the metadata of the run that wrote ``doc``'s summary.json, or {} when there is none."""
    import json

    try:
        summary = json.loads((doc.parent / doc.stem / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    metadata = summary.get("metadata") if isinstance(summary, dict) else None
    return metadata if isinstance(metadata, dict) else {}


if __name__ == "__main__":
    sys.exit(main())
