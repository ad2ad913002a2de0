"""VisualBackProp saliency for the policy's CNN, independent of ROS 2.

VisualBackProp (Bojarski et al., "VisualBackProp: efficient visualization of
CNNs for autonomous driving", ICRA 2018) shows which input pixels the
convolutions respond to. It averages each conv layer's feature maps over
channels. Then, from the deepest layer up, it upsamples the running mask to
the next shallower layer's size and multiplies it by that layer's average. The paper
upsamples with a deconvolution of ones; this module uses bilinear
interpolation, which gives the same picture at a fraction of the code.

`saliency_similarity` compares two masks by their Pearson correlation, for
example the masks of a clean frame and of the same frame with pixel noise.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from liquid_driver.model.cnn import ConvHead


def conv_activations(cnn: ConvHead, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run the CNN and collect each conv layer's channel-averaged activation.

    Args:
        cnn: the policy's `ConvHead`.
        images: (1, 3, h, w) floats in [0, 1].

    Returns:
        (features (1, feature_size), maps): one (rows, columns) map per conv
        layer, shallowest first, taken after the layer's ReLU.
    """
    maps: list[torch.Tensor] = []

    def record(_module, _inputs, output):
        maps.append(output[0].mean(dim=0))  # (channels, rows, columns) -> (rows, columns)

    handles = [layer.register_forward_hook(record) for layer in cnn.conv if isinstance(layer, nn.ReLU)]
    try:
        features = cnn(images)
    finally:
        for handle in handles:
            handle.remove()
    return features, maps


def visual_backprop(maps: list[torch.Tensor], output_size: tuple[int, int]) -> np.ndarray:
    """Combine averaged conv maps into one saliency mask.

    Args:
        maps: (rows, columns) averaged activations, shallowest layer first.
        output_size: (height, width) of the mask in pixels, normally the model input.

    Returns:
        (height, width) float32 mask in [0, 1]; all zeros when no unit is active.

    Raises:
        ValueError: `maps` is empty.
    """
    if not maps:
        raise ValueError("visual_backprop needs at least one feature map; got none")
    mask = maps[-1]
    for shallower in reversed(maps[:-1]):
        # (rows, columns) -> (1, 1, rows, columns) for interpolate, then back.
        upsampled = nn.functional.interpolate(
            mask[None, None], size=tuple(shallower.shape), mode="bilinear", align_corners=False)[0, 0]
        mask = upsampled * shallower
    mask = nn.functional.interpolate(
        mask[None, None], size=tuple(output_size), mode="bilinear", align_corners=False)[0, 0]
    mask = mask.clamp_min(0.0)
    peak = float(mask.max())
    if peak > 0.0:
        mask = mask / peak
    return mask.numpy().astype(np.float32)


def saliency_overlay(frame: np.ndarray, mask: np.ndarray, strength: float = 0.6) -> np.ndarray:
    """Tint the salient pixels of an (h, w, 3) uint8 RGB frame red; return a new uint8 frame.

    Raises:
        ValueError: the mask is not (h, w).
    """
    if mask.shape != frame.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match frame shape {frame.shape[:2]}")
    heat = np.zeros_like(frame, dtype=np.float32)
    heat[..., 0] = 255.0 * mask
    blended = frame.astype(np.float32) * (1.0 - strength * mask[..., None]) + strength * heat
    return np.clip(blended, 0.0, 255.0).astype(np.uint8)


def saliency_similarity(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Compute the Pearson correlation of two saliency masks of the same shape.

    Pearson correlation of saliency maps is the measure of how much attention
    moves between clean and noisy input: 1 means the network looks at the same
    pixels in the same proportions, 0 means no linear relation between the two
    masks. Being invariant to scale and offset, it compares where the network
    looks, not how strongly the convolutions respond.

    A constant mask has no variance, so the correlation is undefined. Two equal
    constant masks count as 1.0, and a constant mask against a different mask
    (constant or not) as 0.0.

    Args:
        a, b: masks of equal shape, such as (h, w) outputs of `visual_backprop`;
            numpy arrays or CPU tensors.

    Returns:
        The correlation in [-1, 1].

    Raises:
        ValueError: the shapes differ, the masks are empty, or a mask contains
            NaN or infinite values.
    """
    first = np.asarray(a, dtype=np.float64)
    second = np.asarray(b, dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(
            f"saliency masks of shapes {first.shape} and {second.shape} cannot be compared; "
            "compute both at the same size, such as the model input size")
    if first.size == 0:
        raise ValueError(f"saliency masks of shape {first.shape} are empty; expected at least one pixel")
    if not (np.isfinite(first).all() and np.isfinite(second).all()):
        raise ValueError("saliency masks contain NaN or infinite values; expected finite masks")
    # ptp (max - min) is exact, so a constant mask is detected without a rounding threshold.
    first_constant = np.ptp(first) == 0.0
    second_constant = np.ptp(second) == 0.0
    if first_constant or second_constant:
        return 1.0 if first_constant and second_constant and first.flat[0] == second.flat[0] else 0.0
    first = first - first.mean()
    second = second - second.mean()
    correlation = float(np.sum(first * second) / math.sqrt(np.sum(first * first) * np.sum(second * second)))
    return max(-1.0, min(1.0, correlation))


__all__ = ["conv_activations", "saliency_overlay", "saliency_similarity", "visual_backprop"]
