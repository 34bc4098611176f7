"""Focal loss (Lin et al. 2017) on logits for the three modes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import check_mode, check_pixel_weight, prepare_target
from .cross_entropy import weighted_mean


class FocalLoss(nn.Module):
    """``alpha_t (1 - p_t)^gamma (-log p_t)``, averaged over valid pixels.

    Args:
        mode: "binary", "multiclass" or "multilabel" (see ``unetlab.losses``).
        gamma: focusing parameter (0 gives cross-entropy).
        alpha: multiclass: one weight per class (sequence); binary/multilabel: a float
            in [0, 1], the weight of positives (negatives get ``1 - alpha``); None = 1.
        ignore_index: target value that counts nowhere.
    With ``pixel_weight`` the mean becomes ``sum w FL / sum w`` over valid pixels.
    """

    uses_pixel_weight = False

    def __init__(self, mode: str = "multiclass", *, gamma: float = 2.0, alpha=None,
                 ignore_index: int | None = None):
        super().__init__()
        check_mode(mode)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if alpha is not None and mode != "multiclass":
            alpha = float(alpha)
            if not 0.0 <= alpha <= 1.0:
                raise ValueError(f"alpha must be in [0, 1] for mode={mode!r}, got {alpha}")
        self.mode, self.gamma, self.alpha, self.ignore_index = mode, gamma, alpha, ignore_index

    def forward(self, logits, target, pixel_weight=None):
        prep = prepare_target(logits, target, self.mode, self.ignore_index)
        if self.mode == "multiclass":
            logp_t = F.log_softmax(logits, dim=1).gather(1, prep.labels.unsqueeze(1))
        else:
            t = prep.target
            logp_t = -F.binary_cross_entropy_with_logits(logits, t, reduction="none")
        p_t = logp_t.exp()
        loss = (1 - p_t).clamp_min(1e-12) ** self.gamma * (-logp_t)
        weight = prep.valid
        if self.alpha is not None:
            if self.mode == "multiclass":
                a = torch.as_tensor(self.alpha, dtype=logits.dtype, device=logits.device)
                if a.numel() != logits.shape[1]:
                    raise ValueError(f"alpha has {a.numel()} entries, expected "
                                     f"{logits.shape[1]} (one per class)")
                weight = weight * a[prep.labels].unsqueeze(1)
            else:
                weight = weight * (self.alpha * prep.target + (1 - self.alpha) * (1 - prep.target))
        pw = check_pixel_weight(pixel_weight, (logits.shape[0], *logits.shape[2:]), logits)
        normaliser = prep.valid if pw is None else prep.valid * pw.unsqueeze(1)
        if pw is not None:
            weight = weight * pw.unsqueeze(1)
        weight = weight.expand_as(loss)
        total = normaliser.expand_as(loss).sum()
        return (loss * weight).sum() / total.clamp_min(1e-12)


__all__ = ["FocalLoss", "weighted_mean"]
