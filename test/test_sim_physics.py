"""Tests of the compiled MuJoCo model, the car physics and closed-loop driving.

Everything here steps real MuJoCo physics without rendering.
"""

import math

import mujoco
import numpy as np
import pytest

from liquid_driver.sim import (
    LAYOUT_NAMES,
    ExpertConfig,
    ExpertDriver,
    SimConfig,
    SimulationDiverged,
    Simulator,
    make_track,
)
from liquid_driver.sim.commands import ackermann_wheel_angles
from liquid_driver.sim.scene import (
    CHASSIS_GEOM,
    GROUND_GEOM,
    ROAD_MESHES,
    STEER_JOINTS,
    steering_joint_limit,
    strip_mesh,
)

CONTROL_PERIOD = 0.05  # s


def geom_id(model, name):
    return mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)


def can_collide(model, a, b):
    return bool(
        (model.geom_contype[a] & model.geom_conaffinity[b]) or (model.geom_contype[b] & model.geom_conaffinity[a])
    )


def drive_expert(sim, expert, max_time, laps=1):
    """Drive in lock-step until ``laps`` laps or ``max_time`` s; return (errors, perturbing flags)."""
    errors, flags = [], []
    while sim.lane_state().lap_count < laps and sim.time < max_time:
        x, y, yaw = sim.pose
        command = expert.command(x, y, yaw, sim.velocity[0])
        sim.set_command(command.speed, command.steering)
        sim.step(CONTROL_PERIOD)
        errors.append(sim.lane_state().cross_track_error)
        flags.append(command.perturbing)
    return np.array(errors), np.array(flags)


@pytest.fixture(scope="module")
def sim():
    simulator = Simulator.from_layout("oval", seed=0)
    yield simulator
    simulator.close()


# ----------------------------------------------------------------------
# Compiled model


def test_model_uses_implicitfast(sim):
    assert sim.model.opt.integrator == mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    assert sim.model.opt.timestep == pytest.approx(sim.config.timestep)


def test_steering_joint_ranges_in_radians(sim):
    limit = steering_joint_limit(sim.config)
    inner, outer = ackermann_wheel_angles(sim.config.max_steering, sim.wheelbase, sim.config.track_width)
    assert inner > sim.config.max_steering > outer
    assert limit > inner
    for name in STEER_JOINTS:
        joint = mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_JOINT, name)
        assert sim.model.jnt_limited[joint]
        # A range read as degrees would shrink 0.5 to 0.0087 rad.
        np.testing.assert_allclose(sim.model.jnt_range[joint], (-limit, limit), rtol=1e-3)
    for actuator in range(2):
        np.testing.assert_allclose(sim.model.actuator_ctrlrange[actuator], (-limit, limit), rtol=1e-3)


def test_wheels_never_collide_with_chassis(sim):
    model = sim.model
    chassis = geom_id(model, CHASSIS_GEOM)
    ground = geom_id(model, GROUND_GEOM)
    tyres = [geom_id(model, f"{axle}_{side}_tyre") for axle in ("front", "rear") for side in ("left", "right")]
    for tyre in tyres:
        assert not can_collide(model, tyre, chassis)
        assert can_collide(model, tyre, ground)
    for a in tyres:
        for b in tyres:
            assert a == b or not can_collide(model, a, b)
    assert can_collide(model, chassis, ground)


def test_only_ground_contacts_while_driving(sim):
    sim.reset(progress=1.0)
    sim.set_command(1.5, 0.4)
    sim.step(1.0)
    ground = geom_id(sim.model, GROUND_GEOM)
    assert sim.data.ncon >= 4
    for contact in sim.data.contact[: sim.data.ncon]:
        assert ground in (contact.geom1, contact.geom2)


def test_road_triangles_face_up(sim):
    model, data = sim.model, sim.data
    mujoco.mj_forward(model, data)
    for name in ROAD_MESHES:
        geom = geom_id(model, name)
        mesh = model.geom_dataid[geom]
        start, count = model.mesh_vertadr[mesh], model.mesh_vertnum[mesh]
        face_start, face_count = model.mesh_faceadr[mesh], model.mesh_facenum[mesh]
        local = model.mesh_vert[start : start + count]  # (V, 3) in the mesh frame
        world = local @ data.geom_xmat[geom].reshape(3, 3).T + data.geom_xpos[geom]
        faces = model.mesh_face[face_start : face_start + face_count]  # (F, 3)
        a, b, c = world[faces[:, 0]], world[faces[:, 1]], world[faces[:, 2]]
        normal_z = np.cross(b - a, c - a)[:, 2]
        assert face_count > 0, name
        assert np.all(normal_z > 0.0), name
        assert np.all(world[:, 2] > 0.0), name  # Above the ground plane.
        assert model.geom_contype[geom] == 0, name  # Visual only.
        assert model.geom_conaffinity[geom] == 0, name


def test_strip_mesh_winds_counter_clockwise():
    left = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    right = np.array([[0.0, -1.0], [1.0, -1.0], [2.0, -1.0]])
    vertices, faces = strip_mesh(left, right, 0.01, closed=False)
    assert faces.shape == (4, 3)
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    assert np.all(np.cross(b - a, c - a)[:, 2] > 0.0)


def test_scene_stays_small(sim):
    assert sim.model.nmesh == len(ROAD_MESHES)
    assert sim.model.ngeom < 40


def test_visual_seed_keeps_physics_and_geometry():
    track = make_track("curvy")
    runs = []
    for seed in (0, 7):
        simulator = Simulator(track, seed=seed)
        simulator.reset(progress=2.0)
        simulator.set_command(1.2, 0.25)
        simulator.step(1.5)
        runs.append(simulator)
    a, b = runs
    np.testing.assert_array_equal(a.model.mesh_vert, b.model.mesh_vert)
    np.testing.assert_array_equal(a.model.mesh_face, b.model.mesh_face)
    for name in ROAD_MESHES + (GROUND_GEOM, CHASSIS_GEOM):
        np.testing.assert_array_equal(a.model.geom_size[geom_id(a.model, name)], b.model.geom_size[geom_id(b.model, name)])
    np.testing.assert_array_equal(a.data.qpos, b.data.qpos)
    assert a.style.road != b.style.road


# ----------------------------------------------------------------------
# Car behaviour


def test_reset_places_car_on_lane(sim):
    sim.reset(progress=3.0, lateral_offset=0.1, heading_offset=-0.2)
    state = sim.lane_state()
    assert sim.time == 0.0
    assert state.cross_track_error == pytest.approx(0.1, abs=0.005)
    assert state.heading_error == pytest.approx(-0.2, abs=0.005)
    assert state.progress == pytest.approx(3.0, abs=0.05)
    assert state.distance == 0.0
    assert state.lap_count == 0
    assert sim.velocity == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_commands_reject_non_finite(sim, bad):
    with pytest.raises(ValueError):
        sim.set_command(bad, 0.0)
    with pytest.raises(ValueError):
        sim.set_command(1.0, bad)
    with pytest.raises(ValueError):
        sim.step(bad)
    with pytest.raises(ValueError):
        sim.reset(progress=bad)


def test_commands_clamped(sim):
    config = sim.config
    assert sim.set_command(10.0, 2.0) == (config.max_speed, config.max_steering)
    assert sim.set_command(-10.0, -2.0) == (-config.max_reverse_speed, -config.max_steering)
    with pytest.raises(ValueError):
        sim.step(-0.1)


def test_step_rounds_to_physics_steps(sim):
    sim.reset()
    assert sim.step(0.05) == 25
    assert sim.step(0.0031) == 2
    assert sim.time == pytest.approx(27 * sim.config.timestep)


def test_speed_and_yaw_rate_follow_bicycle_model(sim):
    sim.reset(progress=0.0)
    sim.set_command(1.0, 0.2)
    sim.step(2.0)
    vx, vy, yaw_rate = sim.velocity
    assert vx == pytest.approx(1.0, rel=0.05)
    assert abs(vy) < 0.05
    assert yaw_rate == pytest.approx(math.tan(0.2) / sim.wheelbase, rel=0.1)
    left, right = sim.steering_angles
    expected = ackermann_wheel_angles(0.2, sim.wheelbase, sim.config.track_width)
    assert left == pytest.approx(expected[0], abs=0.01)
    assert right == pytest.approx(expected[1], abs=0.01)
    assert left > right


def test_reverse_drives_backwards(sim):
    sim.reset(progress=5.0)
    start = np.array(sim.pose[:2])
    sim.set_command(-0.5, 0.0)
    sim.step(1.5)
    heading = sim.track.pose_at(5.0)[2]
    moved = np.array(sim.pose[:2]) - start
    assert sim.velocity[0] == pytest.approx(-0.5, rel=0.1)
    assert moved @ np.array([math.cos(heading), math.sin(heading)]) < -0.4
    assert sim.lane_state().progress < 5.0


def test_divergence_raises_named_warning(sim, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo appends the warning to ./MUJOCO_LOG.TXT.
    sim.reset()
    sim.data.qvel[0] = float("nan")
    with pytest.raises(SimulationDiverged, match="mjWARN_BADQ") as info:
        sim.step(0.01)
    assert info.value.warning.startswith("mjWARN_BADQ")
    with pytest.raises(SimulationDiverged):
        sim.step(0.01)  # Stays failed until reset.
    sim.reset()
    assert sim.step(0.01) == 5


def test_off_track_event_counted_once_when_driving_out(sim):
    sim.reset(progress=0.5, heading_offset=0.3)  # Aimed across the lane line.
    sim.set_command(1.0, 0.0)
    for _ in range(30):
        sim.step(CONTROL_PERIOD)
    state = sim.lane_state()
    assert state.off_track
    assert state.cross_track_error > 0.3
    assert state.off_track_events == 1


def test_left_lane_config():
    simulator = Simulator.from_layout("oval", config=SimConfig(lane="left"))
    x, y, _ = simulator.pose
    projection = simulator.track.project_global(x, y)
    assert projection.lateral == pytest.approx(0.5 * simulator.track.lane_width, abs=0.005)
    expert = ExpertDriver(simulator.track, ExpertConfig(lane="left"))
    errors, _ = drive_expert(simulator, expert, max_time=8.0)
    assert np.max(np.abs(errors)) < 0.1
    assert simulator.lane_state().off_track_events == 0


# ----------------------------------------------------------------------
# Closed loop


@pytest.mark.parametrize("layout", list(LAYOUT_NAMES) + ["random:1", "random:4"])
def test_expert_drives_full_lap(layout):
    simulator = Simulator.from_layout(layout)
    expert = ExpertDriver(simulator.track)
    errors, flags = drive_expert(simulator, expert, max_time=1.5 * simulator.track.length + 10.0)
    state = simulator.lane_state()
    assert state.lap_count == 1
    assert state.off_track_events == 0
    assert np.mean(np.abs(errors)) < 0.05
    assert np.max(np.abs(errors)) < 0.12
    assert state.distance > simulator.track.length * 0.9
    assert not flags.any()


@pytest.mark.parametrize("layout", ["tight", "chicane", "random:2"])
def test_recovery_manoeuvres_stay_in_lane(layout):
    simulator = Simulator.from_layout(layout)
    expert = ExpertDriver(simulator.track, ExpertConfig(recovery=True, noise_std=0.02, seed=5))
    errors, flags = drive_expert(simulator, expert, max_time=1.5 * simulator.track.length + 10.0)
    state = simulator.lane_state()
    assert state.lap_count == 1
    assert state.off_track_events == 0
    drift_starts = int(np.sum(flags[1:] & ~flags[:-1]))
    assert drift_starts >= 2
    assert flags.mean() < 0.5  # Mostly normal driving.
    assert np.max(np.abs(errors)) > 0.07  # The drifts really move the car.
    assert np.max(np.abs(errors)) < 0.5 * simulator.track.lane_width
