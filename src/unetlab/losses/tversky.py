"""Tversky loss (Salehi et al. 2017), optionally focal (Abraham & Khan 2019)."""

from __future__ import annotations

import torch
from torch import nn

from ._common import check_mode, class_weight_tensor, masked_mean, spatial_dims
from .dice import drop_background, soft_counts


class TverskyLoss(nn.Module):
    """``(1 - TI)^gamma`` with ``TI = (TP + s) / (TP + alpha FP + beta FN + s)`` per class.

    ``alpha = beta = 0.5`` gives the Dice loss; larger ``beta`` punishes missed
    foreground more. Classes, reductions, presence rule and modes as in
    :class:`unetlab.losses.DiceLoss`.
    """

    uses_pixel_weight = False

    def __init__(self, mode: str = "multiclass", *, alpha: float = 0.5, beta: float = 0.5,
                 gamma: float = 1.0, include_background: bool = True, smooth: float = 0.0,
                 reduction: str = "batch", ignore_index: int | None = None,
                 class_weights=None, eps: float = 1e-7):
        super().__init__()
        check_mode(mode)
        spatial_dims(torch.zeros(1, 1, 1), reduction)
        if alpha < 0 or beta < 0 or alpha + beta <= 0:
            raise ValueError(f"alpha and beta must be >= 0 with a positive sum, got "
                             f"alpha={alpha}, beta={beta}")
        if gamma <= 0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        self.mode, self.alpha, self.beta, self.gamma = mode, alpha, beta, gamma
        self.include_background, self.smooth, self.reduction = include_background, smooth, reduction
        self.ignore_index, self.class_weights, self.eps = ignore_index, class_weights, eps

    def forward(self, logits, target, pixel_weight=None):
        tp, fp, fn, present = soft_counts(logits, target, self.mode, self.ignore_index,
                                          self.reduction, pixel_weight)
        den = tp + self.alpha * fp + self.beta * fn + self.smooth
        ti = (tp + self.smooth) / den.clamp_min(self.eps)
        ti, present = drop_background(self.mode, self.include_background, ti, present)
        per_class = (1 - ti).clamp_min(0) ** self.gamma
        weights = class_weight_tensor(self.class_weights, ti.shape[-1], ti)
        return masked_mean(per_class, present, weights)
