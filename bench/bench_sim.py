"""Benchmark the embedded simulator: physics, rendering and real-time factor per layout.

Each layout is driven by the expert in lock-step, one control period at a
time. For every period the script times ``Simulator.step`` (physics plus lane
metrics) and ``Simulator.render`` separately and reports their means. The
real-time factor (RTF) is the control period divided by their sum.

Run from the repository root:

    .venv/bin/python bench/bench_sim.py
    .venv/bin/python bench/bench_sim.py --layouts oval tight --periods 400 --period 0.05
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from liquid_driver.sim import LAYOUT_NAMES, ExpertDriver, SimConfig, Simulator


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUT_NAMES) + ["random:7"],
                        help="layouts to run (default: all named layouts and random:7)")
    parser.add_argument("--periods", type=int, default=200, help="control periods timed per layout")
    parser.add_argument("--period", type=float, default=0.05, help="control period, s (default 0.05, 20 Hz)")
    parser.add_argument("--seed", type=int, default=0, help="visual seed")
    parser.add_argument("--lighting", nargs="+", default=["default"],
                        help="lighting presets to time per layout, e.g. default dusk night (default: default)")
    parser.add_argument("--width", type=int, default=160, help="camera width, pixels")
    parser.add_argument("--height", type=int, default=120, help="camera height, pixels")
    return parser.parse_args()


def bench_layout(layout: str, lighting: str, args: argparse.Namespace) -> dict:
    config = SimConfig(camera_width=args.width, camera_height=args.height)
    start = time.perf_counter()
    sim = Simulator.from_layout(layout, seed=args.seed, config=config, lighting=lighting)
    build_s = time.perf_counter() - start
    expert = ExpertDriver(sim.track)
    start = time.perf_counter()
    sim.render()  # Creates the OpenGL context.
    first_render_s = time.perf_counter() - start

    step_s, render_s = [], []
    for _ in range(args.periods):
        x, y, yaw = sim.pose
        command = expert.command(x, y, yaw, sim.velocity[0])
        sim.set_command(command.speed, command.steering)
        start = time.perf_counter()
        steps = sim.step(args.period)
        middle = time.perf_counter()
        sim.render()
        end = time.perf_counter()
        step_s.append(middle - start)
        render_s.append(end - middle)
    sim.close()
    step_mean = statistics.fmean(step_s)
    render_mean = statistics.fmean(render_s)
    return {
        "layout": layout,
        "lighting": lighting,
        "length_m": sim.track.length,
        "build_ms": 1e3 * build_s,
        "first_render_ms": 1e3 * first_render_s,
        "physics_step_us": 1e6 * step_mean / steps,
        "period_physics_ms": 1e3 * step_mean,
        "render_ms": 1e3 * render_mean,
        "rtf": args.period / (step_mean + render_mean),
        "rtf_physics_only": args.period / step_mean,
    }


def main() -> None:
    args = parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, MUJOCO_GL={os.environ.get('MUJOCO_GL')}, "
          f"camera {args.width}x{args.height}, control period {args.period * 1e3:.0f} ms, "
          f"{args.periods} periods per layout")
    header = (f"{'layout':<10} {'lighting':<9} {'length m':>9} {'build ms':>9} {'1st render ms':>14} {'step us':>8} "
              f"{'physics ms':>11} {'render ms':>10} {'RTF':>6} {'RTF physics':>12}")
    print(header)
    rows = [bench_layout(layout, lighting, args) for layout in args.layouts for lighting in args.lighting]
    for row in rows:
        print(f"{row['layout']:<10} {row['lighting']:<9} {row['length_m']:>9.1f} {row['build_ms']:>9.1f} {row['first_render_ms']:>14.1f} "
              f"{row['physics_step_us']:>8.1f} {row['period_physics_ms']:>11.2f} {row['render_ms']:>10.2f} "
              f"{row['rtf']:>6.1f} {row['rtf_physics_only']:>12.1f}")


if __name__ == "__main__":
    main()
