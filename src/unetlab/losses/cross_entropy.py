"""Cross-entropy with class weights, label smoothing, ignore_index and pixel weights.

The pixel weights are usually the U-Net paper's border weight map
(:func:`unetlab.losses.border_weight_map`, re-exported here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_mode, check_pixel_weight, class_weight_tensor, prepare_target
from .weight_map import border_weight_map

__all__ = ["CrossEntropyLoss", "border_weight_map", "weighted_mean"]


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(w * v) / sum(w)``; 0 (with a gradient path) when every weight is 0."""
    total = weights.sum()
    return (values * weights).sum() / total.clamp_min(1e-12)


class CrossEntropyLoss(nn.Module):
    """Pixel-wise cross-entropy on logits: ``sum_x w(x) CE(x) / sum_x w(x)``.

    ``w(x) = class_weights[target(x)] * pixel_weight(x)`` over valid (not ignored)
    pixels. Without pixel weights this equals ``torch.nn.CrossEntropyLoss(weight=...)``.
    With label smoothing ``eps`` the per-pixel term is
    ``(1 - eps) * (-log p_t) + eps * mean_c(-log p_c)``, weighted by the pixel's own
    class weight (torch instead weights the smoothing term by every class's weight; the
    two agree when ``class_weights`` is None).

    Modes: "multiclass" (softmax; target (N, *S)), "binary" (one logit channel, sigmoid;
    class_weights = (background, foreground)) and "multilabel" (sigmoid per channel;
    class_weights = one per channel). Smoothing for sigmoid modes moves the 0/1 targets
    to ``eps/2`` and ``1 - eps/2``.

    Args:
        use_pixel_weight: sets ``uses_pixel_weight`` so a trainer passes the dataset's
            "weight" maps (the "border_ce" loss of :func:`build_loss`).
    """

    def __init__(self, mode: str = "multiclass", *, class_weights=None,
                 ignore_index: int | None = None, label_smoothing: float = 0.0,
                 use_pixel_weight: bool = False):
        super().__init__()
        check_mode(mode)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.mode, self.class_weights, self.ignore_index = mode, class_weights, ignore_index
        self.label_smoothing = float(label_smoothing)
        self.uses_pixel_weight = bool(use_pixel_weight)

    def forward(self, logits, target, pixel_weight=None):
        prep = prepare_target(logits, target, self.mode, self.ignore_index)
        eps = self.label_smoothing
        if self.mode == "multiclass":
            logp = F.log_softmax(logits, dim=1)
            nll = -logp.gather(1, prep.labels.unsqueeze(1))
            per_pixel = (1 - eps) * nll + eps * (-logp.mean(dim=1, keepdim=True))
        else:
            soft = prep.target * (1 - eps) + eps / 2
            per_pixel = F.binary_cross_entropy_with_logits(logits, soft, reduction="none")
        weight = prep.valid
        cw = class_weight_tensor(self.class_weights,
                                 2 if self.mode == "binary" else logits.shape[1], logits)
        if cw is not None:
            if self.mode == "multilabel":
                weight = weight * cw.view(1, -1, *([1] * (logits.ndim - 2)))
            else:
                weight = weight * cw[prep.labels].unsqueeze(1)
        pw = check_pixel_weight(pixel_weight, (logits.shape[0], *logits.shape[2:]), logits)
        if pw is not None:
            if bool((pw < 0).any()) or not bool(torch.isfinite(pw).all()):
                raise ValueError("pixel_weight must be finite and >= 0")
            weight = weight * pw.unsqueeze(1)
        weight = weight.expand_as(per_pixel)
        return weighted_mean(per_pixel, weight)
