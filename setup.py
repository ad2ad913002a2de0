"""Build script for the liquid_driver ament_python package."""

from glob import glob
import re
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE_NAME = "liquid_driver"


def read_version() -> str:
    """Read the version from package.xml so the two never disagree."""
    text = Path(__file__).with_name("package.xml").read_text(encoding="utf-8")
    match = re.search(r"<version>([^<]+)</version>", text)
    if match is None:
        raise RuntimeError("package.xml has no <version> element")
    return match.group(1).strip()


setup(
    name=PACKAGE_NAME,
    version=read_version(),
    packages=find_packages(exclude=["test", "test.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
        (f"share/{PACKAGE_NAME}", ["package.xml"]),
        (f"share/{PACKAGE_NAME}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE_NAME}/config", glob("config/*.yaml") + glob("config/*.json")),
        (f"share/{PACKAGE_NAME}/gazebo/worlds", glob("gazebo/worlds/*.sdf")),
        (f"share/{PACKAGE_NAME}/gazebo/models/liquid_car",
         glob("gazebo/models/liquid_car/*.sdf")),
        (f"share/{PACKAGE_NAME}/models", glob("models/*.safetensors") + glob("models/*.md")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="liquid_driver maintainers",
    maintainer_email="maintainers@liquid-driver.dev",
    description="Lane keeping from a forward camera with a CfC Neural Circuit Policy.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "sim_node = liquid_driver.nodes.sim_node:main",
            "perception_node = liquid_driver.nodes.perception_node:main",
            "expert_node = liquid_driver.nodes.expert_node:main",
            "recorder_node = liquid_driver.nodes.recorder_node:main",
            "liquid-driver-train = liquid_driver.train.cli:main",
            "liquid-driver-collect = liquid_driver.tools.collect:main",
            "liquid-driver-demo = liquid_driver.tools.demo:main",
            "liquid-driver-export = liquid_driver.model.export:main",
            "liquid-driver-eval = liquid_driver.eval.cli:main",
            "liquid-driver-saliency = liquid_driver.tools.saliency:main",
            "liquid-driver-compare = liquid_driver.compare.cli:main",
        ],
    },
)
