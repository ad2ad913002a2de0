"""Test-wide environment: DDS on this machine only, headless MuJoCo."""

import os

# Set before rclpy or mujoco is imported by any test module.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("MUJOCO_GL", "egl")
# A domain of its own per test run, so two runs on one machine never see each
# other's nodes. Valid domain IDs on Linux go up to 101 with default ports.
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))

import re
from pathlib import Path

import pytest

# Test modules that start nodes or talk over DDS; `make test-jazzy` runs these
# against a second ROS 2 distribution.
_ROS_MODULE = re.compile(r"\b(rclpy|ros_helpers|NodeProcess|launch_ros|launch_testing)\b")


def pytest_configure(config):
    config.addinivalue_line("markers", "ros: the test talks to ROS 2 (nodes, DDS or launch)")


def pytest_collection_modifyitems(config, items):
    checked: dict[Path, bool] = {}
    for item in items:
        path = Path(str(item.fspath))
        if path not in checked:
            checked[path] = bool(_ROS_MODULE.search(path.read_text(encoding="utf-8")))
        if checked[path]:
            item.add_marker(pytest.mark.ros)
