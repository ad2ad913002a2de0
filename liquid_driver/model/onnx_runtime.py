"""Run an exported policy with onnxruntime and numpy, without PyTorch.

This module imports neither torch nor anything that does, so a small rover computer
can drive from the ONNX file written by :func:`liquid_driver.model.export.export_onnx`
with only ``numpy`` and ``onnxruntime`` installed::

    policy = OnnxPolicy("lane_keeper.onnx")
    state = policy.initial_state()
    curvature, state = policy.step(image, state, dt=0.05)  # image (1, 3, h, w) in [0, 1]

``policy.metadata["preprocessing"]`` describes the crop and resize that turn a camera
frame into ``image``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Union

import numpy as np

logger = logging.getLogger(__name__)

# Graph input and output names, in order.
INPUT_NAMES = ("image", "state", "dt")
OUTPUT_NAMES = ("curvature", "new_state")
# metadata_props key of the JSON document with the checkpoint metadata.
METADATA_KEY = "liquid_driver"

PathLike = Union[str, "os.PathLike[str]"]


class OnnxPolicy:
    """Exported perception step run by onnxruntime: camera image to curvature in 1/m.

    Args:
        path: ONNX file written by ``export_onnx``.
        threads: onnxruntime intra-op threads. 1 keeps latency steady next to other
            processes on a small computer.

    Raises:
        ImportError: onnxruntime is not installed.
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not an exported liquid_driver policy.
    """

    def __init__(self, path: PathLike, threads: int = 1) -> None:
        try:
            import onnxruntime
        except ImportError as error:
            raise ImportError(
                "OnnxPolicy needs onnxruntime. Install it with 'pip install onnxruntime'."
            ) from error
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX model {self.path} not found. Check the path.")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        try:
            self.session = onnxruntime.InferenceSession(
                str(self.path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:  # onnxruntime raises its own exception types
            raise ValueError(f"ONNX model {self.path} could not be loaded: {error}") from error

        names = tuple(node.name for node in self.session.get_inputs())
        outputs = tuple(node.name for node in self.session.get_outputs())
        if names != INPUT_NAMES or outputs != OUTPUT_NAMES:
            raise ValueError(
                f"ONNX model {self.path} has inputs {names} and outputs {outputs}, expected "
                f"{INPUT_NAMES} and {OUTPUT_NAMES}. Export it with liquid-driver-export."
            )
        properties = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in properties:
            raise ValueError(
                f"ONNX model {self.path} has no {METADATA_KEY!r} metadata, so it was not "
                "written by liquid-driver-export. Export the checkpoint again."
            )
        try:
            self.metadata: dict[str, Any] = json.loads(properties[METADATA_KEY])
            export = self.metadata["export"]
            self.state_size = int(export["state_size"])
            self.image_size = (int(export["image_height"]), int(export["image_width"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"ONNX model {self.path} has corrupt {METADATA_KEY!r} metadata: {error}") from error
        logger.info(
            "loaded ONNX policy %s (image %dx%d, state size %d)",
            self.path, self.image_size[0], self.image_size[1], self.state_size,
        )

    @property
    def preprocessing(self) -> dict[str, Any]:
        """Crop and resize settings of the training data, as stored in the checkpoint."""
        return dict(self.metadata.get("preprocessing", {}))

    def initial_state(self) -> np.ndarray:
        """Return the resting state, float32 zeros of shape (1, state_size)."""
        return np.zeros((1, self.state_size), dtype=np.float32)

    def step(self, image: np.ndarray, state: np.ndarray, dt: float) -> tuple[float, np.ndarray]:
        """Process one camera frame.

        Args:
            image: (1, 3, height, width) floats in [0, 1], RGB, channels first.
            state: (1, state_size) state from :meth:`initial_state` or the previous step.
            dt: Seconds since the previous frame, finite and >= 0.

        Returns:
            ``(curvature, new_state)``: curvature in 1/m and the (1, state_size) state.

        Raises:
            TypeError: ``image`` is not a float array.
            ValueError: wrong shapes, or ``dt`` is negative or not finite.
        """
        image = self._check_image(image)
        state = np.asarray(state, dtype=np.float32)
        if state.shape != (1, self.state_size):
            raise ValueError(
                f"state has shape {state.shape}, expected (1, {self.state_size}). Use "
                "initial_state() for a new run."
            )
        seconds = float(dt)
        if not math.isfinite(seconds) or seconds < 0.0:
            raise ValueError(f"dt={dt!r} s is invalid: the elapsed time must be finite and >= 0")
        feeds = {"image": image, "state": state, "dt": np.array([seconds], dtype=np.float32)}
        curvature, new_state = self.session.run(list(OUTPUT_NAMES), feeds)
        return float(curvature[0, 0]), new_state

    def _check_image(self, image: Any) -> np.ndarray:
        array = np.asarray(image)
        if not np.issubdtype(array.dtype, np.floating):
            raise TypeError(
                f"image has dtype {array.dtype}. Pass floats in [0, 1], for example uint8 "
                "images divided by 255"
            )
        height, width = self.image_size
        if array.shape != (1, 3, height, width):
            raise ValueError(
                f"image has shape {array.shape}, expected (1, 3, {height}, {width}). Crop and "
                "resize the camera frame as metadata['preprocessing'] says, then move the "
                "channels first."
            )
        return np.ascontiguousarray(array, dtype=np.float32)
