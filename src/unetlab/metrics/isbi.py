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

``ChallengeScores``: the ISBI 2012 leaderboard's own (pre-2015) pixel and Rand errors,
the columns the U-Net paper's Table 1 reports. They score a *probability map*, not a
label map, as the challenge's Fiji code (``trainableSegmentation.metrics``) does: the
map of P(cell) is binarised at thresholds 0.0, 0.1, ..., 1.0; at each threshold the
counts are pooled over the whole stack, and the best F-score over thresholds is kept::

    pixel error = 1 - max_t F1(cell pixels)                  (positive class: cell)
    Rand error  = 1 - max_t F1(pixel pairs in the same cell) (foreground-restricted)

For the Rand score, cells are the 4-connected components of the cell pixels; only pairs
of pixels inside true cells count, and predicted membrane pixels join no pair. Pixel
error here is therefore not the share of wrong pixels (``pixel_error`` above): it is an
F-score on the cell class, at the best threshold.
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


def _square_sums(pred_cell: np.ndarray, true_regions: np.ndarray):
    """``(sum n_ij^2, sum a_i^2, sum b_j^2, n)`` over the pixels inside true cells
    (``true_regions`` > 0, the labelled true cells), with predicted membrane pixels as
    singletons; ``None`` when the target has no cell."""
    pred_regions, n_pred = ndimage.label(pred_cell)
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
    return tuple(float((c.astype(np.float64) ** 2).sum()) for c in (n_ij, a_i, b_j)) + (n,)


def _f_score(tp: float, fp: float, fn: float) -> float:
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _rand_error_2d(pred_membrane: np.ndarray, true_membrane: np.ndarray, self_pairs: bool):
    sums = _square_sums(~pred_membrane, ndimage.label(~true_membrane)[0])
    if sums is None:
        return None
    s_ab, s_a, s_b, n = sums
    drop = 0 if self_pairs else n
    s_ab, s_a, s_b = s_ab - drop, s_a - drop, s_b - drop
    precision = s_ab / s_b if s_b > 0 else 1.0
    recall = s_ab / s_a if s_a > 0 else 1.0
    if precision + recall == 0:
        return 1.0
    return 1.0 - 2 * precision * recall / (precision + recall)


CHALLENGE_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))


class ChallengeScores:
    """The ISBI 2012 leaderboard's pixel and Rand errors, accumulated image by image.

    ``update(membrane_prob, target)`` takes P(membrane) in [0, 1] and the 0/1 membrane
    target, (H, W) or (N, H, W); ``compute()`` returns ``{"pixel_error", "rand_error",
    "pixel_threshold", "rand_threshold"}`` (thresholds on P(cell), as the challenge
    binarised). Counts are pooled over every image seen, per threshold, so the memory
    used does not grow with the number of images.
    """

    def __init__(self, thresholds=CHALLENGE_THRESHOLDS):
        self.thresholds = tuple(float(t) for t in thresholds)
        if not self.thresholds:
            raise ValueError("thresholds must not be empty")
        # per threshold: pixel tp, fp, fn; pair tp, pairs predicted together, true pairs
        self.counts = np.zeros((len(self.thresholds), 6), dtype=np.float64)

    def update(self, membrane_prob, target) -> None:
        prob = membrane_prob.detach().float().cpu().numpy() \
            if hasattr(membrane_prob, "detach") else np.asarray(membrane_prob)
        prob = prob[None] if prob.ndim == 2 else prob
        true = _binary_stack(target, "target")
        if prob.shape != true.shape:
            raise ValueError(f"probability shape {prob.shape} differs from target shape "
                             f"{true.shape}")
        if prob.size and (np.nanmin(prob) < 0 or np.nanmax(prob) > 1 or np.isnan(prob).any()):
            raise ValueError("membrane_prob must hold probabilities in [0, 1]")
        cell_prob = 1.0 - prob.astype(np.float64)
        true_cell = ~true
        true_regions = [ndimage.label(c)[0] for c in true_cell]  # the same at every threshold
        for k, t in enumerate(self.thresholds):
            pred_cell = cell_prob > t
            self.counts[k, 0] += float((pred_cell & true_cell).sum())
            self.counts[k, 1] += float((pred_cell & ~true_cell).sum())
            self.counts[k, 2] += float((~pred_cell & true_cell).sum())
            for p_img, regions in zip(pred_cell, true_regions):
                sums = _square_sums(p_img, regions)
                if sums is None:
                    continue
                s_ab, s_a, s_b, n = sums
                self.counts[k, 3] += (s_ab - n) / 2  # pairs together in both
                self.counts[k, 4] += (s_b - n) / 2   # pairs together in the prediction
                self.counts[k, 5] += (s_a - n) / 2   # pairs together in the truth

    def compute(self) -> dict:
        pixel = [_f_score(tp, fp, fn) for tp, fp, fn in self.counts[:, :3]]
        rand = [_f_score(tp, pred - tp, true - tp) for tp, pred, true in self.counts[:, 3:]]
        kp, kr = int(np.argmax(pixel)), int(np.argmax(rand))
        return {"pixel_error": 1.0 - pixel[kp], "rand_error": 1.0 - rand[kr],
                "pixel_threshold": self.thresholds[kp], "rand_threshold": self.thresholds[kr]}


def challenge_scores(membrane_prob, target, thresholds=CHALLENGE_THRESHOLDS) -> dict:
    """:class:`ChallengeScores` for one stack: ``{"pixel_error", "rand_error", ...}``."""
    scores = ChallengeScores(thresholds)
    scores.update(membrane_prob, target)
    return scores.compute()
