"""Hausdorff distance at a percentile (HD95), the usual boundary metric in medical imaging.

Surfaces are the mask pixels with a neighbour outside the mask (the image edge counts as
outside, as in MONAI and medpy). HD_p = max of the two directed p-th percentile
surface-to-surface distances, in units of ``spacing`` (pixels by default; pass the
voxel sizes of an anisotropic volume, e.g. ``(0.8, 0.8, 2.5)`` mm, to get millimetres).

Label rules (docs/labels.md): ignored pixels belong to no mask; a class absent from
both masks is ``None`` and left out of means; if exactly one mask is empty the distance
is the image diagonal (the worst possible value) rather than inf.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage


def _as_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    return mask & ~ndimage.binary_erosion(mask, structure, border_value=0)


def _spacing(spacing, ndim: int) -> np.ndarray:
    """One positive voxel size per axis (a single number applies to every axis)."""
    if spacing is None:
        return np.ones(ndim)
    sp = np.asarray(spacing, dtype=np.float64).ravel()
    if sp.size == 1:
        sp = np.repeat(sp, ndim)
    if sp.size != ndim or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"spacing={spacing!r}: expected one positive voxel size or {ndim} "
                         "(one per axis)")
    return sp


def hausdorff_distance(pred, target, *, percentile: float = 95.0, spacing=None):
    """Percentile Hausdorff distance between two binary masks of one image (any dims).

    Returns None when both masks are empty and the image diagonal (in ``spacing``
    units) when exactly one is.
    """
    p, t = _as_numpy(pred).astype(bool), _as_numpy(target).astype(bool)
    if p.shape != t.shape:
        raise ValueError(f"pred shape {p.shape} differs from target shape {t.shape}")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile}")
    sp = _spacing(spacing, p.ndim)
    if not p.any() and not t.any():
        return None
    if not p.any() or not t.any():
        return float(math.sqrt(sum(((s - 1) * d) ** 2 for s, d in zip(p.shape, sp))))
    sp_, st = _surface(p), _surface(t)
    to_t = ndimage.distance_transform_edt(~st, sampling=sp)[sp_]
    to_p = ndimage.distance_transform_edt(~sp_, sampling=sp)[st]
    return float(max(np.percentile(to_t, percentile), np.percentile(to_p, percentile)))


def hausdorff95_per_class(pred, target, num_classes: int, *, ignore_index=None, spacing=None,
                          percentile: float = 95.0, classes=None) -> list:
    """Per-class HD95 averaged over the images of (N, *S) label maps; None if never present.

    ``spacing``: voxel sizes per spatial axis (the result is then in their units, e.g.
    mm); ``classes``: the classes to measure (default all; the others are None).
    """
    p, t = _as_numpy(pred), _as_numpy(target)
    if p.shape != t.shape or p.ndim < 2:
        raise ValueError(f"pred {p.shape} and target {t.shape} must both be (N, *spatial)")
    valid = np.ones(t.shape, bool) if ignore_index is None else t != ignore_index
    sums, counts = np.zeros(num_classes), np.zeros(num_classes, dtype=np.int64)
    for pi, ti, vi in zip(p, t, valid):
        for c in (range(num_classes) if classes is None else classes):
            d = hausdorff_distance((pi == c) & vi, (ti == c) & vi, percentile=percentile,
                                   spacing=spacing)
            if d is not None:
                sums[c] += d
                counts[c] += 1
    return [float(s / k) if k else None for s, k in zip(sums, counts)]
