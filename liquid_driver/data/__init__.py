"""Camera images, rosbag2 recordings and training datasets, without rclpy.

Submodules load on first use of a name, so `from liquid_driver.data.images
import ...` in the simulator node does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> submodule that defines it.
_EXPORTS = {
    "BagWriter": "bag",
    "project_typestore": "bag",
    "serialize": "bag",
    "DatasetConfig": "dataset",
    "DatasetError": "dataset",
    "Episode": "dataset",
    "SkipReason": "dataset",
    "find_bags": "dataset",
    "load_episodes": "dataset",
    "resolve_topics": "dataset",
    "ImageFormatError": "images",
    "compressed_image_to_rgb": "images",
    "image_to_rgb": "images",
    "message_to_rgb": "images",
    "raw_image_to_rgb": "images",
    "rgb_to_image_fields": "images",
    "Preprocessing": "preprocess",
    "frames_to_tensor": "preprocess",
    "DatasetReport": "report",
    "WindowDataset": "windows",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module_name}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
