"""Tests of the forward camera: image format, lane markings, intrinsics and visual seeds.

These render with MuJoCo's offscreen OpenGL (EGL or OSMesa); a machine with
neither fails them with RenderingUnavailableError naming the packages to install.
"""

import math
import os
import subprocess
import sys

import mujoco
import numpy as np
import pytest

from liquid_driver.sim import SimConfig, Simulator, make_track
from liquid_driver.sim import gl
from liquid_driver.sim.style import MIN_LINE_CONTRAST, SCENERY_CLEARANCE, luminance, visual_style

STRAIGHT_PROGRESS = 2.0  # m; the oval's first straight runs from 0 to 5 m.


def image_luminance(image):
    return image.astype(float) @ np.array([0.2126, 0.7152, 0.0722]) / 255.0  # (H, W)


def project_to_pixel(camera, x_forward, y_left):
    """Pixel (u, v) of a ground point given in the car frame (origin below the rear axle)."""
    cam_x, _, cam_z = camera.position
    dx, dz = x_forward - cam_x, -cam_z
    c, s = math.cos(camera.pitch), math.sin(camera.pitch)
    depth = c * dx - s * dz  # Along the optical axis.
    down = -(s * dx + c * dz)  # Image y points down.
    right = -y_left
    return camera.cx + camera.fx * right / depth, camera.cy + camera.fy * down / depth


@pytest.fixture(scope="module")
def oval():
    return make_track("oval")


@pytest.fixture(scope="module")
def neutral(oval):
    simulator = Simulator(oval, seed=0)
    simulator.reset(progress=STRAIGHT_PROGRESS)
    yield simulator
    simulator.close()


def test_image_shape_and_type(neutral):
    image = neutral.render()
    assert image.shape == (120, 160, 3)
    assert image.dtype == np.uint8
    assert image.std() > 10.0  # Not a blank frame.


def test_custom_image_size(oval):
    with Simulator(oval, config=SimConfig(camera_width=96, camera_height=64)) as simulator:
        assert simulator.render().shape == (64, 96, 3)
        assert simulator.camera.width == 96
        assert simulator.camera.cx == pytest.approx(47.5)


def test_intrinsics_match_field_of_view(neutral):
    camera = neutral.camera
    assert camera.fy == pytest.approx(60.0 / math.tan(math.radians(37.5)))
    assert camera.fx == camera.fy
    assert (camera.cx, camera.cy) == (79.5, 59.5)
    np.testing.assert_allclose(camera.matrix[:2, 2], (79.5, 59.5))


def test_lane_markings_visible_in_lower_half(neutral):
    image = neutral.render()
    bright = image_luminance(image) > 0.8  # Seed 0 lines are 0.95 white on a 0.35 road.
    lower = bright[image.shape[0] // 2 :]
    middle = image.shape[1] // 2
    assert lower[:, :middle].sum() > 20  # Dashed centre line, left of the car.
    assert lower[:, middle:].sum() > 20  # Solid edge line, right of the car.
    assert bright[: image.shape[0] // 4].sum() == 0  # Sky only at the top.


def test_lines_appear_where_intrinsics_project_them(neutral):
    image = neutral.render()
    level = image_luminance(image)
    road = np.median(level[-10:, 70:90])
    track = neutral.track
    # The right edge line runs lane_width / 2 right of the car on the straight.
    edge_left = -0.5 * track.lane_width
    for forward in (0.6, 0.9, 1.2):
        u, v = project_to_pixel(neutral.camera, forward, edge_left)
        row, col = int(round(v)), int(round(u))
        assert 0 <= row < image.shape[0], forward
        assert 0 <= col < image.shape[1], forward
        patch = level[row - 1 : row + 2, col - 1 : col + 2]
        assert patch.max() > road + 0.3, (forward, row, col)
        # Half a lane further in is plain road.
        u_road, v_road = project_to_pixel(neutral.camera, forward, edge_left + 0.15)
        assert level[int(round(v_road)), int(round(u_road))] == pytest.approx(road, abs=0.05)


def test_visual_seeds_change_colours_not_track(oval):
    images = {}
    for seed in (0, 1, 2):
        with Simulator(oval, seed=seed) as simulator:
            simulator.reset(progress=STRAIGHT_PROGRESS)
            images[seed] = simulator.render().astype(float)
            np.testing.assert_array_equal(simulator.track.points, oval.points)
    assert np.abs(images[0] - images[1]).mean() > 5.0
    assert np.abs(images[1] - images[2]).mean() > 5.0


def test_visual_styles_keep_lines_bright(oval):
    for seed in range(1, 40):
        style = visual_style(seed, oval)
        for line in (style.edge_line, style.centre_line):
            assert luminance(line) >= luminance(style.road) + MIN_LINE_CONTRAST, seed
        for item in style.scenery:
            distance = oval.project_global(item.x, item.y).distance
            assert distance > oval.road_half_width + SCENERY_CLEARANCE, seed


@pytest.mark.parametrize("seed", [-1, 1.5, "3", True])
def test_visual_seed_must_be_non_negative_int(oval, seed):
    with pytest.raises(ValueError):
        visual_style(seed, oval)


def test_render_follows_car(oval):
    with Simulator(oval) as simulator:
        simulator.reset(progress=STRAIGHT_PROGRESS)
        before = simulator.render()
        simulator.set_command(1.0, 0.4)
        simulator.step(1.0)
        after = simulator.render()
    assert np.abs(before.astype(float) - after.astype(float)).mean() > 3.0


def test_render_failure_names_packages(oval, monkeypatch):
    def broken_renderer(*args, **kwargs):
        raise mujoco.FatalError("gladLoadGL error")

    monkeypatch.setattr(mujoco, "Renderer", broken_renderer)
    simulator = Simulator(oval)
    with pytest.raises(gl.RenderingUnavailableError) as info:
        simulator.render()
    message = str(info.value)
    assert "libegl1 libgl1-mesa-dri" in message
    assert "libosmesa6" in message
    assert "MUJOCO_GL" in message


def test_explicit_backend_is_kept(monkeypatch):
    monkeypatch.setenv(gl.MUJOCO_GL_ENV, "osmesa")
    assert gl.select_backend() == "osmesa"
    assert os.environ[gl.MUJOCO_GL_ENV] == "osmesa"


def test_probe_reports_invalid_backend():
    error = gl.probe_backend("no-such-backend", timeout_s=60.0)
    assert error is not None
    assert "MUJOCO_GL" in error


def test_unset_backend_picks_working_one():
    env = {key: value for key, value in os.environ.items() if key not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    script = (
        "import os, liquid_driver.sim as sim\n"
        "simulator = sim.Simulator.from_layout('oval')\n"
        "print(os.environ['MUJOCO_GL'], simulator.render().shape)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    backend, shape = result.stdout.strip().split(" ", 1)
    assert backend in gl.CANDIDATE_BACKENDS
    assert shape == "(120, 160, 3)"
