"""Watch the shipped liquid network drive the embedded simulator over ROS 2.

Starts `sim_node` (real time by default) and `perception_node` as separate
processes that talk over DDS. A monitor node follows the drive until the car
has completed the requested laps. Then the tool prints the lane-keeping
figures and the perception node's latency, and saves a plot of the driven path.

    liquid-driver-demo --layout curvy --laps 2 --out out/demo

Exit status: 0 when the laps were completed with no off-track event, 1 when
the car left its lane or did not finish in time, 2 on a usage or start-up error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor

from liquid_driver.paths import default_model_path
from liquid_driver.sim import make_track
from liquid_driver.sim.plot import plot_drive
from liquid_driver.tools.monitor import DriveMonitor
from liquid_driver.tools.processes import NodeProcess

logger = logging.getLogger("liquid_driver.demo")

# Slack over the ideal lap time before the demo gives up.
TIME_BUDGET_FACTOR = 3.0
START_UP_ALLOWANCE_S = 30.0
# The simulator's frames reach the perception node over DDS on a machine that
# may be busy. A longer watchdog than a rover's 0.25 s avoids stopping the car
# for a late frame in the simulator. In lock-step mode frames wait for
# commands, so the watchdog must outlast sim_node's lockstep_timeout (1 s):
# otherwise its stop commands step the simulator past unseen frames.
SIM_WATCHDOG_TIMEOUT_S = 0.5
LOCKSTEP_WATCHDOG_TIMEOUT_S = 5.0
# Below this share of the simulator's frames reaching the network, the demo
# suggests lock-step mode.
MIN_FRAME_SHARE = 0.9


def layout_name(value: str) -> str:
    """Validate a layout name for argparse, so a typo gets a usage error, not a traceback."""
    try:
        make_track(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layout", default="curvy", type=layout_name,
                        help="track layout to drive: oval, curvy, tight, chicane, kidney or "
                             "random:<n>, each optionally with :reverse (default: curvy, held "
                             "out from training)")
    parser.add_argument("--seed", type=int, default=0,
                        help="visual seed for colours and lighting (default: 0)")
    parser.add_argument("--laps", type=int, default=2, help="laps to complete (default: 2)")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="driving speed in m/s (default: 1.0)")
    parser.add_argument("--model", default=None,
                        help="safetensors checkpoint, or an ONNX export (default: the shipped model)")
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                        help="inference backend; auto picks onnx for a .onnx file (default: auto)")
    parser.add_argument("--lockstep", action="store_true",
                        help="run the simulator in lock-step, faster than real time")
    parser.add_argument("--out", default="out/demo",
                        help="folder for the plot, summary and logs; replaced by each run "
                             "(default: out/demo)")
    return parser.parse_args(argv)


def run_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else default_model_path()
    if not model.is_file():
        print(f"error: model file {model} not found; pass --model PATH or run `make model`",
              file=sys.stderr)
        return 2
    backend = args.backend
    if backend == "auto":
        backend = "onnx" if model.suffix.lower() == ".onnx" else "torch"
    track = make_track(args.layout)
    time_budget = TIME_BUDGET_FACTOR * args.laps * track.length / max(args.speed, 0.1)

    rclpy.init()
    monitor = DriveMonitor()
    executor = SingleThreadedExecutor()
    executor.add_node(monitor)
    spin_thread = threading.Thread(target=executor.spin, daemon=True)
    spin_thread.start()

    perception = NodeProcess(
        "perception_node",
        {"model_path": str(model), "backend": backend, "speed": args.speed,
         "image_reliable": args.lockstep, "start_enabled": True,
         "watchdog_timeout": LOCKSTEP_WATCHDOG_TIMEOUT_S if args.lockstep else SIM_WATCHDOG_TIMEOUT_S},
        log_path=out / "perception_node.log")
    sim = NodeProcess(
        "sim_node",
        {"layout": args.layout, "seed": args.seed, "lockstep": args.lockstep,
         "stop_after_laps": args.laps, "stop_after_time": time_budget},
        log_path=out / "sim_node.log")
    laps_text = "1 lap" if args.laps == 1 else f"{args.laps} laps"
    print(f"Driving {laps_text} of '{args.layout}' ({track.length:.1f} m a lap) "
          f"with {model.name} ({backend} backend); logs in {out}/")

    started = time.monotonic()
    try:
        last_laps = -1
        while sim.running() and time.monotonic() - started < time_budget + START_UP_ALLOWANCE_S:
            laps = monitor.laps()
            if laps != last_laps:
                last_laps = laps
                if laps > 0:
                    print(f"  lap {laps} done after {time.monotonic() - started:.0f} s of wall time")
            if not perception.running():
                print("error: perception_node exited early; see its log:", file=sys.stderr)
                print(perception.log_text()[-3000:], file=sys.stderr)
                return 2
            time.sleep(0.2)
        # Let the last metrics and diagnostics messages arrive.
        time.sleep(1.5)
    finally:
        sim.stop()
        perception.stop()
        executor.shutdown()
        # A spin thread still alive at interpreter exit aborts the process.
        spin_thread.join(timeout=5.0)
        monitor.destroy_node()
        rclpy.try_shutdown()

    return report(args, monitor, track, out)


def report(args, monitor: DriveMonitor, track, out: Path) -> int:
    summary = monitor.stats.summary()
    perception = monitor.perception or {}
    p50 = float(perception.get("latency_p50_ms", "nan"))
    p99 = float(perception.get("latency_p99_ms", "nan"))
    completed = summary.laps >= args.laps
    # One lane-metrics sample is published with every camera frame.
    frames_published = summary.samples
    frames_driven = int(perception.get("frames", "0"))
    frame_share = frames_driven / frames_published if frames_published else 0.0

    plot_path = out / "path.png"
    plot_drive(track, monitor.path, plot_path,
               title=f"{args.layout}: {summary.laps} laps, mean |cte| "
                     f"{summary.mean_abs_cross_track_error * 100:.1f} cm",
               markers=monitor.off_track_points)
    result = {
        "layout": args.layout,
        "seed": args.seed,
        "laps_requested": args.laps,
        **summary.to_dict(),
        "latency_p50_ms": p50,
        "latency_p99_ms": p99,
        "frames_published": frames_published,
        "frames_driven": frames_driven,
        "model": perception.get("model", ""),
        "plot": str(plot_path),
    }
    (out / "summary.json").write_text(json.dumps(result, indent=2) + "\n")

    print()
    print(f"laps completed            {summary.laps} of {args.laps}")
    print(f"mean |cross-track error|  {summary.mean_abs_cross_track_error * 100:.1f} cm")
    print(f"max |cross-track error|   {summary.max_abs_cross_track_error * 100:.1f} cm")
    print(f"off-track events          {summary.off_track_events}")
    print(f"perception latency        p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(f"frames driven             {frames_driven} of {frames_published} published "
          f"({frame_share:.0%})")
    print(f"path plot                 {plot_path}")
    if frame_share < MIN_FRAME_SHARE and not args.lockstep:
        print(f"note: {frames_published - frames_driven} frames did not reach the network in "
              "time (a busy machine); --lockstep makes every frame count")
    if not completed:
        print("FAILED: the laps were not completed in time", file=sys.stderr)
        return 1
    if summary.off_track_events:
        print("FAILED: the car left its lane", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.laps < 1:
        print(f"error: --laps={args.laps} must be at least 1", file=sys.stderr)
        return 2
    return run_demo(args)


if __name__ == "__main__":
    sys.exit(main())
