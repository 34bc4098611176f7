"""Dice + cross-entropy, the usual pairing for imbalanced segmentation (nnU-Net's default)."""

from __future__ import annotations

from torch import nn

from .cross_entropy import CrossEntropyLoss
from .dice import DiceLoss


class DiceCELoss(nn.Module):
    """``lambda_dice * DiceLoss + lambda_ce * CrossEntropyLoss`` with shared mode/ignore_index.

    ``class_weights`` and ``label_smoothing`` go to the cross-entropy term; ``pixel_weight``
    (if given) also weights only the cross-entropy term. See the two losses for details.
    """

    uses_pixel_weight = False

    def __init__(self, mode: str = "multiclass", *, lambda_dice: float = 1.0,
                 lambda_ce: float = 1.0, include_background: bool = True, smooth: float = 0.0,
                 reduction: str = "batch", ignore_index: int | None = None, class_weights=None,
                 label_smoothing: float = 0.0):
        super().__init__()
        if lambda_dice < 0 or lambda_ce < 0:
            raise ValueError(f"lambda_dice and lambda_ce must be >= 0, got "
                             f"{lambda_dice}, {lambda_ce}")
        self.dice = DiceLoss(mode, include_background=include_background, smooth=smooth,
                             reduction=reduction, ignore_index=ignore_index)
        self.ce = CrossEntropyLoss(mode, class_weights=class_weights, ignore_index=ignore_index,
                                   label_smoothing=label_smoothing)
        self.lambda_dice, self.lambda_ce = lambda_dice, lambda_ce

    def forward(self, logits, target, pixel_weight=None):
        return (self.lambda_dice * self.dice(logits, target)
                + self.lambda_ce * self.ce(logits, target, pixel_weight))
