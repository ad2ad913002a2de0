"""Test-wide environment: DDS on this machine only, headless MuJoCo."""

import os

# Set before rclpy or mujoco is imported by any test module.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")
# A domain of its own per test run, so two runs on one machine never see each
# other's nodes. Valid domain IDs on Linux go up to 101 with default ports.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
