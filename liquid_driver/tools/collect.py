"""Record expert demonstrations in the embedded simulator over ROS 2.

Each episode starts three processes that talk over DDS, exactly as a user's
launch would: `sim_node` in lock-step mode, `expert_node` (pure pursuit with
steering noise and recovery manoeuvres) and `recorder_node`, which writes one
rosbag2 MCAP bag per episode. Episodes vary the layout, the visual seed (colours
and lighting) and the start position.

    liquid-driver-collect --out data/demos --layouts oval tight:reverse --seeds-per-layout 3

Every episode gets a visual seed of its own, so no two episodes look alike.
The default layouts, each driven both ways round, leave out `curvy`, which the
demo and the evaluation use as the held-out track.
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from liquid_driver.sim import make_track
from liquid_driver.tools.processes import NodeProcess

logger = logging.getLogger("liquid_driver.collect")

DEFAULT_LAYOUTS = [
    "oval", "tight", "chicane", "kidney", "random:1", "random:2",
    "oval:reverse", "tight:reverse", "chicane:reverse", "kidney:reverse",
    "random:3:reverse", "random:4:reverse",
]
RECORDED_TOPICS = {
    "/camera/image_raw": "sensor_msgs/msg/Image",
    "/cmd_vel": "geometry_msgs/msg/Twist",
    "/odom": "nav_msgs/msg/Odometry",
    "/driving_mode": "std_msgs/msg/String",
}
# Lock-step starts once the recorder (image and odometry) and the expert
# (odometry) are subscribed.
SUBSCRIPTIONS_BEFORE_START = 3
# Slack for process start-up, DDS discovery and lock-step stepping, in wall seconds
# per simulated second, before an episode counts as stuck.
WALL_TIME_FACTOR = 4.0
START_UP_ALLOWANCE_S = 30.0


@dataclass
class Episode:
    """One recording: where the car drives and how the expert behaves."""

    layout: str
    seed: int
    start_progress: float  # m along the track
    duration: float  # simulated s
    noise_std: float  # rad
    recovery: bool

    @property
    def name(self) -> str:
        layout = self.layout.replace(":", "_")
        return f"{layout}_seed{self.seed}"


def plan_episodes(layouts, seeds_per_layout: int, first_seed: int, duration: float,
                  noise_std: float, rng: random.Random) -> list[Episode]:
    """Build seeds_per_layout episodes per layout, each with its own visual seed and start."""
    episodes = []
    seed = first_seed
    for layout in layouts:
        length = make_track(layout).length
        for _ in range(seeds_per_layout):
            seed += 1
            episodes.append(Episode(
                layout=layout, seed=seed, start_progress=rng.uniform(0.0, length),
                duration=duration, noise_std=noise_std, recovery=True))
    return episodes


def record_episode(episode: Episode, out: Path, speed: float) -> Path:
    """Run one episode and return the bag directory it wrote."""
    bag = out / episode.name
    logs = out / "logs" / episode.name
    recorder = NodeProcess(
        "recorder_node",
        {"output": str(bag), "topics": list(RECORDED_TOPICS),
         "types": list(RECORDED_TOPICS.values())},
        log_path=logs / "recorder_node.log")
    expert = NodeProcess(
        "expert_node",
        {"layout": episode.layout, "speed": speed, "noise_std": episode.noise_std,
         "recovery": episode.recovery, "seed": episode.seed},
        log_path=logs / "expert_node.log")
    sim = NodeProcess(
        "sim_node",
        {"layout": episode.layout, "seed": episode.seed, "lockstep": True,
         "min_subscribers": SUBSCRIPTIONS_BEFORE_START,
         "start_progress": episode.start_progress, "stop_after_time": episode.duration},
        log_path=logs / "sim_node.log")
    try:
        code = sim.wait(START_UP_ALLOWANCE_S + WALL_TIME_FACTOR * episode.duration)
        if code is None:
            raise RuntimeError(
                f"episode {episode.name} did not finish in time; see {logs}/sim_node.log")
        if code != 0:
            raise RuntimeError(
                f"sim_node exited with code {code} in episode {episode.name}; "
                f"see {logs}/sim_node.log")
    finally:
        sim.stop()
        expert.stop()
        recorder.stop()
    return bag


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/demos", help="folder that receives one bag per episode")
    parser.add_argument("--layouts", nargs="+", default=DEFAULT_LAYOUTS, help="layouts to drive")
    parser.add_argument("--seeds-per-layout", type=int, default=2,
                        help="episodes per layout, each with a new visual seed (default: 2)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="visual seeds count up from this one plus 1 (default: 0)")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="simulated seconds per episode (default: 30)")
    parser.add_argument("--speed", type=float, default=1.0, help="expert speed in m/s")
    parser.add_argument("--noise-std", type=float, default=0.03,
                        help="expert steering noise in rad (default: 0.03)")
    parser.add_argument("--plan-seed", type=int, default=0, help="seed of the start positions")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete bags of the same episode names in --out first")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    out = Path(args.out)
    episodes = plan_episodes(args.layouts, args.seeds_per_layout, args.first_seed, args.duration,
                             args.noise_std, random.Random(args.plan_seed))
    existing = [out / e.name for e in episodes if (out / e.name).exists()]
    if existing and not args.overwrite:
        print(f"error: {len(existing)} bags already exist in {out} (first: {existing[0]}); "
              "pass --overwrite to replace them or choose another --out", file=sys.stderr)
        return 2
    for path in existing:
        shutil.rmtree(path)
    out.mkdir(parents=True, exist_ok=True)

    for episode in tqdm(episodes, desc="episodes", unit="episode"):
        bag = record_episode(episode, out, args.speed)
        logger.info("recorded %s", bag)
    print(f"Recorded {len(episodes)} episodes into {out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
