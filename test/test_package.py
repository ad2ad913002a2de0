"""Package layout checks: what colcon installs and what launch files refer to."""

from __future__ import annotations

import ast
import importlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_PACKAGES = ["model", "sim", "data", "train"]


def console_scripts() -> dict[str, str]:
    """Parse setup.py's console_scripts into {name: "module:function"}."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = [ast.literal_eval(item) for item in value.elts]
                    return dict(entry.replace(" ", "").split("=", 1) for entry in entries)
    raise AssertionError("setup.py declares no console_scripts")


def test_versions_agree():
    xml_version = ET.parse(ROOT / "package.xml").getroot().findtext("version")
    import liquid_driver

    assert xml_version == liquid_driver.__version__


def test_package_xml_dependencies():
    root = ET.parse(ROOT / "package.xml").getroot()
    assert root.get("format") == "3"
    exec_depends = {e.text for e in root.findall("exec_depend")}
    for dependency in ["rclpy", "sensor_msgs", "geometry_msgs", "nav_msgs", "std_msgs",
                       "std_srvs", "diagnostic_msgs"]:
        assert dependency in exec_depends
    test_depends = {e.text for e in root.findall("test_depend")}
    assert "launch_testing" in test_depends
    assert root.findtext("export/build_type") == "ament_python"


def test_console_scripts_resolve():
    scripts = console_scripts()
    for name in ["sim_node", "perception_node", "expert_node", "recorder_node",
                 "liquid-driver-train"]:
        assert name in scripts
    for name, target in scripts.items():
        module_name, function = target.split(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, function)), f"{name} -> {target} is not callable"


def test_setup_cfg_installs_scripts_for_ros2_run():
    text = (ROOT / "setup.cfg").read_text()
    assert "install_scripts=$base/lib/liquid_driver" in text


@pytest.mark.parametrize("package", CORE_PACKAGES)
def test_core_never_imports_rclpy(package):
    pattern = re.compile(r"^\s*(import|from)\s+rclpy\b", re.MULTILINE)
    for path in (ROOT / "liquid_driver" / package).rglob("*.py"):
        assert not pattern.search(path.read_text()), f"{path} imports rclpy"


def launch_node_executables(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node":
            for keyword in node.keywords:
                if keyword.arg == "executable" and isinstance(keyword.value, ast.Constant):
                    found.append(keyword.value.value)
    return found


@pytest.mark.parametrize("path", sorted((ROOT / "launch").glob("*.launch.py")), ids=lambda p: p.name)
def test_launch_nodes_are_installed(path):
    executables = launch_node_executables(path)
    assert executables, f"{path.name} starts no Node"
    scripts = console_scripts()
    for executable in executables:
        assert executable in scripts, f"{path.name} starts {executable}, which setup.py does not install"


def test_shipped_model_is_installed():
    models = sorted((ROOT / "models").glob("*.safetensors"))
    assert models, "models/ holds no .safetensors checkpoint"
    setup_text = (ROOT / "setup.py").read_text()
    assert 'glob("models/*.safetensors")' in setup_text


def test_launch_file_loads_with_ros2_launch():
    # The repository's own launch/ folder imports as an empty namespace package,
    # so check for the real module's API, not just the name.
    launch = pytest.importorskip("launch", reason="ROS 2 launch is not installed here")
    if not hasattr(launch, "LaunchDescription"):
        pytest.skip("ROS 2 launch is not installed here")
    pytest.importorskip("launch_ros", reason="launch_ros is not installed here")
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    source = PythonLaunchDescriptionSource(str(ROOT / "launch" / "sim.launch.py"))
    description = source.get_launch_description(launch.LaunchContext())
    assert description.entities
