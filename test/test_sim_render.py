"""Tests of the forward camera: image format, lane markings, intrinsics and visual seeds.

These render with MuJoCo's offscreen OpenGL (EGL or OSMesa); a machine with
neither fails them with RenderingUnavailableError naming the packages to install.
"""

import dataclasses
import math
import os
import subprocess
import sys

import mujoco
import numpy as np
import pytest

from liquid_driver.sim import SimConfig, Simulator, make_track
from liquid_driver.sim import gl
import liquid_driver.sim.simulator as simulator_module
from liquid_driver.sim.style import (
    LIGHTING_PRESETS,
    MIN_LINE_CONTRAST,
    SCENERY_CLEARANCE,
    luminance,
    relight,
    visual_style,
)

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


# Lighting presets -----------------------------------------------------------

# Seed 1004 on the curvy layout at the start: the dusk sun is low behind the car,
# whose shadow then reaches along the road in front of the camera.
SHADOW_SEED = 1004


def render_curvy(seed, lighting, progress=0.0):
    with Simulator.from_layout("curvy", seed=seed, lighting=lighting) as simulator:
        simulator.reset(progress=progress)
        return simulator.render()


@pytest.fixture(scope="module")
def preset_images():
    return {lighting: render_curvy(SHADOW_SEED, lighting) for lighting in LIGHTING_PRESETS}


@pytest.mark.parametrize("lighting", [name for name in LIGHTING_PRESETS if name != "default"])
def test_lighting_preset_changes_image(preset_images, lighting):
    image = preset_images[lighting]
    assert image.shape == (120, 160, 3)
    assert image.dtype == np.uint8
    assert image.std() > 5.0, "a blank frame"
    difference = np.abs(image.astype(float) - preset_images["default"].astype(float)).mean()
    assert difference > 5.0


def test_default_lighting_keeps_seed_style(oval):
    style = visual_style(1000, oval)
    assert relight(style, "default") is style
    with Simulator(oval, seed=1000) as plain, Simulator(oval, seed=1000, lighting="default") as named:
        assert named.mjcf == plain.mjcf
        assert named.lighting == "default"
        np.testing.assert_array_equal(named.render(), plain.render())


def test_dusk_darker_than_default(preset_images):
    assert image_luminance(preset_images["dusk"]).mean() < 0.7 * image_luminance(preset_images["default"]).mean()


def test_relight_keeps_colours_and_sun_azimuth(oval):
    style = visual_style(1000, oval)
    dusk = relight(style, "dusk")
    assert dusk.road == style.road
    assert dusk.scenery == style.scenery
    assert dusk.shadows
    assert dusk.light_diffuse < 0.4  # Below every visual seed's range.
    assert math.asin(-dusk.light_direction[2]) < 0.5  # A sun lower than any visual seed's.
    azimuth = math.atan2(style.light_direction[1], style.light_direction[0])
    assert math.atan2(dusk.light_direction[1], dusk.light_direction[0]) == pytest.approx(azimuth)


@pytest.mark.parametrize("lighting", ["dawn", "", "Dusk", None])
def test_relight_rejects_unknown_name(oval, lighting):
    with pytest.raises(ValueError, match="invalid lighting") as info:
        relight(visual_style(0, oval), lighting)
    assert repr(lighting) in str(info.value)
    assert "dusk" in str(info.value)


def test_simulator_rejects_unknown_lighting():
    with pytest.raises(ValueError, match="'dawn'"):
        Simulator.from_layout("oval", lighting="dawn")


def test_dusk_casts_shadows_on_road(monkeypatch):
    shadowed = render_curvy(SHADOW_SEED, "dusk")
    # The same dusk light with shadows off, so only the shadows differ.
    monkeypatch.setattr(
        simulator_module, "relight", lambda style, name: dataclasses.replace(relight(style, name), shadows=False)
    )
    unshadowed = render_curvy(SHADOW_SEED, "dusk")

    lit = image_luminance(unshadowed)
    darkening = lit - image_luminance(shadowed)  # (H, W)
    # Shadows only take light away: nothing gets brighter.
    assert darkening.min() > -0.01
    # A large share of the road ahead (the lower half) lies in the car's shadow,
    # at least 30 % darker. Dusk is dim, so the absolute change is a few grey levels.
    assert (darkening[60:] > 0.3 * lit[60:]).mean() > 0.2
    # The sunlit rest of the frame stays as it was.
    assert (np.abs(darkening) < 0.005).mean() > 0.4


def test_night_keeps_lane_lines_visible(oval):
    with Simulator(oval, seed=0, lighting="night") as simulator:
        simulator.reset(progress=STRAIGHT_PROGRESS)
        level = image_luminance(simulator.render())
        camera, track = simulator.camera, simulator.track
    u, v = project_to_pixel(camera, 0.9, -0.5 * track.lane_width)  # Right edge line.
    u_road, v_road = project_to_pixel(camera, 0.9, -0.5 * track.lane_width + 0.15)
    line = level[int(round(v)) - 1 : int(round(v)) + 2, int(round(u)) - 1 : int(round(u)) + 2].max()
    road = level[int(round(v_road)), int(round(u_road))]
    assert road < 0.2, "night should be dark"
    assert line > road + 0.1


def test_flat_layers_cast_no_shadows():
    with Simulator.from_layout("oval", lighting="dusk") as simulator:
        model = simulator.model
        sun = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_LIGHT, "sun")
        assert model.light_castshadow[sun]
        if not hasattr(model, "geom_castshadow"):
            pytest.skip("MuJoCo before 4.0 has no per-geom castshadow")
        for name in ("ground", "road", "left_edge_line", "centre_line"):
            assert not model.geom_castshadow[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name)], name
        assert model.geom_castshadow[mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, "chassis")]
