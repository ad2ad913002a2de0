"""Export the per-frame perception step of a policy to ONNX and TorchScript.

The exported graph is the whole step the perception node runs on each camera frame::

    (image (batch, 3, h, w) float32 in [0, 1], state (batch, state_size), dt (batch,) s)
        -> (curvature (batch, 1) in 1/m, new_state (batch, state_size))

It is traced from the PyTorch operators (never from the compiled kernels), with loops of
fixed length, so one graph serves every ``dt``. The checkpoint metadata (preprocessing,
policy config, wiring, training summary) travels inside the file: as the ONNX
``metadata_props`` entry :data:`METADATA_KEY`, and as the TorchScript extra file
:data:`TORCHSCRIPT_METADATA_FILE`. :class:`~liquid_driver.model.onnx_runtime.OnnxPolicy`
runs the ONNX file with onnxruntime and numpy only.

Command line::

    liquid-driver-export models/lane_keeper.safetensors --onnx out/lane_keeper.onnx \\
        [--torchscript out/lane_keeper.pt]

The ONNX export needs the ``onnx`` package, and its check needs ``onnxruntime``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint
from .onnx_runtime import INPUT_NAMES, METADATA_KEY, OUTPUT_NAMES
from .policy import DrivingPolicy

logger = logging.getLogger(__name__)

TORCHSCRIPT_METADATA_FILE = "liquid_driver.json"
# ONNX opset of the exported graph. onnxruntime 1.16 and later run opset 17.
DEFAULT_OPSET = 17
# Largest |exported - eager| accepted by verify_onnx, in the output's units.
DEFAULT_TOLERANCE = 1e-5

PathLike = Union[str, "os.PathLike[str]"]


class PerceptionStep(nn.Module):
    """One camera frame through the CNN and one controller step, PyTorch operators only.

    Args:
        policy: The policy to wrap. It is used as it is, so call ``policy.eval()`` first.
    """

    def __init__(self, policy: DrivingPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(
        self, image: torch.Tensor, state: torch.Tensor, dt: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(curvature (batch, 1) in 1/m, new_state)``. ``dt`` (batch,) is in seconds."""
        controller = self.policy.controller
        features = self.policy.cnn(image)  # (batch, feature_size)
        time = dt.reshape(-1, 1) / controller.time_scale_s  # (batch,) -> (batch, 1) cell time
        output, new_state = controller.export_step(features, state, time)
        return output[:, :1] * self.policy.output_scale, new_state


def example_inputs(policy: DrivingPolicy, batch_size: int = 1, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Return random ``(image, state, dt)`` of the exported graph's shapes."""
    generator = torch.Generator().manual_seed(seed)
    height, width = policy.input_size
    image = torch.rand(batch_size, 3, height, width, generator=generator)
    state = 0.5 * torch.randn(batch_size, policy.state_size, generator=generator)
    dt = 0.02 + 0.08 * torch.rand(batch_size, generator=generator)  # 12.5 to 50 Hz frames
    return image, state, dt


def _export_document(policy: DrivingPolicy, metadata: dict[str, Any] | None, opset: int | None) -> dict[str, Any]:
    """Return the JSON document stored with an exported model."""
    document = dict(metadata or {})
    document.setdefault("policy_config", policy.config.to_dict())
    document.setdefault("output_units", "curvature_1_per_m")
    height, width = policy.input_size
    document["export"] = {
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES),
        "image_height": height,
        "image_width": width,
        "state_size": policy.state_size,
        "dt_units": "s",
        "opset": opset,
        "torch_version": torch.__version__,
    }
    return document


def export_onnx(
    policy: DrivingPolicy,
    path: PathLike,
    metadata: dict[str, Any] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write the perception step of ``policy`` to an ONNX file and return its path.

    Args:
        policy: The policy. It is exported in eval mode and left in the mode it was in.
        path: Destination ``.onnx`` file.
        metadata: The checkpoint metadata (as returned by ``load_checkpoint``), stored
            as JSON in ``metadata_props`` under :data:`METADATA_KEY`. The ``preprocessing``
            section is what the runtime needs to prepare camera frames.
        opset: ONNX opset version.

    Raises:
        ImportError: the ``onnx`` package is missing.
        TypeError: ``metadata`` is not JSON-compatible.
    """
    import onnx

    path = Path(path)
    document = _export_document(policy, metadata, opset)
    try:
        text = json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"metadata for {path} is not JSON-compatible: {error}") from error

    was_training = policy.training
    policy.eval()
    step = PerceptionStep(policy)
    batch_axis = {0: "batch"}
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The legacy exporter warns that it is deprecated in favour of dynamo=True,
            # which needs onnxscript and exports this graph no better.
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            torch.onnx.export(
                step,
                example_inputs(policy),
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={name: batch_axis for name in INPUT_NAMES + OUTPUT_NAMES},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
    finally:
        policy.train(was_training)

    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = text
    model.producer_name = "liquid_driver"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    logger.info("wrote ONNX model %s (opset %d, %d bytes)", path, opset, path.stat().st_size)
    return path


def export_torchscript(
    policy: DrivingPolicy, path: PathLike, metadata: dict[str, Any] | None = None
) -> Path:
    """Write the perception step of ``policy`` as a traced TorchScript module.

    Load it with ``torch.jit.load(path, _extra_files={TORCHSCRIPT_METADATA_FILE: ""})``
    to get the metadata JSON back. The module takes and returns the tensors described
    in the module docstring.

    Raises:
        TypeError: ``metadata`` is not JSON-compatible.
    """
    path = Path(path)
    document = _export_document(policy, metadata, None)
    try:
        text = json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"metadata for {path} is not JSON-compatible: {error}") from error
    was_training = policy.training
    policy.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=FutureWarning)
            traced = torch.jit.trace(PerceptionStep(policy), example_inputs(policy), check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_METADATA_FILE: text})
    finally:
        policy.train(was_training)
    logger.info("wrote TorchScript model %s (%d bytes)", path, path.stat().st_size)
    return path


def eager_step(policy: DrivingPolicy, inputs: Sequence[torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """Run the eager PyTorch step on ``(image, state, dt)``; return numpy outputs."""
    with torch.no_grad():
        curvature, state = PerceptionStep(policy.eval())(*inputs)
    return curvature.numpy(), state.numpy()


def verify_onnx(policy: DrivingPolicy, path: PathLike, batch_size: int = 3, steps: int = 4) -> float:
    """Run the ONNX file with onnxruntime and return the largest difference from PyTorch.

    The check feeds ``steps`` frames in a row, each with its own per-sample ``dt``, and
    compares curvature (1/m) and state after every frame.

    Raises:
        ImportError: onnxruntime is missing.
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image, state, _ = example_inputs(policy, batch_size)
    expected_state = state.numpy()
    actual_state = expected_state.copy()
    largest = 0.0
    for index in range(steps):
        image, _, dt = example_inputs(policy, batch_size, seed=index + 1)
        expected_curvature, expected_state = eager_step(policy, (image, torch.from_numpy(expected_state), dt))
        feeds = {"image": image.numpy(), "state": actual_state, "dt": dt.numpy()}
        actual_curvature, actual_state = session.run(list(OUTPUT_NAMES), feeds)
        largest = max(
            largest,
            float(np.abs(actual_curvature - expected_curvature).max()),
            float(np.abs(actual_state - expected_state).max()),
        )
    return largest


def main(argv: Sequence[str] | None = None) -> int:
    """Export a checkpoint to ONNX and, optionally, TorchScript. Returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="liquid-driver-export",
        description="Export a liquid_driver checkpoint's perception step (image, state, dt "
        "-> curvature in 1/m, new state) to ONNX and TorchScript.",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint file written by save_checkpoint (.safetensors)")
    parser.add_argument("--onnx", type=Path, help="write the ONNX model to this file")
    parser.add_argument("--torchscript", type=Path, help="write the traced TorchScript model to this file")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help="largest accepted |onnxruntime - PyTorch| difference of curvature (1/m) and state "
        f"(default {DEFAULT_TOLERANCE:g})",
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime comparison")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.onnx is None and args.torchscript is None:
        parser.error("nothing to do: pass --onnx OUT.onnx and/or --torchscript OUT.pt")

    try:
        policy, metadata = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        logger.error("%s", error)
        return 1
    for output in (args.onnx, args.torchscript):
        if output is not None:
            output.parent.mkdir(parents=True, exist_ok=True)

    if args.onnx is not None:
        export_onnx(policy, args.onnx, metadata, opset=args.opset)
        if not args.no_verify:
            error = verify_onnx(policy, args.onnx)
            if error > args.tolerance:
                logger.error(
                    "onnxruntime output of %s differs from PyTorch by %.3g, more than the "
                    "tolerance %.3g. Try another --opset, or report the policy config.",
                    args.onnx, error, args.tolerance,
                )
                return 1
            logger.info("onnxruntime matches PyTorch to %.3g on %s", error, args.onnx)
    if args.torchscript is not None:
        export_torchscript(policy, args.torchscript, metadata)
    return 0


if __name__ == "__main__":
    sys.exit(main())
