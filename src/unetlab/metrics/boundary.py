"""Boundary F1 (BF) score of Csurka et al. 2013, as used by the SegNet paper.

For each image and class: boundary pixels of the predicted and of the true class mask;
precision = share of predicted boundary pixels within ``tolerance * image diagonal`` of
a true boundary pixel, recall the converse, BF = their F1. Everything is torch (CPU or
GPU): boundaries by a 3x3 erosion (max-pool), tolerance matching by dilating with a
disk of the tolerance radius (max-pools along one axis, shifted along the others).

Label rules (docs/labels.md): ignored pixels belong to no class mask, so changing the
prediction there changes nothing; a class absent from both masks of an image is not
counted for that image; if exactly one of the two masks is empty the BF is 0; if both
masks are non-empty but neither has a boundary pixel (both fill the valid region) it
is 1.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F

_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


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


def _shifted_or(out: torch.Tensor, src: torch.Tensor, offset) -> None:
    """``out[x] |= src[x - offset]`` over the leading spatial axes (in place)."""
    dst_idx, src_idx = [slice(None)], [slice(None)]
    for o, size in zip(offset, out.shape[1:]):
        if abs(o) >= size:
            return
        dst_idx.append(slice(max(0, o), size + min(0, o)))
        src_idx.append(slice(max(0, -o), size - max(0, o)))
    out[tuple(dst_idx)] |= src[tuple(src_idx)]


def dilate(mask: torch.Tensor, radius: float) -> torch.Tensor:
    """Binary dilation of (B, *S) bool masks by a disk (ball) of ``radius`` pixels.

    The disk is a union of 1-D segments along the last axis: one max-pool per segment
    width, then shifted ORs along the other axes (exact, and far cheaper than a
    convolution with the disk on CPU).
    """
    r = math.floor(radius + 1e-9)
    if r <= 0:
        return mask.clone()
    d = mask.ndim - 1
    flat = mask.reshape(-1, 1, mask.shape[-1]).float()
    rows: dict[int, torch.Tensor] = {}
    out = torch.zeros_like(mask)
    grid = itertools.product(range(-r, r + 1), repeat=d - 1)
    for offset in grid:
        rest = radius**2 - sum(o * o for o in offset)
        if rest < -1e-9:
            continue
        w = math.floor(math.sqrt(max(rest, 0.0)) + 1e-9)
        if w not in rows:
            pooled = F.max_pool1d(flat, kernel_size=2 * w + 1, stride=1, padding=w) if w else flat
            rows[w] = pooled.reshape(mask.shape) > 0.5
        _shifted_or(out, rows[w], offset)
    return out


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
