"""Driving policy: CNN feature extractor plus a liquid (CfC or LTC) neural circuit policy.

The package uses only PyTorch and numpy. Nothing here imports rclpy.
"""

from .base import DEFAULT_TIME_SCALE_S, ParameterCount, WiredCell
from .cfc import CfCCell, LeCunTanh
from .checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from .cnn import ConvHead, ConvHeadConfig, standardize_images
from .ltc import LTCCell
from .policy import OUTPUT_UNITS, ControllerConfig, DrivingPolicy, PolicyConfig
from .wiring import (
    NCP,
    AutoNCP,
    FullyConnected,
    Layer,
    Random,
    Wiring,
    auto_ncp_sizes,
    wiring_from_dict,
)

__all__ = [
    "DEFAULT_TIME_SCALE_S",
    "FORMAT_VERSION",
    "NCP",
    "OUTPUT_UNITS",
    "AutoNCP",
    "CfCCell",
    "CheckpointError",
    "ControllerConfig",
    "ConvHead",
    "ConvHeadConfig",
    "DrivingPolicy",
    "FullyConnected",
    "LTCCell",
    "Layer",
    "LeCunTanh",
    "ParameterCount",
    "PolicyConfig",
    "Random",
    "WiredCell",
    "Wiring",
    "auto_ncp_sizes",
    "load_checkpoint",
    "save_checkpoint",
    "standardize_images",
    "wiring_from_dict",
]
