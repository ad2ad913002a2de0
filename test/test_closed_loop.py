"""Closed-loop driving with the shipped model: the property the product promises.

Both tests drive a layout the shipped model was not trained on. The first runs
the simulator and the network in this process (the same code paths the nodes
call); the second runs sim_node and perception_node as separate processes over
DDS in lock-step.
"""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry

from liquid_driver.inference import PolicyRunner
from liquid_driver.metrics import DriveStats
from liquid_driver.paths import default_model_path
from liquid_driver.sim import Simulator, make_track
from liquid_driver.tools.monitor import LANE_METRICS_STATUS, status_values
from liquid_driver.tools.processes import NodeProcess
from ros_helpers import Probe

HELD_OUT_LAYOUT = "curvy"
SPEED = 1.0  # m/s
CAMERA_PERIOD_S = 0.05
# Mean |cross-track error| a lane keeper must beat; the lane is 0.6 m wide, so
# this is well inside it. The expert drives at about 2 cm.
MAX_MEAN_ABS_CTE = 0.10  # m


@pytest.fixture(scope="module")
def model_path():
    path = default_model_path()
    assert path.is_file(), f"the shipped model {path} is missing; run `make model`"
    return path


@pytest.mark.timeout(300)
@pytest.mark.parametrize("layout,seed", [(HELD_OUT_LAYOUT, 0), (HELD_OUT_LAYOUT, 1234)])
def test_policy_keeps_lane_in_process(model_path, layout, seed):
    runner = PolicyRunner(model_path)
    sim = Simulator.from_layout(layout, seed=seed)
    sim.reset()
    stats = DriveStats()
    # A little over a lap of the driving lane, which is longer than the centreline
    # on the outside of the loop.
    steps = int(1.05 * make_track(layout).lane_length("right") / SPEED / CAMERA_PERIOD_S)
    try:
        for _ in range(steps):
            prediction = runner.predict(sim.render(), sim.time)
            assert prediction.reset_reason is None
            yaw_rate = SPEED * prediction.curvature
            sim.set_command(speed=SPEED, steering=sim_steering(sim, yaw_rate))
            sim.step(CAMERA_PERIOD_S)
            lane = sim.lane_state()
            stats.add(sim.time, lane.cross_track_error, lane.lap_count, lane.off_track_events,
                      lane.distance)
    finally:
        sim.close()
    summary = stats.summary()
    assert summary.off_track_events == 0, summary.format()
    assert summary.laps >= 1, summary.format()
    assert summary.mean_abs_cross_track_error < MAX_MEAN_ABS_CTE, summary.format()


def sim_steering(sim, yaw_rate: float) -> float:
    from liquid_driver.sim import steering_from_twist

    return steering_from_twist(SPEED, yaw_rate, sim.wheelbase, sim.config.max_steering)


@pytest.mark.timeout(300)
def test_nodes_keep_lane_over_dds(model_path, tmp_path):
    probe = Probe("closed_loop_probe")
    probe.subscribe(DiagnosticArray, "/sim/lane_metrics")
    # Subscribing odometry makes the probe one of the two subscriptions the
    # lock-step simulator waits for, so it sees the drive from the first frame.
    probe.subscribe(Odometry, "/odom")
    drive_time = 30.0  # simulated s
    perception = NodeProcess(
        "perception_node",
        # In lock-step the watchdog must outlast sim_node's 1 s lockstep_timeout,
        # or its stop commands would step the simulator past unseen frames.
        {"model_path": str(model_path), "speed": SPEED, "image_reliable": True,
         "start_enabled": True, "watchdog_timeout": 5.0},
        log_path=tmp_path / "perception_node.log")
    sim = NodeProcess(
        "sim_node",
        {"layout": HELD_OUT_LAYOUT, "lockstep": True, "min_subscribers": 2,
         "stop_after_time": drive_time},
        log_path=tmp_path / "sim_node.log")
    try:
        code = sim.wait(timeout=240.0)
        assert code == 0, sim.log_text()[-3000:]
    finally:
        sim.stop()
        perception.stop()
        probe.close()

    metrics = [status_values(m, LANE_METRICS_STATUS) for m in probe.messages("/sim/lane_metrics")]
    metrics = [m for m in metrics if m is not None]
    final = metrics[-1]
    # The last few messages may still be in flight when sim_node exits.
    assert float(final["sim_time"]) > drive_time - 10 * CAMERA_PERIOD_S
    assert int(final["off_track_events"]) == 0, sim.log_text()[-2000:]
    # The network, not the watchdog, drove: the car covered the distance at speed.
    assert float(final["distance"]) > 0.8 * SPEED * drive_time
    mean_abs_cte = sum(abs(float(m["cross_track_error"])) for m in metrics) / len(metrics)
    assert mean_abs_cte < MAX_MEAN_ABS_CTE
