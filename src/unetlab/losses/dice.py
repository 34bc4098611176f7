"""Soft Dice and Generalized Dice losses on logits, with the label rules of docs/labels.md.

Both sum soft true positives / false positives / false negatives per class over the
valid pixels of either each image (``reduction="image"``) or the whole batch
(``reduction="batch"``). A class absent from both the target and the hard prediction
(argmax, or logit > 0) of a reduction unit is left out of the mean, exactly as
:class:`unetlab.metrics.SegmentationMetrics` leaves it out, so an empty target with an
empty prediction costs 0 and an empty target with a false positive costs about 1.
"""

from __future__ import annotations

import torch
from torch import nn

from ._common import (
    check_mode,
    check_pixel_weight,
    class_weight_tensor,
    masked_mean,
    prepare_target,
    presence,
    probabilities,
    spatial_dims,
)


def soft_counts(logits, target, mode, ignore_index, reduction, pixel_weight=None):
    """Soft (tp, fp, fn) per class, a presence mask, and the prepared target.

    Shapes are (C,) for ``reduction="batch"`` and (N, C) for ``reduction="image"``.
    """
    prep = prepare_target(logits, target, mode, ignore_index)
    probs = probabilities(logits, mode)
    valid = prep.valid
    pw = check_pixel_weight(pixel_weight, (logits.shape[0], *logits.shape[2:]), logits)
    if pw is not None:
        valid = valid * pw.unsqueeze(1)
    dims = spatial_dims(logits, reduction)
    p = probs * valid
    t = prep.target * (valid > 0)
    tp = (p * t).sum(dim=dims)
    fp = (p * (1 - t)).sum(dim=dims)
    fn = ((1 - probs) * t * valid).sum(dim=dims)
    present = presence(logits, prep, mode, dims)
    return tp, fp, fn, present


def drop_background(mode, include_background, *tensors):
    """Remove channel 0 (the background class) in multiclass mode when asked to."""
    if include_background or mode != "multiclass":
        return tensors
    return tuple(t[..., 1:] for t in tensors)


class DiceLoss(nn.Module):
    """Soft Dice loss ``1 - (2 TP + smooth) / (2 TP + FP + FN + smooth)``, mean over classes.

    Args:
        mode: "binary" (logits (N, 1, *S)), "multiclass" (softmax, target (N, *S)) or
            "multilabel" (sigmoid per channel, target (N, C, *S)).
        include_background: keep class 0 in multiclass mode (other modes have no
            background channel).
        smooth: added to numerator and denominator (0 keeps the exact soft Dice; the
            presence rule already prevents 0/0).
        reduction: "batch" sums counts over the batch before the ratio; "image" takes
            the ratio per image, averages each class over the images where it is present,
            then averages the classes.
        ignore_index: target value that counts nowhere.
        class_weights: optional per-class weights of the mean over classes.
        log_loss: use ``-log(dice)`` instead of ``1 - dice``.
    """

    uses_pixel_weight = False

    def __init__(self, mode: str = "multiclass", *, include_background: bool = True,
                 smooth: float = 0.0, reduction: str = "batch", ignore_index: int | None = None,
                 class_weights=None, log_loss: bool = False, eps: float = 1e-7):
        super().__init__()
        check_mode(mode)
        spatial_dims(torch.zeros(1, 1, 1), reduction)  # validates reduction
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        self.mode, self.include_background, self.smooth = mode, include_background, smooth
        self.reduction, self.ignore_index, self.log_loss, self.eps = (
            reduction, ignore_index, log_loss, eps)
        self.class_weights = class_weights

    def dice_per_class(self, logits, target, pixel_weight=None):
        """Soft Dice per class ((C,) or (N, C)) and the presence mask of the same shape."""
        tp, fp, fn, present = soft_counts(logits, target, self.mode, self.ignore_index,
                                          self.reduction, pixel_weight)
        dice = (2 * tp + self.smooth) / (2 * tp + fp + fn + self.smooth).clamp_min(self.eps)
        return drop_background(self.mode, self.include_background, dice, present)

    def forward(self, logits, target, pixel_weight=None):
        dice, present = self.dice_per_class(logits, target, pixel_weight)
        per_class = -torch.log(dice.clamp_min(self.eps)) if self.log_loss else 1 - dice
        weights = class_weight_tensor(self.class_weights, dice.shape[-1], dice)
        return masked_mean(per_class, present, weights)


class GeneralizedDiceLoss(nn.Module):
    """Generalized Dice loss (Sudre et al. 2017) with class weights ``1 / (sum r_c)^2``.

    ``GDL = 1 - 2 sum_c w_c TP_c / sum_c w_c (2 TP_c + FP_c + FN_c)``. A class absent
    from the target would get an infinite weight: if the hard prediction holds it (a
    false positive) it gets the largest finite weight of the unit instead (as MONAI
    does), and if it is absent from both it gets weight 0 (left out). Weights carry no
    gradient and are rescaled so the largest is 1 (the ratio is unchanged).
    ``reduction="image"`` averages the per-image losses over images with any class
    present.
    """

    uses_pixel_weight = False

    def __init__(self, mode: str = "multiclass", *, include_background: bool = True,
                 reduction: str = "batch", ignore_index: int | None = None,
                 eps: float = 1e-7):
        super().__init__()
        check_mode(mode)
        spatial_dims(torch.zeros(1, 1, 1), reduction)
        self.mode, self.include_background = mode, include_background
        self.reduction, self.ignore_index, self.eps = reduction, ignore_index, eps

    def forward(self, logits, target, pixel_weight=None):
        tp, fp, fn, present = soft_counts(logits, target, self.mode, self.ignore_index,
                                          self.reduction, pixel_weight)
        tp, fp, fn, present = drop_background(self.mode, self.include_background,
                                              tp, fp, fn, present)
        with torch.no_grad():
            ref = tp + fn  # soft target volume = hard target volume (targets are 0/1)
            in_target = ref > 0
            w = torch.where(in_target, 1.0 / ref.clamp_min(1.0) ** 2, torch.zeros_like(ref))
            wmax = w.amax(dim=-1, keepdim=True)
            wmax = torch.where(wmax > 0, wmax, torch.ones_like(wmax))
            w = torch.where(in_target, w, wmax * present) / wmax
        num = 2 * (w * tp).sum(dim=-1)
        den = (w * (2 * tp + fp + fn)).sum(dim=-1)
        loss = 1 - num / den.clamp_min(self.eps)
        unit = (present.sum(dim=-1) > 0).to(loss.dtype)
        return (loss * unit).sum() / unit.sum().clamp_min(1e-12)
