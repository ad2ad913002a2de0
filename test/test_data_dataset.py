"""Loading episodes from bags: pairing, skipping, splitting, topic selection, windows."""

import json

import numpy as np
import pytest
import torch

from liquid_driver.data.bag import BagWriter, project_typestore, serialize
from liquid_driver.data.dataset import (
    DatasetConfig,
    DatasetError,
    SkipReason,
    find_bags,
    load_episodes,
    resolve_topics,
)
from liquid_driver.data.preprocess import Preprocessing
from liquid_driver.data.synthetic import (
    compressed_image_message,
    header,
    image_message,
    string_message,
    twist_message,
    twist_stamped_message,
)
from liquid_driver.data.windows import WindowDataset

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
TWIST_TYPE = "geometry_msgs/msg/Twist"
TWIST_STAMPED_TYPE = "geometry_msgs/msg/TwistStamped"
STRING_TYPE = "std_msgs/msg/String"
ACKERMANN_TYPE = "ackermann_msgs/msg/AckermannDriveStamped"

# Small frames keep the tests fast; a constant frame stays constant after resizing.
PREP = Preprocessing(crop_top=0.0, height=6, width=8)
PERIOD = 0.05  # s, 20 Hz camera
LOG_OFFSET = 1000.0  # s, log (receive) clock minus the simulation clock of the stamps


def ns(seconds):
    return int(round(seconds * 1e9))


def frame_image(value, stamp):
    """12 x 16 frame filled with `value`, so a loaded frame shows which message it came from."""
    return image_message(np.full((12, 16, 3), value % 256, dtype=np.uint8), stamp)


def scripted_curvature(index):
    return 0.5 * np.sin(index / 5.0)


def write_messages(path, topics, messages, storage="mcap"):
    """Write (topic, log_s, msg) tuples; `topics` maps topic names to types."""
    with BagWriter(path, storage=storage) as bag:
        for topic, msgtype in topics.items():
            bag.add_topic(topic, msgtype)
        for topic, log_s, msg in sorted(messages, key=lambda item: item[1]):
            bag.write(topic, ns(log_s), serialize(msg, topics[topic]))


@pytest.fixture(scope="module")
def scripted_bag(tmp_path_factory):
    """100 frames exercising every filter and split (see the expected values in the tests).

    Frames 0-1 come before the first command and 20-24 are in perturbation mode.
    Frames 40-59 have no new command, and 49-59 exceed the 0.5 s command age.
    Frames 60-69 are nearly stationary. Stamps restart at frame 80 (a simulator
    reset), and frame 90 repeats the stamp of frame 89.
    """
    path = tmp_path_factory.mktemp("bags") / "scripted"
    topics = {"/camera/image_raw": IMAGE_TYPE, "/cmd_vel": TWIST_TYPE, "/driving_mode": STRING_TYPE}
    messages = []
    for index in range(100):
        log_s = LOG_OFFSET + 10.0 + PERIOD * index
        if index < 80:
            stamp = 10.0 + PERIOD * index
        elif index == 90:
            stamp = 10.0 + PERIOD * (89 - 80)
        else:
            stamp = 10.0 + PERIOD * (index - 80)
        messages.append(("/camera/image_raw", log_s, frame_image(index, stamp)))
        if index >= 2 and not 40 <= index < 60:
            speed = 0.01 if 60 <= index < 70 else 1.0
            curvature = scripted_curvature(index)
            messages.append(("/cmd_vel", log_s - 0.001, twist_message(speed, curvature * speed)))
    first_log = LOG_OFFSET + 10.0
    messages.append(("/driving_mode", first_log - 0.002, string_message("expert")))
    messages.append(("/driving_mode", first_log + PERIOD * 20 - 0.0005, string_message("perturbation")))
    messages.append(("/driving_mode", first_log + PERIOD * 25 - 0.0005, string_message("expert")))
    write_messages(path, topics, messages)
    return path


@pytest.fixture(scope="module")
def scripted_load(scripted_bag):
    return load_episodes([scripted_bag], PREP)


def frame_indices(episode):
    """Source frame index of each loaded frame (the fill value)."""
    return [int(value) for value in episode.frames[:, 0, 0, 0]]


def test_episode_split_points(scripted_load):
    episodes, _ = scripted_load
    assert len(episodes) == 3
    assert frame_indices(episodes[0]) == list(range(2, 20)) + list(range(25, 49))
    assert frame_indices(episodes[1]) == list(range(70, 80))
    assert frame_indices(episodes[2]) == [index for index in range(80, 100) if index != 90]


def test_skip_counts(scripted_load):
    _, report = scripted_load
    assert report.frames_read == 100
    assert report.frames_used == 71
    assert report.skipped == {
        SkipReason.NO_COMMAND: 2,
        SkipReason.EXCLUDED_MODE: 5,
        SkipReason.STALE_COMMAND: 11,
        SkipReason.LOW_SPEED: 10,
        SkipReason.DUPLICATE_STAMP: 1,
    }
    assert report.skipped_modes == {"perturbation": 5}
    assert report.splits == {"gap": 1, "stamp_backwards": 1}
    assert report.episode_lengths == [42, 10, 19]


def test_commands_paired_by_log_time(scripted_load):
    episodes, _ = scripted_load
    first = episodes[0]
    expected = [scripted_curvature(index) for index in range(2, 20)]
    expected += [scripted_curvature(index) for index in range(25, 40)]
    # Frames 40-48 still use the last command, logged just before frame 39.
    expected += [scripted_curvature(39)] * 9
    np.testing.assert_allclose(first.curvature, expected, atol=1e-6)
    np.testing.assert_allclose(first.speed, 1.0)


def test_dt_from_header_stamps(scripted_load):
    episodes, report = scripted_load
    first = episodes[0]
    np.testing.assert_allclose(first.dt[0], PERIOD, atol=1e-6)
    # Frame 25 follows frame 19 after the five perturbation frames.
    np.testing.assert_allclose(first.dt[18], 6 * PERIOD, atol=1e-6)
    np.testing.assert_allclose(np.delete(first.dt, 18), PERIOD, atol=1e-6)
    # After the duplicate stamp is dropped, frame 91 follows frame 89.
    third = episodes[2]
    np.testing.assert_allclose(third.dt[10], 2 * PERIOD, atol=1e-6)
    np.testing.assert_allclose(third.stamps[0], 10.0, atol=1e-9)
    assert report.bags[0].time_source == "header"
    assert report.frame_rate == pytest.approx(20.0, rel=1e-3)


def test_episode_arrays(scripted_load):
    episodes, _ = scripted_load
    for episode in episodes:
        count = len(episode)
        assert episode.frames.shape == (count, 6, 8, 3)
        assert episode.frames.dtype == np.uint8
        assert episode.dt.shape == episode.curvature.shape == episode.speed.shape == (count,)
        assert episode.source == "scripted"


def test_report_json(scripted_load, tmp_path):
    _, report = scripted_load
    report.save_json(tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["frames_used"] == 71
    assert data["bags"][0]["mode_topic"] == "/driving_mode"
    assert sum(data["curvature_histogram"]["counts"]) == 71
    assert data["curvature_histogram"]["edges"][0] == "-inf"
    assert sum(data["turn_fractions"].values()) == pytest.approx(1.0)


def test_ignore_modes_uses_perturbation_frames(scripted_bag):
    episodes, report = load_episodes([scripted_bag], PREP, DatasetConfig(ignore_modes=True))
    assert frame_indices(episodes[0]) == list(range(2, 49))
    assert SkipReason.EXCLUDED_MODE not in report.skipped
    assert report.bags[0].mode_topic is None


def test_custom_command_age_and_gap(scripted_bag):
    config = DatasetConfig(max_command_age=0.2, max_gap=0.2)
    episodes, report = load_episodes([scripted_bag], PREP, config)
    # The 0.3 s hole left by the perturbation frames now splits the first episode.
    assert frame_indices(episodes[0]) == list(range(2, 20))
    assert frame_indices(episodes[1]) == list(range(25, 43))
    assert report.skipped[SkipReason.STALE_COMMAND] == 17


def _simple_bag(path, command_type=TWIST_TYPE, count=30, storage="mcap", zero_stamps=False, first_stamp=5.0):
    topics = {"/camera/image_raw": IMAGE_TYPE, "/cmd": command_type}
    messages = []
    for index in range(count):
        log_s = 50.0 + PERIOD * index
        stamp = 0.0 if zero_stamps else first_stamp + PERIOD * index
        messages.append(("/camera/image_raw", log_s, frame_image(index, stamp)))
        curvature = scripted_curvature(index)
        if command_type == TWIST_TYPE:
            command = twist_message(2.0, 2.0 * curvature)
        elif command_type == TWIST_STAMPED_TYPE:
            command = twist_stamped_message(2.0, 2.0 * curvature, stamp)
        else:
            command = ackermann_message(np.arctan(curvature * 0.26), 2.0)
        messages.append(("/cmd", log_s - 0.002, command))
    write_messages(path, topics, messages, storage)


def ackermann_message(steering_angle, speed):
    types = project_typestore().types
    drive = types["ackermann_msgs/msg/AckermannDrive"](
        steering_angle=float(steering_angle), steering_angle_velocity=0.0, speed=float(speed),
        acceleration=0.0, jerk=0.0,
    )
    return types["ackermann_msgs/msg/AckermannDriveStamped"](header=header(0.0), drive=drive)


def test_sqlite3_twist_stamped_without_modes(tmp_path):
    _simple_bag(tmp_path / "bag", TWIST_STAMPED_TYPE, storage="sqlite3")
    episodes, report = load_episodes([tmp_path / "bag"], PREP)
    assert len(episodes) == 1
    assert frame_indices(episodes[0]) == list(range(30))
    np.testing.assert_allclose(episodes[0].curvature, [scripted_curvature(i) for i in range(30)], atol=1e-6)
    np.testing.assert_allclose(episodes[0].speed, 2.0)
    assert report.bags[0].mode_topic is None
    assert report.bags[0].command_type == TWIST_STAMPED_TYPE


def test_ackermann_curvature_uses_wheelbase(tmp_path):
    _simple_bag(tmp_path / "bag", ACKERMANN_TYPE)
    episodes, _ = load_episodes([tmp_path / "bag"], PREP, DatasetConfig(wheelbase=0.26))
    np.testing.assert_allclose(episodes[0].curvature, [scripted_curvature(i) for i in range(30)], atol=1e-5)
    with pytest.raises(DatasetError, match="wheelbase"):
        load_episodes([tmp_path / "bag"], PREP)


def test_zero_stamps_fall_back_to_log_time(tmp_path):
    _simple_bag(tmp_path / "bag", zero_stamps=True)
    episodes, report = load_episodes([tmp_path / "bag"], PREP)
    assert report.bags[0].time_source == "log"
    assert len(episodes) == 1
    np.testing.assert_allclose(episodes[0].dt, PERIOD, atol=1e-6)


def test_stamps_starting_at_zero_are_valid(tmp_path):
    _simple_bag(tmp_path / "bag", first_stamp=0.0)
    episodes, report = load_episodes([tmp_path / "bag"], PREP)
    assert report.bags[0].time_source == "header"
    np.testing.assert_allclose(episodes[0].stamps, PERIOD * np.arange(30), atol=1e-9)


def test_each_bag_starts_episode(tmp_path):
    _simple_bag(tmp_path / "first")
    _simple_bag(tmp_path / "second", count=20)
    episodes, report = load_episodes([tmp_path / "first", tmp_path / "second"], PREP)
    assert [len(episode) for episode in episodes] == [30, 20]
    assert [episode.source for episode in episodes] == ["first", "second"]
    assert len(report.bags) == 2
    assert report.splits == {}


def test_camera_dropout_splits_episode(tmp_path):
    topics = {"/camera/image_raw": IMAGE_TYPE, "/cmd_vel": TWIST_TYPE}
    messages = []
    for index in range(40):
        stamp = PERIOD * index + (1.0 if index >= 20 else 0.0)  # 1 s without frames after frame 19
        messages.append(("/camera/image_raw", stamp + 0.01, frame_image(index, stamp)))
    for step in range(int(3.0 / 0.02)):  # commands at 50 Hz throughout
        messages.append(("/cmd_vel", 0.02 * step, twist_message(1.0, scripted_curvature(step))))
    write_messages(tmp_path / "bag", topics, messages)
    episodes, report = load_episodes([tmp_path / "bag"], PREP)
    assert [frame_indices(episode) for episode in episodes] == [list(range(20)), list(range(20, 40))]
    assert report.splits == {"gap": 1}
    assert report.max_gap == pytest.approx(1.05, abs=1e-6)


def test_compressed_image_bag(tmp_path):
    topics = {"/camera/image_raw/compressed": COMPRESSED_TYPE, "/cmd_vel": TWIST_TYPE}
    messages = []
    for index in range(10):
        stamp = 1.0 + PERIOD * index
        rgb = np.full((24, 32, 3), (20 * index, 100, 200), dtype=np.uint8)
        messages.append(("/camera/image_raw/compressed", stamp, compressed_image_message(rgb, stamp, "jpeg")))
        messages.append(("/cmd_vel", stamp - 0.001, twist_message(1.0, scripted_curvature(index))))
    write_messages(tmp_path / "bag", topics, messages)
    episodes, report = load_episodes([tmp_path / "bag"], PREP)
    assert report.bags[0].image_type == COMPRESSED_TYPE
    red = episodes[0].frames[:, 3, 4, 0].astype(int)
    np.testing.assert_allclose(red, 20 * np.arange(10), atol=6)
    assert np.abs(episodes[0].frames[:, 3, 4, 2].astype(int) - 200).max() <= 6


def test_invalid_images_are_skipped(tmp_path):
    topics = {"/camera/image_raw": IMAGE_TYPE, "/cmd_vel": TWIST_TYPE}
    messages = []
    for index in range(10):
        stamp = 1.0 + PERIOD * index
        image = frame_image(index, stamp)
        if index == 4:
            image = image_message(np.zeros((12, 16, 3), np.uint8), stamp, encoding="rgb16")
        messages.append(("/camera/image_raw", stamp, image))
        messages.append(("/cmd_vel", stamp - 0.001, twist_message(1.0, scripted_curvature(index))))
    write_messages(tmp_path / "bag", topics, messages)
    episodes, report = load_episodes([tmp_path / "bag"], PREP)
    assert report.skipped == {SkipReason.INVALID_IMAGE: 1}
    assert frame_indices(episodes[0]) == [0, 1, 2, 3, 5, 6, 7, 8, 9]


def test_constant_curvature_rejected(tmp_path):
    topics = {"/camera/image_raw": IMAGE_TYPE, "/cmd_vel": TWIST_TYPE}
    messages = []
    for index in range(10):
        stamp = 1.0 + PERIOD * index
        messages.append(("/camera/image_raw", stamp, frame_image(index, stamp)))
        messages.append(("/cmd_vel", stamp - 0.001, twist_message(1.0, 0.0)))
    write_messages(tmp_path / "bag", topics, messages)
    with pytest.raises(DatasetError, match="curvature is 0 1/m in all 10 used frames"):
        load_episodes([tmp_path / "bag"], PREP)


def test_no_usable_frames_lists_reasons(scripted_bag):
    config = DatasetConfig(excluded_modes=("expert", "perturbation"))
    with pytest.raises(DatasetError, match="no usable frames.*excluded_mode"):
        load_episodes([scripted_bag], PREP, config)


def test_missing_bag_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_episodes([tmp_path / "nothing"], PREP)


def test_folder_without_bags(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no rosbag2 bag in"):
        load_episodes([tmp_path / "empty"], PREP)


def test_file_instead_of_bag(tmp_path):
    _simple_bag(tmp_path / "bag")
    mcap_file = next((tmp_path / "bag").glob("*.mcap"))
    with pytest.raises(DatasetError, match="is a file, not a rosbag2 directory"):
        load_episodes([mcap_file], PREP)


def test_unreadable_bag(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metadata.yaml").write_text("not: [a rosbag2 file\n")
    with pytest.raises(DatasetError, match="failed to open bag"):
        load_episodes([tmp_path / "broken"], PREP)


def test_folder_of_bags(tmp_path):
    _simple_bag(tmp_path / "demos" / "b_second", count=20)
    _simple_bag(tmp_path / "demos" / "a_first")
    (tmp_path / "demos" / "logs" / "a_first").mkdir(parents=True)
    (tmp_path / "demos" / "logs" / "a_first" / "sim_node.log").write_text("log line\n")
    assert find_bags([tmp_path / "demos"]) == [tmp_path / "demos" / "a_first", tmp_path / "demos" / "b_second"]
    episodes, report = load_episodes([tmp_path / "demos"], PREP)
    assert [episode.source for episode in episodes] == ["a_first", "b_second"]
    assert len(report.bags) == 2
    # A shell glob over the folder also names the log folder, which is skipped.
    globbed = sorted((tmp_path / "demos").iterdir())
    assert find_bags(globbed) == [tmp_path / "demos" / "a_first", tmp_path / "demos" / "b_second"]


def test_missing_command_topic_lists_topics(tmp_path):
    topics = {"/camera/image_raw": IMAGE_TYPE, "/odom_text": STRING_TYPE}
    write_messages(tmp_path / "bag", topics, [("/camera/image_raw", 1.0, frame_image(0, 1.0))])
    with pytest.raises(DatasetError) as error:
        load_episodes([tmp_path / "bag"], PREP)
    message = str(error.value)
    assert "no command topic" in message
    assert "/camera/image_raw [sensor_msgs/msg/Image]" in message
    assert "/odom_text [std_msgs/msg/String]" in message


# Topic sets for resolve_topics; each maps to the expected (image, command, mode) or an error.
TOPIC_CASES = {
    "by type": (
        {"/cam": IMAGE_TYPE, "/teleop": TWIST_TYPE, "/info": "sensor_msgs/msg/CameraInfo"},
        DatasetConfig(),
        ("/cam", "/teleop", None),
    ),
    "project names win": (
        {"/camera/image_raw": IMAGE_TYPE, "/cam2": IMAGE_TYPE, "/cmd_vel": TWIST_TYPE,
         "/cmd_vel_nav": TWIST_TYPE, "/driving_mode": STRING_TYPE, "/note": STRING_TYPE},
        DatasetConfig(),
        ("/camera/image_raw", "/cmd_vel", "/driving_mode"),
    ),
    "raw image over compressed": (
        {"/front/image": IMAGE_TYPE, "/front/image/compressed": COMPRESSED_TYPE, "/cmd": TWIST_TYPE},
        DatasetConfig(),
        ("/front/image", "/cmd", None),
    ),
    "by name": (
        {"/a": IMAGE_TYPE, "/b": IMAGE_TYPE, "/c": TWIST_STAMPED_TYPE, "/d": TWIST_TYPE, "/m": STRING_TYPE},
        DatasetConfig(image_topic="/b", command_topic="/c", mode_topic="/m"),
        ("/b", "/c", "/m"),
    ),
    "ambiguous images": (
        {"/left/image": IMAGE_TYPE, "/right/image": IMAGE_TYPE, "/cmd": TWIST_TYPE},
        DatasetConfig(),
        r"ambiguous image topic.*/left/image, /right/image.*image_topic",
    ),
    "ambiguous commands": (
        {"/cam": IMAGE_TYPE, "/a": TWIST_TYPE, "/b": TWIST_STAMPED_TYPE},
        DatasetConfig(),
        r"ambiguous command topic.*/a, /b",
    ),
    "ambiguous modes": (
        {"/cam": IMAGE_TYPE, "/cmd": TWIST_TYPE, "/x": STRING_TYPE, "/y": STRING_TYPE},
        DatasetConfig(),
        r"ambiguous mode topic",
    ),
    "named topic missing": (
        {"/cam": IMAGE_TYPE, "/cmd": TWIST_TYPE},
        DatasetConfig(image_topic="/camera/image_raw"),
        r"image topic '/camera/image_raw' not found.*/cam \[sensor_msgs/msg/Image\]",
    ),
    "named topic wrong type": (
        {"/cam": IMAGE_TYPE, "/cmd": TWIST_TYPE},
        DatasetConfig(command_topic="/cam"),
        r"command topic '/cam'.*has type sensor_msgs/msg/Image",
    ),
    "no image": (
        {"/cmd": TWIST_TYPE},
        DatasetConfig(),
        r"no image topic.*sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage",
    ),
}


@pytest.mark.parametrize("case", TOPIC_CASES.values(), ids=list(TOPIC_CASES))
def test_resolve_topics(case):
    topics, config, expected = case
    if isinstance(expected, str):
        with pytest.raises(DatasetError, match="(?s)" + expected) as error:
            resolve_topics(topics, config, "demo")
        for name, msgtype in topics.items():
            assert f"{name} [{msgtype}]" in str(error.value)
        return
    selected = resolve_topics(topics, config, "demo")
    assert (selected.image, selected.command, selected.mode) == expected
    assert selected.image_type == topics[expected[0]]


@pytest.mark.parametrize(
    "values, pattern",
    [
        ({"min_speed": 0.0}, "min_speed"),
        ({"max_gap": float("nan")}, "max_gap"),
        ({"max_command_age": -1.0}, "max_command_age"),
        ({"wheelbase": 0.0}, "wheelbase"),
    ],
)
def test_config_validation(values, pattern):
    with pytest.raises(ValueError, match=pattern):
        DatasetConfig(**values)


def test_config_rejects_single_mode_string():
    with pytest.raises(TypeError, match="tuple of mode names"):
        DatasetConfig(excluded_modes="perturbation")


def test_windows_cover_every_frame(scripted_load):
    episodes, _ = scripted_load
    windows = WindowDataset(episodes, seq_len=16, stride=8)
    assert windows.short_episodes == 1  # the 10-frame episode
    covered = set()
    for index in range(len(windows)):
        frames, dt, curvature = windows[index]
        assert frames.shape == (16, 6, 8, 3)
        assert frames.dtype == torch.uint8
        assert dt.shape == curvature.shape == (16,)
        covered.update(int(value) for value in frames[:, 0, 0, 0])
    expected = set(frame_indices(episodes[0])) | set(frame_indices(episodes[2]))
    assert covered == expected


def test_windows_are_consecutive(scripted_load):
    episodes, _ = scripted_load
    windows = WindowDataset(episodes, seq_len=5, stride=5)
    first_episode = frame_indices(episodes[0])
    frames, _, curvature = windows[0]
    assert [int(value) for value in frames[:, 0, 0, 0]] == first_episode[:5]
    np.testing.assert_allclose(curvature.numpy(), episodes[0].curvature[:5])
    # The last window of the 42-frame episode ends on its last frame.
    last_of_first = 42 // 5
    frames, _, _ = windows[last_of_first]
    assert [int(value) for value in frames[:, 0, 0, 0]] == first_episode[-5:]


def test_windows_float_frames_and_batches(scripted_load):
    episodes, _ = scripted_load
    windows = WindowDataset(episodes, seq_len=4, stride=2, float_frames=True)
    frames, dt, curvature = windows.get_batch([0, 3, 5])
    assert frames.shape == (3, 4, 3, 6, 8)
    assert frames.dtype == torch.float32
    assert float(frames.min()) >= 0.0
    assert float(frames.max()) <= 1.0
    assert dt.shape == curvature.shape == (3, 4)
    assert dt.dtype == curvature.dtype == torch.float32


def test_windows_shift_keeps_coverage(scripted_load):
    episodes, _ = scripted_load
    windows = WindowDataset(episodes, seq_len=8, stride=6)
    rng = np.random.default_rng(5)
    for _ in range(3):
        windows.shift_windows(rng)
        covered = set()
        for index in range(len(windows)):
            covered.update(int(value) for value in windows[index][0][:, 0, 0, 0])
        assert covered == {index for episode in episodes for index in frame_indices(episode)}


@pytest.mark.parametrize("values", [{"seq_len": 0}, {"stride": 0}, {"seq_len": 2.5}])
def test_windows_reject_bad_sizes(scripted_load, values):
    episodes, _ = scripted_load
    with pytest.raises(ValueError):
        WindowDataset(episodes, **values)


def test_window_index_out_of_range(scripted_load):
    episodes, _ = scripted_load
    windows = WindowDataset(episodes, seq_len=16, stride=16)
    with pytest.raises(IndexError):
        windows[len(windows)]
