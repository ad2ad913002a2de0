"""Tests of track geometry, layouts and lane metrics (no physics, no rendering)."""

import math

import numpy as np
import pytest

from liquid_driver.sim import LAYOUT_NAMES, Track, TrackGeometryError, make_track
from liquid_driver.sim.metrics import LaneTracker
from liquid_driver.sim.track import DEFAULT_MIN_LANE_RADIUS, wrap_angle

RANDOM_SEEDS = (0, 1, 2, 3, 11, 42)


def circle(radius, count=24, clockwise=False):
    angle = np.linspace(0.0, 2.0 * math.pi, count, endpoint=False)
    if clockwise:
        angle = -angle
    return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)


def segments_intersect(a0, a1, b0, b1):
    """Vectorised proper-intersection test of segments a (k, 2) against b (m, 2)."""

    def orientation(p, q, r):
        return np.sign((q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0]))

    a0, a1 = a0[:, None, :], a1[:, None, :]
    b0, b1 = b0[None, :, :], b1[None, :, :]
    return (orientation(a0, a1, b0) * orientation(a0, a1, b1) < 0) & (orientation(b0, b1, a0) * orientation(b0, b1, a1) < 0)


def polyline_crossings(first, second, skip_neighbours):
    """Count crossings between closed polylines, ignoring adjacent segments of one line."""
    a0, a1 = first, np.roll(first, -1, axis=0)
    b0, b1 = second, np.roll(second, -1, axis=0)
    hits = segments_intersect(a0, a1, b0, b1)
    if skip_neighbours:
        n = len(first)
        i, j = np.indices(hits.shape)
        gap = np.minimum(np.abs(i - j), n - np.abs(i - j))
        hits &= gap > 1
    return int(np.sum(hits))


@pytest.fixture(scope="module")
def tracks():
    names = list(LAYOUT_NAMES) + [f"random:{seed}" for seed in RANDOM_SEEDS]
    return {name: make_track(name) for name in names}


def test_layout_names_cover_required_set():
    for name in ("oval", "curvy", "tight"):
        assert name in LAYOUT_NAMES
    assert len(LAYOUT_NAMES) >= 4


def test_tracks_are_closed(tracks):
    for name, track in tracks.items():
        gap = np.linalg.norm(track.points[0] - track.points[-1])
        assert gap == pytest.approx(track.segment_length[-1]), name
        assert gap < 0.1, name
        assert track.progress[-1] + track.segment_length[-1] == pytest.approx(track.length), name
        assert np.max(track.segment_length) / np.min(track.segment_length) < 1.05, name
        turning = np.sum(np.abs([wrap_angle(b - a) for a, b in zip(track.heading, np.roll(track.heading, -1))]))
        assert np.max(np.abs(np.diff(np.unwrap(track.heading)))) < 0.1, name
        assert turning >= 2.0 * math.pi - 1e-6, name


def test_tracks_turn_once_counter_clockwise(tracks):
    for name, track in tracks.items():
        total = np.sum(track.curvature * track.segment_length)
        assert total == pytest.approx(2.0 * math.pi, abs=0.05), name


def test_road_edges_never_intersect(tracks):
    for name, track in tracks.items():
        left = track.offset_line(track.road_half_width)
        right = track.offset_line(-track.road_half_width)
        assert polyline_crossings(left, left, skip_neighbours=True) == 0, name
        assert polyline_crossings(right, right, skip_neighbours=True) == 0, name
        assert polyline_crossings(left, right, skip_neighbours=False) == 0, name


def test_lane_radius_respects_minimum(tracks):
    for name, track in tracks.items():
        assert track.min_lane_centre_radius >= DEFAULT_MIN_LANE_RADIUS, name
    assert tracks["tight"].min_lane_centre_radius < tracks["oval"].min_lane_centre_radius


def test_random_layouts_are_deterministic():
    first = make_track("random:5")
    again = make_track("random:5")
    other = make_track("random:6")
    np.testing.assert_array_equal(first.points, again.points)
    assert first.points.shape != other.points.shape or not np.allclose(first.points, other.points)
    assert first.name == "random:5"


@pytest.mark.parametrize("name", ["random:", "random:x", "random:-1", "figure8", ""])
def test_make_track_rejects_bad_names(name):
    with pytest.raises(ValueError):
        make_track(name)


@pytest.mark.parametrize("clockwise,sign", [(False, 1.0), (True, -1.0)])
def test_curvature_sign_and_radius(clockwise, sign):
    track = Track.from_points(circle(3.0, clockwise=clockwise), "circle")
    np.testing.assert_allclose(track.curvature, sign / 3.0, rtol=0.01)
    assert track.length == pytest.approx(2.0 * math.pi * 3.0, rel=1e-3)


def test_repeated_closing_point_is_ignored():
    points = circle(3.0)
    closed = np.vstack([points, points[:1]])
    a = Track.from_points(points)
    b = Track.from_points(closed)
    np.testing.assert_allclose(a.points, b.points, atol=1e-9)


def test_projection_round_trip(tracks):
    rng = np.random.default_rng(0)
    for name in ("oval", "tight", "kidney", "random:3"):
        track = tracks[name]
        hint = None
        for progress in np.linspace(0.0, track.length, 60, endpoint=False):
            lateral = float(rng.uniform(-0.6, 0.6))
            x, y, heading = track.pose_at(progress, lateral)
            projection = track.project(x, y, hint)
            hint = projection.index
            error = (projection.progress - progress + 0.5 * track.length) % track.length - 0.5 * track.length
            assert abs(error) < 0.01, (name, progress)
            assert projection.lateral == pytest.approx(lateral, abs=0.005), (name, progress)
            assert abs(wrap_angle(projection.heading - heading)) < 0.01, (name, progress)
            global_projection = track.project_global(x, y)
            assert global_projection.index == projection.index, (name, progress)


def test_projection_follows_either_direction(tracks):
    track = tracks["curvy"]
    hint = track.project_global(*track.pose_at(10.0)[:2]).index
    for progress in np.linspace(10.0, -5.0, 200):  # Backwards across the start line.
        x, y, _ = track.pose_at(progress, -0.3)
        projection = track.project(x, y, hint)
        hint = projection.index
        assert projection.progress == pytest.approx(progress % track.length, abs=0.01)


def test_projection_rejects_non_finite(tracks):
    with pytest.raises(ValueError):
        tracks["oval"].project(float("nan"), 0.0, 3)
    with pytest.raises(ValueError):
        tracks["oval"].project_global(0.0, float("inf"))


def test_self_intersecting_centreline_rejected():
    angle = np.linspace(0.0, 2.0 * math.pi, 40, endpoint=False)
    figure_eight = np.stack([6.0 * np.sin(angle), 3.0 * np.sin(2.0 * angle)], axis=1)
    with pytest.raises(TrackGeometryError, match="overlaps"):
        Track.from_points(figure_eight, "figure8", min_lane_radius=0.5)


def test_close_pass_rejected():
    # A long thin loop whose two sides pass 1.2 m apart, closer than one road width.
    points = [(0, 0), (8, 0), (9.2, 0.6), (8, 1.2), (0, 1.2), (-1.2, 0.6)]
    with pytest.raises(TrackGeometryError):
        Track.from_points(points, "thin", min_lane_radius=0.1)


def test_too_fine_resolution_rejected():
    with pytest.raises(TrackGeometryError, match="resolution"):
        Track.from_points(circle(3.0), resolution=1e-4)


def test_constructor_copies_and_freezes_arrays(tracks):
    source = tracks["oval"]
    points = np.array(source.points)
    track = Track("copy", points, source.heading, source.curvature)
    assert points.flags.writeable
    assert not track.points.flags.writeable
    np.testing.assert_array_equal(track.points, source.points)
    with pytest.raises(TrackGeometryError, match="heading"):
        Track("short", points, source.heading[:-1], source.curvature)


def test_tight_turn_rejected():
    with pytest.raises(TrackGeometryError, match="radius"):
        Track.from_points(circle(1.1), "small")


@pytest.mark.parametrize(
    "points",
    [np.zeros((3, 2)), np.array([[0.0, 0.0], [1.0, 0.0], [1.0, float("nan")], [0.0, 1.0]]), np.zeros((5, 3))],
)
def test_malformed_points_rejected(points):
    with pytest.raises(TrackGeometryError):
        Track.from_points(points)


def test_lane_lengths_follow_turning(tracks):
    for name, track in tracks.items():
        # A counter-clockwise loop turns by 2 pi, so an offset o shortens it by 2 pi o.
        expected_right = track.length + 2.0 * math.pi * 0.5 * track.lane_width
        expected_left = track.length - 2.0 * math.pi * 0.5 * track.lane_width
        assert track.lane_length("right") == pytest.approx(expected_right, rel=2e-3), name
        assert track.lane_length("left") == pytest.approx(expected_left, rel=2e-3), name


def test_lane_offsets(tracks):
    track = tracks["oval"]
    assert track.lane_offset("right") == pytest.approx(-0.5 * track.lane_width)
    assert track.lane_offset("left") == pytest.approx(0.5 * track.lane_width)
    with pytest.raises(ValueError):
        track.lane_offset("centre")


# ----------------------------------------------------------------------
# Lane metrics from synthetic poses


def drive_poses(tracker, track, progresses, lateral):
    for progress in progresses:
        x, y, heading = track.pose_at(progress, lateral)
        tracker.update(x, y, heading)


def test_lap_counts_full_loop_only(tracks):
    track = tracks["oval"]
    tracker = LaneTracker(track, "right")
    lane = track.lane_offset("right")
    tracker.reset(*track.pose_at(0.0, lane))
    drive_poses(tracker, track, np.arange(0.0, 0.9 * track.length, 0.05), lane)
    assert tracker.lap_count == 0
    drive_poses(tracker, track, np.arange(0.9 * track.length, track.length + 0.5, 0.05), lane)
    assert tracker.lap_count == 1
    drive_poses(tracker, track, np.arange(track.length + 0.5, 2.0 * track.length + 0.5, 0.05), lane)
    assert tracker.lap_count == 2


def test_back_and_forth_counts_no_lap(tracks):
    track = tracks["oval"]
    tracker = LaneTracker(track, "right")
    lane = track.lane_offset("right")
    tracker.reset(*track.pose_at(-1.0, lane))
    for _ in range(5):
        drive_poses(tracker, track, np.arange(-1.0, 1.0, 0.05), lane)
        drive_poses(tracker, track, np.arange(1.0, -1.0, -0.05), lane)
    assert tracker.lap_count == 0
    # Ten 2 m passes along the outer lane, counted in both directions.
    assert 20.0 < tracker.state().distance < 22.0


def test_reverse_loop_counts_no_lap(tracks):
    track = tracks["curvy"]
    tracker = LaneTracker(track, "right")
    lane = track.lane_offset("right")
    tracker.reset(*track.pose_at(0.0, lane))
    drive_poses(tracker, track, np.arange(0.0, -1.5 * track.length, -0.05), lane)
    assert tracker.lap_count == 0


def test_start_past_line_needs_full_loop(tracks):
    track = tracks["oval"]
    tracker = LaneTracker(track, "right")
    lane = track.lane_offset("right")
    tracker.reset(*track.pose_at(5.0, lane))
    drive_poses(tracker, track, np.arange(5.0, track.length + 1.0, 0.05), lane)
    assert tracker.lap_count == 0  # Crossed the line but drove less than a loop.
    drive_poses(tracker, track, np.arange(track.length + 1.0, 2.0 * track.length + 0.2, 0.05), lane)
    assert tracker.lap_count == 1


def test_off_track_event_counted_on_entry(tracks):
    track = tracks["oval"]
    tracker = LaneTracker(track, "right")
    lane = track.lane_offset("right")
    tracker.reset(*track.pose_at(1.0, lane))
    assert not tracker.state().off_track
    drive_poses(tracker, track, np.arange(1.0, 2.0, 0.05), lane + 0.4)  # Out, many steps.
    state = tracker.state()
    assert state.off_track
    assert state.off_track_events == 1
    assert state.cross_track_error == pytest.approx(0.4, abs=0.01)
    drive_poses(tracker, track, np.arange(2.0, 3.0, 0.05), lane)  # Back in.
    assert not tracker.state().off_track
    drive_poses(tracker, track, np.arange(3.0, 4.0, 0.05), lane - 0.35)  # Out on the other side.
    state = tracker.state()
    assert state.off_track_events == 2
    assert state.cross_track_error == pytest.approx(-0.35, abs=0.01)


def test_heading_error_sign_and_wrap(tracks):
    track = tracks["oval"]
    tracker = LaneTracker(track, "right")
    x, y, heading = track.pose_at(2.0, track.lane_offset("right"))
    tracker.reset(x, y, heading + 0.2)
    assert tracker.state().heading_error == pytest.approx(0.2, abs=1e-3)
    tracker.reset(x, y, heading + math.pi + 0.1)
    assert tracker.state().heading_error == pytest.approx(-math.pi + 0.1, abs=1e-3)
