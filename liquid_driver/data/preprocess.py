"""Crop and resize camera frames into the policy's input layout.

`Preprocessing` is stored in every checkpoint (`to_dict`) so that the
perception node rebuilds exactly the transform that the model was trained on
(`from_dict`). Crops are fractions of the source image, so one setting works
for any camera resolution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import cv2
import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["Preprocessing", "frames_to_tensor"]


@dataclass(frozen=True)
class Preprocessing:
    """Crop fractions of the source frame and the output size in pixels."""

    # Fraction of the source height removed at the top. That part of a forward
    # camera frame shows sky and background, which carry no lane information.
    crop_top: float = 0.35
    # Fraction of the source height removed at the bottom (for example a bonnet).
    crop_bottom: float = 0.0
    # Fractions of the source width removed at the left and right edges.
    crop_left: float = 0.0
    crop_right: float = 0.0
    # Output size in pixels. 48 x 128 keeps the lane lines a few pixels wide
    # while the CNN stays cheap enough for 20-30 Hz on a CPU.
    height: int = 48
    width: int = 128

    def __post_init__(self) -> None:
        for name in ("crop_top", "crop_bottom", "crop_left", "crop_right"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"Preprocessing.{name} must be a number, got {value!r}.")
            if not 0.0 <= float(value) < 1.0:
                raise ValueError(
                    f"invalid Preprocessing.{name} {value!r}; expected a fraction in [0, 1)."
                )
        for name in ("height", "width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Preprocessing.{name} must be an int, got {value!r}.")
            if value <= 0:
                raise ValueError(
                    f"invalid Preprocessing.{name} {value}; expected a positive pixel count."
                )
        if self.crop_top + self.crop_bottom >= 1.0:
            raise ValueError(
                f"invalid vertical crop: crop_top {self.crop_top} + crop_bottom "
                f"{self.crop_bottom} removes the whole image; keep the sum below 1."
            )
        if self.crop_left + self.crop_right >= 1.0:
            raise ValueError(
                f"invalid horizontal crop: crop_left {self.crop_left} + crop_right "
                f"{self.crop_right} removes the whole image; keep the sum below 1."
            )

    @property
    def output_size(self) -> tuple[int, int]:
        """Output (height, width) in pixels."""
        return self.height, self.width

    def crop_box(self, source_height: int, source_width: int) -> tuple[int, int, int, int]:
        """Compute the crop rows and columns for a source size.

        Returns:
            (top, bottom, left, right) pixel indices, so the crop is
            `rgb[top:bottom, left:right]`.

        Raises:
            ValueError: The crop leaves no pixel of a source this small.
        """
        top = int(round(self.crop_top * source_height))
        bottom = source_height - int(round(self.crop_bottom * source_height))
        left = int(round(self.crop_left * source_width))
        right = source_width - int(round(self.crop_right * source_width))
        if bottom <= top or right <= left:
            raise ValueError(
                f"crop of {self} leaves no pixels of a {source_width}x{source_height} "
                "source image; reduce the crop fractions."
            )
        return top, bottom, left, right

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Crop and resize one frame.

        Args:
            rgb: (H, W, 3) uint8 RGB frame of any size.

        Returns:
            (height, width, 3) uint8 RGB frame, resized with INTER_AREA (which
            averages source pixels when shrinking, so thin lane lines survive).

        Raises:
            TypeError: `rgb` is not a uint8 numpy array.
            ValueError: `rgb` is not (H, W, 3), or the crop leaves no pixels.
        """
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8:
            raise TypeError(
                f"Preprocessing.apply expects an (H, W, 3) uint8 array, got "
                f"{type(rgb).__name__} of dtype {getattr(rgb, 'dtype', None)}."
            )
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(
                f"invalid frame shape {rgb.shape}; Preprocessing.apply expects (H, W, 3) RGB."
            )
        top, bottom, left, right = self.crop_box(rgb.shape[0], rgb.shape[1])
        cropped = np.ascontiguousarray(rgb[top:bottom, left:right])
        if cropped.shape[0] == self.height and cropped.shape[1] == self.width:
            return cropped
        # cv2.resize takes the size as (width, height).
        return cv2.resize(cropped, (self.width, self.height), interpolation=cv2.INTER_AREA)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-compatible dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Preprocessing:
        """Build from a dict written by `to_dict`; missing keys take the defaults.

        Raises:
            TypeError: `values` is not a mapping, or a value has the wrong type.
            ValueError: A key is unknown or a value is out of range.
        """
        if not isinstance(values, Mapping):
            raise TypeError(
                f"Preprocessing.from_dict expects a mapping, got {type(values).__name__}."
            )
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"unknown Preprocessing keys {unknown}; valid keys are {sorted(known)}."
            )
        return cls(**dict(values))


def frames_to_tensor(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Convert uint8 frames (..., h, w, 3) to the model layout (..., 3, h, w) in [0, 1].

    Works for a single frame (h, w, 3), a batch (B, h, w, 3) and sequences
    (B, T, h, w, 3). A numpy input shares memory with the uint8 tensor before
    the float conversion, so the only copy is the float result.

    Raises:
        TypeError: The frames are not uint8.
        ValueError: The last axis is not the 3 colour channels.
    """
    # Imported here, not at module level, so the onnxruntime backend of the
    # perception node can use Preprocessing on a rover without torch.
    import torch

    tensor = torch.from_numpy(frames) if isinstance(frames, np.ndarray) else frames
    if tensor.dtype != torch.uint8:
        raise TypeError(f"frames_to_tensor expects uint8 frames, got {tensor.dtype}.")
    if tensor.ndim < 3 or tensor.shape[-1] != 3:
        raise ValueError(
            f"invalid frame shape {tuple(tensor.shape)}; expected (..., h, w, 3) RGB."
        )
    # (..., h, w, 3) -> (..., 3, h, w); reordering the uint8 bytes first is cheaper than
    # reordering floats, and the float conversion then writes contiguous memory once.
    channels_first = tensor.movedim(-1, -3).contiguous()
    return channels_first.to(torch.float32).mul_(1.0 / 255.0)
