"""ISBI 2012 challenge measures for binary membrane maps (1 = membrane, 0 = cell).

``pixel_error``: share of pixels whose membrane/cell label is wrong.

``rand_error``: 1 - the foreground-restricted Rand F-score (Arganda-Carreras et al.
2015, "V^Rand" with alpha = 0.5). Cell regions are the connected components
(4-connectivity) of the non-membrane pixels of each map. Only pixels inside a true cell
region count (foreground restriction); predicted membrane pixels there are singletons.
With ``n_ij`` the overlap counts of true region i and predicted region j,
``a_i = sum_j n_ij`` and ``b_j = sum_i n_ij``::

    precision = sum n_ij^2 / sum b_j^2     recall = sum n_ij^2 / sum a_i^2
    rand_error = 1 - 2 P R / (P + R)

These are the challenge's squared joint probabilities (self-pairs included). With
``count_self_pairs=False`` each sum drops the ``n`` self-pairs (only pairs of distinct
pixels count), which is the convention of ``skimage.metrics.adapted_rand_error``;
unetlab's tests check that variant against scikit-image exactly. The challenge also
thinned the boundaries before scoring; that step is not reproduced here.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _binary_stack(x, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.size == 0:
        raise ValueError(f"{name} must be a (H, W) map or a (N, H, W) stack, got shape "
                         f"{arr.shape}")
    values = np.unique(arr)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{name} must be a binary membrane map (1 = membrane, 0 = cell), "
                         f"found values {values[:10].tolist()}")
    return arr.astype(bool)


def _pair(pred, target):
    p, t = _binary_stack(pred, "pred"), _binary_stack(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred shape {p.shape} differs from target shape {t.shape}")
    return p, t


def pixel_error(pred, target) -> float:
    """Fraction of pixels where ``pred`` and ``target`` differ (both 0/1, 1 = membrane)."""
    p, t = _pair(pred, target)
    return float((p != t).mean())


def rand_error(pred, target, *, count_self_pairs: bool = True):
    """Foreground-restricted Rand error, averaged over the images of a (N, H, W) stack.

    Images whose target has no cell pixel are skipped; ``None`` if every image is.
    """
    p, t = _pair(pred, target)
    errors = [e for e in (_rand_error_2d(pi, ti, count_self_pairs) for pi, ti in zip(p, t))
              if e is not None]
    return float(np.mean(errors)) if errors else None


def _rand_error_2d(pred_membrane: np.ndarray, true_membrane: np.ndarray, self_pairs: bool):
    true_regions, _ = ndimage.label(~true_membrane)
    pred_regions, n_pred = ndimage.label(~pred_membrane)
    fg = true_regions > 0
    n = int(fg.sum())
    if n == 0:
        return None
    a = true_regions[fg].astype(np.int64)
    b = pred_regions[fg].astype(np.int64)
    singles = b == 0
    b[singles] = n_pred + 1 + np.arange(int(singles.sum()))
    _, n_ij = np.unique(a * (int(b.max()) + 1) + b, return_counts=True)
    _, a_i = np.unique(a, return_counts=True)
    _, b_j = np.unique(b, return_counts=True)
    drop = 0 if self_pairs else n
    s_ab = float((n_ij.astype(np.float64) ** 2).sum()) - drop
    s_a = float((a_i.astype(np.float64) ** 2).sum()) - drop
    s_b = float((b_j.astype(np.float64) ** 2).sum()) - drop
    precision = s_ab / s_b if s_b > 0 else 1.0
    recall = s_ab / s_a if s_a > 0 else 1.0
    if precision + recall == 0:
        return 1.0
    return 1.0 - 2 * precision * recall / (precision + recall)
