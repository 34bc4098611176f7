"""``build_loss(name, ...)``: one table from names to loss classes, strict options."""

from __future__ import annotations

import difflib
import inspect

from .combined import DiceCELoss
from .cross_entropy import CrossEntropyLoss
from .dice import DiceLoss, GeneralizedDiceLoss
from .focal import FocalLoss
from .tversky import TverskyLoss

# name -> (class, keyword that receives class_weights or None, fixed keywords)
_LOSSES = {
    "ce": (CrossEntropyLoss, "class_weights", {}),
    "weighted_ce": (CrossEntropyLoss, "class_weights", {}),
    "border_ce": (CrossEntropyLoss, "class_weights", {"use_pixel_weight": True}),
    "dice": (DiceLoss, "class_weights", {}),
    "generalized_dice": (GeneralizedDiceLoss, None, {}),
    "dice_ce": (DiceCELoss, "class_weights", {}),
    "focal": (FocalLoss, "alpha", {}),
    "tversky": (TverskyLoss, "class_weights", {}),
}


def list_losses() -> list[str]:
    """Names accepted by :func:`build_loss`."""
    return sorted(_LOSSES)


def build_loss(name: str, *, num_classes: int, ignore_index: int | None = None,
               class_weights=None, **options):
    """Build a loss module by name.

    ``num_classes == 1`` selects mode "binary", otherwise "multiclass" (pass
    ``mode="multilabel"`` explicitly for multi-label targets). ``"weighted_ce"`` is
    cross-entropy that requires ``class_weights``; ``"border_ce"`` is cross-entropy
    weighted by the dataset's pixel "weight" map (``uses_pixel_weight=True``).
    Unknown names or options raise ValueError listing the valid ones.
    """
    if name not in _LOSSES:
        close = difflib.get_close_matches(str(name), list(_LOSSES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown loss {name!r}{hint}; choose one of {list_losses()}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    cls, weight_key, fixed = _LOSSES[name]
    if name == "weighted_ce" and class_weights is None:
        raise ValueError("loss 'weighted_ce' needs class_weights (one per class)")
    if class_weights is not None:
        if weight_key is None:
            raise ValueError(f"loss {name!r} computes its own class weights; "
                             "do not pass class_weights")
        n = len(list(class_weights))
        expected = 2 if num_classes == 1 else num_classes
        if n != expected:
            raise ValueError(f"class_weights has {n} entries, expected {expected} "
                             f"(num_classes={num_classes})")
        if name == "focal" and num_classes == 1:
            raise ValueError("loss 'focal' in binary mode takes alpha=<float>, "
                             "not class_weights")
    valid = [p for p in inspect.signature(cls.__init__).parameters
             if p not in ("self", "ignore_index", weight_key, *fixed)]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for loss {name!r}; valid: {valid}")
    kwargs = {"mode": "binary" if num_classes == 1 else "multiclass", **fixed, **options,
              "ignore_index": ignore_index}
    if weight_key is not None and class_weights is not None:
        kwargs[weight_key] = list(class_weights)
    return cls(**kwargs)
