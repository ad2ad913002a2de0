"""Locations of files the package ships (models, configs), installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

PACKAGE_NAME = "liquid_driver"
DEFAULT_MODEL_NAME = "lane_keeper.safetensors"


def share_directory() -> Path:
    """Return the directory holding models/, config/ and launch/.

    An installed ROS 2 package has them under its ament share directory; a
    source checkout used through a virtual environment has them beside the
    Python package.
    """
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "models").is_dir() and (checkout / "package.xml").is_file():
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE_NAME))
    except (ImportError, LookupError) as error:
        raise FileNotFoundError(
            f"cannot find the {PACKAGE_NAME} share directory: not a source checkout and "
            f"not an installed ROS 2 package ({error}); build the workspace with colcon "
            "and source install/setup.bash, or pass an explicit model path"
        ) from error


def default_model_path() -> Path:
    """Return the path of the model shipped in models/."""
    return share_directory() / "models" / DEFAULT_MODEL_NAME
