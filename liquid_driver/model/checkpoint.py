"""Single-file policy checkpoints: safetensors weights plus JSON metadata, no pickle.

The file is a standard safetensors file. Its header metadata (a string-to-string map)
has one key, ``liquid_driver``, whose value is a JSON document with:

* ``format_version``: :data:`FORMAT_VERSION`;
* ``output_units``: ``"curvature_1_per_m"``;
* ``policy_config``: :meth:`PolicyConfig.to_dict` output;
* ``wiring``: :meth:`Wiring.to_dict` output, adjacency matrices included;
* ``weights_sha256``: a digest of every tensor's name, dtype, shape and bytes;
* ``preprocessing`` and ``training``: dicts from the caller (empty by default), plus
  any other JSON-compatible sections the caller passes.

Loading parses JSON and raw tensor bytes only, so it never runs code from the file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .policy import OUTPUT_UNITS, DrivingPolicy, PolicyConfig
from .wiring import wiring_from_dict

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
METADATA_KEY = "liquid_driver"
# mkstemp creates files readable by the owner only, but checkpoints are shared data files.
_FILE_MODE = 0o644
# safetensors files start with the header length as an unsigned 64-bit little-endian int.
_HEADER_LENGTH_BYTES = 8
# The safetensors library rejects headers above 100 MB. A policy header is a few kB.
_MAX_HEADER_BYTES = 100_000_000
_RESERVED_KEYS = ("format_version", "output_units", "policy_config", "wiring", "weights_sha256")
_REQUIRED_KEYS = _RESERVED_KEYS + ("preprocessing", "training")

PathLike = Union[str, "os.PathLike[str]"]


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, of another format, or does not fit the policy."""


def weights_digest(tensors: dict[str, torch.Tensor]) -> str:
    """Return the SHA-256 hex digest of the tensors' names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: PathLike, policy: DrivingPolicy, metadata: dict[str, Any] | None = None) -> None:
    """Write ``policy`` and ``metadata`` to ``path`` atomically (temporary file + rename).

    Args:
        path: Destination file, conventionally ending in ``.safetensors``.
        policy: The policy to save.
        metadata: Optional JSON-compatible sections, typically ``preprocessing`` and
            ``training`` dicts. Keys reserved by the format raise ValueError.

    Raises:
        ValueError: ``metadata`` uses a reserved key.
        TypeError: ``metadata`` is not JSON-compatible.
    """
    path = Path(path)
    sections = dict(metadata or {})
    reserved = sorted(set(sections) & set(_RESERVED_KEYS))
    if reserved:
        raise ValueError(f"metadata keys {reserved} are reserved by the checkpoint format. Rename them.")
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in policy.state_dict().items()}
    document = {
        "format_version": FORMAT_VERSION,
        "output_units": OUTPUT_UNITS,
        "policy_config": policy.config.to_dict(),
        "wiring": None if policy.wiring is None else policy.wiring.to_dict(),
        "weights_sha256": weights_digest(tensors),
        "preprocessing": {},
        "training": {},
        **sections,
    }
    try:
        text = json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"checkpoint metadata for {path} is not JSON-compatible: {error}") from error
    payload = save_safetensors(tensors, metadata={METADATA_KEY: text})

    directory = path.parent if str(path.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    logger.info("saved checkpoint %s (%d tensors, %d bytes)", path, len(tensors), len(payload))


def _read_file(path: Path) -> tuple[bytes, dict[str, Any]]:
    """Return the file's bytes and its parsed safetensors header.

    The header is checked before the rest is read, so a large file of another kind is
    rejected without loading it into memory.
    """
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            prefix = file.read(_HEADER_LENGTH_BYTES)
            if len(prefix) < _HEADER_LENGTH_BYTES:
                raise CheckpointError(
                    f"checkpoint {path} is {size} bytes long, too short for a safetensors file. "
                    "It is truncated or not a checkpoint."
                )
            header_length = int.from_bytes(prefix, "little")
            if header_length > min(size - _HEADER_LENGTH_BYTES, _MAX_HEADER_BYTES):
                raise CheckpointError(
                    f"checkpoint {path} declares a {header_length}-byte header but has only {size} "
                    "bytes. It is truncated or not a safetensors file."
                )
            header_bytes = file.read(header_length)
            try:
                header = json.loads(header_bytes)
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise CheckpointError(
                    f"checkpoint {path} has no valid safetensors header ({error}). It is corrupt "
                    "or not a safetensors file."
                ) from error
            data = prefix + header_bytes + file.read()
    except FileNotFoundError as error:
        raise CheckpointError(f"checkpoint {path} not found. Check the path.") from error
    except OSError as error:
        raise CheckpointError(f"checkpoint {path} could not be read: {error}") from error
    return data, header


def _read_document(path: Path, header: Any) -> dict[str, Any]:
    """Return the liquid_driver document from a parsed safetensors header."""
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or METADATA_KEY not in metadata:
        raise CheckpointError(
            f"{path} is a safetensors file without {METADATA_KEY!r} metadata, so it is not a "
            "liquid_driver checkpoint. Save policies with save_checkpoint()."
        )
    try:
        document = json.loads(metadata[METADATA_KEY])
    except (TypeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"checkpoint {path} has corrupt {METADATA_KEY!r} metadata: {error}") from error
    if not isinstance(document, dict):
        raise CheckpointError(f"checkpoint {path} metadata is a {type(document).__name__}, expected a JSON object")

    version = document.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version!r}, but this code reads version "
            f"{FORMAT_VERSION}. Load it with the liquid_driver release that wrote it."
        )
    missing = [key for key in _REQUIRED_KEYS if key not in document]
    if missing:
        raise CheckpointError(f"checkpoint {path} metadata is missing {missing}, so the file is corrupt")
    if document["output_units"] != OUTPUT_UNITS:
        raise CheckpointError(
            f"checkpoint {path} outputs {document['output_units']!r}, expected {OUTPUT_UNITS!r}"
        )
    return document


def _check_tensors(path: Path, tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{name}: file {tuple(tensors[name].shape)}, policy {tuple(expected[name].shape)}"
        for name in sorted(set(tensors) & set(expected))
        if tensors[name].shape != expected[name].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected}")
    if mismatched:
        problems.append(f"shape mismatches {mismatched}")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} weights do not match its policy_config and wiring: "
            + ", ".join(problems)
            + ". The file was edited or written by incompatible code. Re-save it with save_checkpoint()."
        )
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"checkpoint {path} tensor {name!r} contains NaN or infinite values")


def load_checkpoint(
    path: PathLike, map_location: str | torch.device = "cpu"
) -> tuple[DrivingPolicy, dict[str, Any]]:
    """Load a policy saved by :func:`save_checkpoint`.

    Args:
        path: The checkpoint file.
        map_location: Device for the returned policy.

    Returns:
        ``(policy, metadata)``: the policy in eval mode, and the metadata document with
        ``format_version``, ``output_units``, ``policy_config``, ``wiring``,
        ``preprocessing``, ``training`` and any other saved sections.

    Raises:
        CheckpointError: the file is missing, unreadable, truncated, corrupt, not a
            liquid_driver checkpoint, of another format version, or its weights do not
            match its metadata.
    """
    path = Path(path)
    data, header = _read_file(path)
    document = _read_document(path, header)
    try:
        tensors = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {path} tensor data is truncated or corrupt: {error}") from error
    if weights_digest(tensors) != document["weights_sha256"]:
        raise CheckpointError(
            f"checkpoint {path} weights do not match the checksum in its metadata. The file is "
            "corrupt or was edited, so restore it from a good copy."
        )

    try:
        config = PolicyConfig.from_dict(document["policy_config"])
        # Baseline controllers (LSTM, feedforward) store no wiring.
        wiring = None if document["wiring"] is None else wiring_from_dict(document["wiring"])
        policy = DrivingPolicy(config, wiring=wiring)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} has an invalid policy_config or wiring: {error}") from error

    _check_tensors(path, tensors, policy.state_dict())
    policy.load_state_dict(tensors, strict=True)
    policy.to(map_location)
    policy.eval()
    logger.info("loaded checkpoint %s (format version %d)", path, FORMAT_VERSION)
    return policy, document
