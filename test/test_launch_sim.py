"""launch_testing check of sim.launch.py: commands flow, a lap completes, every process exits cleanly.

Runs under `colcon test` (or `launch_test test/test_launch_sim.py`) where ROS 2's
launch_testing is installed and liquid_driver is installed in the ament index.
Plain pytest skips this file elsewhere.
"""

import time
import unittest
from pathlib import Path

import pytest

pytest.importorskip(
    "launch_testing", reason="ROS 2 launch_testing is not installed here")
pytest.importorskip("launch_ros", reason="ROS 2 launch_ros is not installed here")

import launch  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import rclpy  # noqa: E402
from ament_index_python.packages import PackageNotFoundError, get_package_prefix  # noqa: E402
from geometry_msgs.msg import Twist  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402

try:
    get_package_prefix("liquid_driver")
except PackageNotFoundError:
    pytest.skip("liquid_driver is not installed in the ament index (build it with colcon and "
                "source install/setup.bash)", allow_module_level=True)

SIM_LAUNCH = Path(__file__).resolve().parent.parent / "launch" / "sim.launch.py"
# One lap of the oval is about 24 m, and lock-step runs it faster than real time.
# The simulator runs until the tests end, so shutdown stops every process with SIGINT.
LAYOUT = "oval"
FIRST_COMMAND_TIMEOUT_S = 20.0
LAP_TIMEOUT_S = 180.0


@pytest.mark.launch_test
def generate_test_description():
    sim = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(str(SIM_LAUNCH)),
        launch_arguments={
            "layout": LAYOUT,
            "lockstep": "true",
        }.items(),
    )
    return launch.LaunchDescription([sim, launch_testing.actions.ReadyToTest()])


class TestSimLaunch(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("test_sim_launch_probe")

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_commands_published(self):
        commands = []
        subscription = self.node.create_subscription(Twist, "/cmd_vel", commands.append, 10)
        try:
            deadline = time.monotonic() + FIRST_COMMAND_TIMEOUT_S
            while time.monotonic() < deadline and not any(c.linear.x > 0.0 for c in commands):
                rclpy.spin_once(self.node, timeout_sec=0.1)
        finally:
            self.node.destroy_subscription(subscription)
        self.assertTrue(commands, f"no Twist on /cmd_vel within {FIRST_COMMAND_TIMEOUT_S} s")
        self.assertTrue(any(c.linear.x > 0.0 for c in commands),
                        "perception_node published only stop commands")

    def test_lap_completed(self, proc_output):
        proc_output.assertWaitFor("Lap 1 completed", timeout=LAP_TIMEOUT_S)
        proc_output.assertWaitFor("off_track_events=0", timeout=5.0)


@launch_testing.post_shutdown_test()
class TestSimLaunchShutdown(unittest.TestCase):

    def test_processes_exit_cleanly(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
