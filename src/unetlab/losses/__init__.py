"""Segmentation losses on logits that obey the label rules of docs/labels.md.

Every loss is an ``nn.Module`` called ``loss(logits, target, pixel_weight=None)`` with an
attribute ``uses_pixel_weight``. Modes ("binary", "multiclass", "multilabel") follow
segmentation_models.pytorch; see :mod:`unetlab.losses._common` for the target shapes.
"""

from .combined import DiceCELoss
from .cross_entropy import CrossEntropyLoss
from .dice import DiceLoss, GeneralizedDiceLoss
from .factory import build_loss, list_losses
from .focal import FocalLoss
from .tversky import TverskyLoss
from .weight_map import border_weight_map

__all__ = [
    "CrossEntropyLoss",
    "DiceCELoss",
    "DiceLoss",
    "FocalLoss",
    "GeneralizedDiceLoss",
    "TverskyLoss",
    "border_weight_map",
    "build_loss",
    "list_losses",
]
