"""Boundary F1 (BF) score of Csurka et al. 2013, as used by the SegNet paper.

For each image and class: boundary pixels of the predicted and of the true class mask;
precision = share of predicted boundary pixels within ``tolerance * image diagonal`` of
a true boundary pixel, recall the converse, BF = their F1. Everything is torch (CPU or
GPU): boundaries by a 3x3 erosion (max-pool), tolerance matching by convolving with a
disk of the tolerance radius.

Label rules (docs/labels.md): ignored pixels belong to no class mask, so changing the
prediction there changes nothing; a class absent from both masks of an image is not
counted for that image; if exactly one of the two masks is empty the BF is 0; if both
masks are non-empty but neither has a boundary pixel (both fill the valid region) it
is 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def boundary_pixels(mask: torch.Tensor) -> torch.Tensor:
    """Pixels of ``mask`` (B, *S) bool with a neighbour (8- or 26-connected) outside it.

    The image edge is not a boundary (the mask is replicate-padded).
    """
    d = mask.ndim - 1
    if d not in _POOL:
        raise ValueError(f"masks must be (B, *spatial) with 1-3 spatial dims, got {mask.ndim}-D")
    outside = (~mask).unsqueeze(1).float()
    outside = F.pad(outside, (1, 1) * d, mode="replicate")
    touched = _POOL[d](outside, kernel_size=3, stride=1)[:, 0] > 0
    return mask & touched


def disk_kernel(radius: float, spatial_dims: int, device=None) -> torch.Tensor:
    """A (1, 1, k, ..., k) float kernel of the offsets within Euclidean ``radius``."""
    r = max(0, math.floor(radius))
    axis = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    grids = torch.meshgrid(*([axis] * spatial_dims), indexing="ij")
    dist2 = sum(g**2 for g in grids)
    return (dist2 <= radius**2 + 1e-9).float()[None, None]


def dilate(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Binary dilation of (B, *S) bool masks by a disk (ball) of ``radius`` pixels."""
    d = mask.ndim - 1
    kernel = disk_kernel(radius, d, mask.device)
    r = kernel.shape[-1] // 2
    out = _CONV[d](mask.unsqueeze(1).float(), kernel, padding=r)
    return out[:, 0] > 0.5


def tolerance_radius(spatial_shape, tolerance: float) -> float:
    """``tolerance`` times the image diagonal, in pixels."""
    return tolerance * math.sqrt(sum(s * s for s in spatial_shape))


def boundary_f1_scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                       valid: torch.Tensor | None = None, tolerance: float = 0.0075):
    """Per-image, per-class BF scores.

    Args:
        pred, target: (N, *S) integer label maps (ignored target pixels may hold anything).
        valid: (N, *S) bool, False where the target is ignored.
    Returns:
        ``(f1, counted)``, both (N, num_classes); ``f1`` is 0 where ``counted`` is False.
    """
    if valid is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    n = pred.shape[0]
    radius = tolerance_radius(pred.shape[1:], tolerance)
    f1 = torch.zeros(n, num_classes, dtype=torch.float64, device=pred.device)
    counted = torch.zeros(n, num_classes, dtype=torch.bool, device=pred.device)
    for c in range(num_classes):
        pm = (pred == c) & valid
        tm = (target == c) & valid
        p_any = pm.flatten(1).any(1)
        t_any = tm.flatten(1).any(1)
        rows = p_any | t_any
        if not bool(rows.any()):
            continue
        pm, tm = pm[rows], tm[rows]
        pb, tb = boundary_pixels(pm), boundary_pixels(tm)
        n_pb = pb.flatten(1).sum(1).double()
        n_tb = tb.flatten(1).sum(1).double()
        hit_p = (pb & dilate(tb, radius)).flatten(1).sum(1).double()
        hit_t = (tb & dilate(pb, radius)).flatten(1).sum(1).double()
        precision = hit_p / n_pb.clamp_min(1)
        recall = hit_t / n_tb.clamp_min(1)
        score = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
        both_filled = (n_pb == 0) & (n_tb == 0) & p_any[rows] & t_any[rows]
        one_empty = p_any[rows] ^ t_any[rows]
        score = torch.where(both_filled, torch.ones_like(score), score)
        score = torch.where(one_empty, torch.zeros_like(score), score)
        f1[rows, c] = score
        counted[rows, c] = True
    return f1, counted
