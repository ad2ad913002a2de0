"""Driving policy: CNN feature extractor plus a liquid (CfC or LTC) neural circuit policy.

The package uses PyTorch, numpy and, where installed, numba. Nothing here imports rclpy.
Names are imported on first use, so ``liquid_driver.model.onnx_runtime`` (numpy and
onnxruntime only) can be imported on a computer without PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> submodule that defines it.
_EXPORTS = {
    "DEFAULT_TIME_SCALE_S": "base",
    "ParameterCount": "base",
    "WiredCell": "base",
    "CfCCell": "cfc",
    "LeCunTanh": "cfc",
    "FORMAT_VERSION": "checkpoint",
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "ConvHead": "cnn",
    "ConvHeadConfig": "cnn",
    "standardize_images": "cnn",
    "export_onnx": "export",
    "export_torchscript": "export",
    "LTCCell": "ltc",
    "OnnxPolicy": "onnx_runtime",
    "OUTPUT_UNITS": "policy",
    "ControllerConfig": "policy",
    "DrivingPolicy": "policy",
    "PolicyConfig": "policy",
    "NCP": "wiring",
    "AutoNCP": "wiring",
    "FullyConnected": "wiring",
    "Layer": "wiring",
    "Random": "wiring",
    "Wiring": "wiring",
    "auto_ncp_sizes": "wiring",
    "wiring_from_dict": "wiring",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module_name}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
