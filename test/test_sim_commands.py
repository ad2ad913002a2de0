"""Tests of the twist/steering conversions, the configs, the expert and the plot."""

import math

import numpy as np
import pytest

from liquid_driver.sim import (
    ExpertCommand,
    ExpertConfig,
    ExpertDriver,
    SimConfig,
    make_track,
    steering_from_twist,
    yaw_rate_from_steering,
)
from liquid_driver.sim.commands import ackermann_wheel_angles, rear_wheel_speeds
from liquid_driver.sim.plot import off_track_mask, plot_drive

WHEELBASE = 0.26
MAX_STEERING = 0.4
NON_FINITE = [float("nan"), float("inf"), -float("inf")]


@pytest.mark.parametrize("speed", [0.3, 1.0, 2.5, -0.5, -1.0])
@pytest.mark.parametrize("steering", [-0.39, -0.1, 0.0, 0.05, 0.3])
def test_steering_twist_round_trip(speed, steering):
    yaw_rate = yaw_rate_from_steering(speed, steering, WHEELBASE, MAX_STEERING)
    assert steering_from_twist(speed, yaw_rate, WHEELBASE, MAX_STEERING) == pytest.approx(steering, abs=1e-12)


def test_steering_matches_bicycle_model():
    # 1 m/s on a 2 m radius: yaw rate 0.5 rad/s, steering atan(0.26 / 2).
    assert steering_from_twist(1.0, 0.5, WHEELBASE, MAX_STEERING) == pytest.approx(math.atan(0.13))
    assert yaw_rate_from_steering(1.0, math.atan(0.13), WHEELBASE) == pytest.approx(0.5)


def test_steering_clamped_to_limit():
    assert steering_from_twist(1.0, 10.0, WHEELBASE, MAX_STEERING) == MAX_STEERING
    assert steering_from_twist(1.0, -10.0, WHEELBASE, MAX_STEERING) == -MAX_STEERING
    clamped = yaw_rate_from_steering(1.0, 1.0, WHEELBASE, MAX_STEERING)
    assert clamped == pytest.approx(math.tan(MAX_STEERING) / WHEELBASE)


def test_reversing_flips_steering_sign():
    assert steering_from_twist(-1.0, 0.5, WHEELBASE, MAX_STEERING) < 0.0
    assert yaw_rate_from_steering(-1.0, 0.2, WHEELBASE) < 0.0


@pytest.mark.parametrize("speed", [0.0, 1e-5, -1e-5])
def test_standstill_gives_zero_steering(speed):
    assert steering_from_twist(speed, 1.0, WHEELBASE, MAX_STEERING) == 0.0
    assert yaw_rate_from_steering(speed, 0.3, WHEELBASE) == pytest.approx(0.0, abs=1e-4)


@pytest.mark.parametrize("bad", NON_FINITE)
def test_conversions_reject_non_finite(bad):
    with pytest.raises(ValueError):
        steering_from_twist(bad, 0.1, WHEELBASE, MAX_STEERING)
    with pytest.raises(ValueError):
        steering_from_twist(1.0, bad, WHEELBASE, MAX_STEERING)
    with pytest.raises(ValueError):
        steering_from_twist(1.0, 0.1, bad, MAX_STEERING)
    with pytest.raises(ValueError):
        yaw_rate_from_steering(bad, 0.1, WHEELBASE)
    with pytest.raises(ValueError):
        yaw_rate_from_steering(1.0, bad, WHEELBASE)


@pytest.mark.parametrize("wheelbase,max_steering", [(0.0, 0.4), (-0.2, 0.4), (0.26, 0.0), (0.26, 1.6)])
def test_conversions_reject_bad_geometry(wheelbase, max_steering):
    with pytest.raises(ValueError):
        steering_from_twist(1.0, 0.1, wheelbase, max_steering)


def test_ackermann_inner_wheel_turns_more():
    left, right = ackermann_wheel_angles(0.3, WHEELBASE, 0.2)
    assert left > 0.3 > right > 0.0
    # Both wheels aim at one turning centre on the rear-axle line.
    radius = WHEELBASE / math.tan(0.3)
    assert WHEELBASE / math.tan(left) == pytest.approx(radius - 0.1)
    assert WHEELBASE / math.tan(right) == pytest.approx(radius + 0.1)
    mirrored = ackermann_wheel_angles(-0.3, WHEELBASE, 0.2)
    assert mirrored == pytest.approx((-right, -left))
    assert ackermann_wheel_angles(0.0, WHEELBASE, 0.2) == (0.0, 0.0)


def test_rear_wheels_differential():
    left, right = rear_wheel_speeds(1.0, 0.3, WHEELBASE, 0.2)
    assert right > 1.0 > left  # Left turn: the right wheel is outside.
    assert 0.5 * (left + right) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"camera_width": 0},
        {"camera_height": 12.5},
        {"timestep": 0.0},
        {"timestep": 0.05},
        {"wheelbase": float("nan")},
        {"max_steering": 1.5},
        {"lane": "middle"},
        {"camera_fovy_deg": 180.0},
    ],
)
def test_sim_config_rejects_invalid(overrides):
    with pytest.raises(ValueError):
        SimConfig(**overrides)


@pytest.mark.parametrize(
    "overrides",
    [{"speed": 0.0}, {"lookahead": -1.0}, {"noise_std": float("nan")}, {"recovery_offset": (0.2, 0.1)}, {"lane": "x"}],
)
def test_expert_config_rejects_invalid(overrides):
    with pytest.raises(ValueError):
        ExpertConfig(**overrides)


@pytest.fixture(scope="module")
def oval():
    return make_track("oval")


def test_expert_steers_back_to_lane(oval):
    expert = ExpertDriver(oval)
    lane = oval.lane_offset("right")
    x, y, heading = oval.pose_at(2.0, lane + 0.15)  # Left of the lane centre on a straight.
    command = expert.command(x, y, heading, 1.0)
    assert isinstance(command, ExpertCommand)
    assert command.steering < 0.0
    assert not command.perturbing
    assert command.speed == pytest.approx(1.0)
    assert command.yaw_rate == pytest.approx(command.speed * math.tan(command.steering) / WHEELBASE)
    assert command.curvature == pytest.approx(math.tan(command.steering) / WHEELBASE)


def test_expert_follows_curve_exactly(oval):
    # On a constant-radius part, pure pursuit with an along-track aim point
    # steers the lane's own curvature.
    expert = ExpertDriver(oval, ExpertConfig(lookahead=0.5, lookahead_time=0.0))
    lane = oval.lane_offset("right")
    index = int(np.argmax(oval.curvature))
    progress = float(oval.progress[index]) - 0.25
    x, y, heading = oval.pose_at(progress, lane)
    lane_curvature = oval.curvature[index] / (1.0 - lane * oval.curvature[index])
    command = expert.command(x, y, heading, 1.0)
    assert command.curvature == pytest.approx(lane_curvature, rel=0.03)


def test_expert_slows_in_curves(oval):
    expert = ExpertDriver(oval, ExpertConfig(speed=2.0, max_lateral_accel=1.0))
    lane = oval.lane_offset("right")
    straight = expert.command(*oval.pose_at(1.0, lane), 2.0).speed
    expert.reset()
    curve = expert.command(*oval.pose_at(float(oval.progress[np.argmax(oval.curvature)]), lane), 2.0).speed
    assert straight == pytest.approx(2.0)
    assert curve < 1.5


@pytest.mark.parametrize("bad", NON_FINITE)
def test_expert_rejects_non_finite_state(oval, bad):
    with pytest.raises(ValueError):
        ExpertDriver(oval).command(bad, 0.0, 0.0, 1.0)


def test_expert_noise_is_seeded(oval):
    lane = oval.lane_offset("right")
    pose = oval.pose_at(2.0, lane)
    first = ExpertDriver(oval, ExpertConfig(noise_std=0.05, seed=3)).command(*pose, 1.0)
    again = ExpertDriver(oval, ExpertConfig(noise_std=0.05, seed=3)).command(*pose, 1.0)
    other = ExpertDriver(oval, ExpertConfig(noise_std=0.05, seed=4)).command(*pose, 1.0)
    clean = ExpertDriver(oval).command(*pose, 1.0)
    assert first.steering == again.steering
    assert first.steering != other.steering
    assert first.steering != clean.steering


def test_plot_drive_writes_png(oval, tmp_path):
    lane = oval.lane_offset("right")
    path = np.array([oval.pose_at(s, lane)[:2] for s in np.arange(0.0, 10.0, 0.1)])
    path[50:60] = [oval.pose_at(s, lane + 0.5)[:2] for s in np.arange(5.0, 6.0, 0.1)]
    mask = off_track_mask(oval, path)
    assert mask.sum() == 10
    assert mask[50:60].all()
    out = plot_drive(oval, path, str(tmp_path / "plots" / "drive.png"), title="test", markers={"start": path[0]})
    with open(out, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    # A plain list of points and a pathlib output work too.
    second = plot_drive(oval, path, tmp_path / "points.png", markers=[tuple(p) for p in path[50:52]])
    assert (tmp_path / "points.png").stat().st_size > 1000
    assert second == tmp_path / "points.png"
