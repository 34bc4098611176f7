"""Shape checks and target preparation shared by every loss (see docs/labels.md).

Modes follow segmentation_models.pytorch:

=============  ======================  =========================================
mode           logits                  target
=============  ======================  =========================================
"binary"       (N, 1, *S)              (N, *S) or (N, 1, *S), values {0, 1}
"multiclass"   (N, C, *S), C >= 2      (N, *S) integer class indices in [0, C)
"multilabel"   (N, C, *S)              (N, C, *S), values {0, 1} per channel
=============  ======================  =========================================

``*S`` is one (1-D), two (2-D) or three (3-D) spatial sizes. ``ignore_index`` may
appear in any target; those pixels (or, for multilabel, those channel entries) count
nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MODES = ("binary", "multiclass", "multilabel")
REDUCTIONS = ("batch", "image")


def check_choice(name: str, value, options) -> None:
    """Raise ValueError naming the valid options when ``value`` is not one of them."""
    if value not in options:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(options)}")


def check_mode(mode: str) -> None:
    check_choice("mode", mode, MODES)


def _shape(t: torch.Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


@dataclass
class Prepared:
    """Per-channel one-hot targets and a validity mask, both shaped like the logits."""

    target: torch.Tensor  # float, (N, C, *S), 0/1 (0 where ignored)
    valid: torch.Tensor  # float, (N, C, *S) for multilabel, (N, 1, *S) otherwise
    labels: torch.Tensor | None  # long (N, *S) class indices (multiclass/binary), 0 if ignored


def prepare_target(logits: torch.Tensor, target: torch.Tensor, mode: str,
                   ignore_index: int | None) -> Prepared:
    """Validate shapes and values, and turn ``target`` into per-channel 0/1 maps.

    Raises ValueError showing both shapes when they do not fit ``mode``.
    """
    check_mode(mode)
    if not torch.is_tensor(logits) or not torch.is_tensor(target):
        raise ValueError("logits and target must be torch tensors")
    if logits.ndim < 3:
        raise ValueError(f"logits must be (N, C, *spatial), got shape {_shape(logits)}")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    n, c, spatial = logits.shape[0], logits.shape[1], tuple(logits.shape[2:])

    if mode == "multilabel":
        if tuple(target.shape) != tuple(logits.shape):
            raise ValueError(f"multilabel target must have the logits' shape {_shape(logits)}, "
                             f"got {_shape(target)}")
        target = target.to(logits.device)
        valid = torch.ones_like(target, dtype=torch.bool)
        if ignore_index is not None:
            valid = target != ignore_index
        _check_values(target[valid], 2, "multilabel target")
        onehot = torch.where(valid, target, torch.zeros_like(target)).to(logits.dtype)
        return Prepared(onehot, valid.to(logits.dtype), None)

    if mode == "binary":
        if c != 1:
            raise ValueError(f"binary mode needs logits with 1 channel (N, 1, *spatial), got "
                             f"{_shape(logits)}; use mode='multiclass' for 2-channel logits")
        if target.ndim == logits.ndim and target.shape[1] == 1:
            target = target[:, 0]
    elif c < 2:
        raise ValueError(f"multiclass mode needs logits with C >= 2 channels, got "
                         f"{_shape(logits)}; use mode='binary' for 1-channel logits")
    if tuple(target.shape) != (n, *spatial):
        raise ValueError(f"{mode} target must be (N, *spatial) = ({n}, "
                         f"{', '.join(map(str, spatial))}) for logits {_shape(logits)}, "
                         f"got {_shape(target)}")
    if target.is_floating_point():
        if not torch.equal(target, target.round()):
            raise ValueError(f"{mode} target must hold integer class indices, got fractions")
    target = target.to(device=logits.device, dtype=torch.long)
    valid = torch.ones_like(target, dtype=torch.bool)
    if ignore_index is not None:
        valid = target != ignore_index
    num = 2 if mode == "binary" else c
    _check_values(target[valid], num, f"{mode} target")
    labels = torch.where(valid, target, torch.zeros_like(target))
    if mode == "binary":
        onehot = labels.unsqueeze(1).to(logits.dtype)
    else:
        onehot = F.one_hot(labels, c).movedim(-1, 1).to(logits.dtype)
    validf = valid.unsqueeze(1).to(logits.dtype)
    return Prepared(onehot * validf, validf, labels)


def _check_values(values: torch.Tensor, num: int, what: str) -> None:
    if values.numel() == 0:
        return
    bad = (values < 0) | (values >= num)
    if bool(bad.any()):
        found = torch.unique(values[bad]).tolist()[:10]
        raise ValueError(f"{what} has values {found} outside [0, {num - 1}] "
                         "(set ignore_index for a void label)")


def probabilities(logits: torch.Tensor, mode: str) -> torch.Tensor:
    """Softmax over channels for multiclass, sigmoid otherwise."""
    if mode == "multiclass":
        return logits.softmax(dim=1)
    return logits.sigmoid()


def hard_prediction(logits: torch.Tensor, mode: str) -> torch.Tensor:
    """The 0/1 per-channel prediction the metrics would see (argmax or logit > 0)."""
    if mode == "multiclass":
        return F.one_hot(logits.argmax(dim=1), logits.shape[1]).movedim(-1, 1).to(logits.dtype)
    return (logits > 0).to(logits.dtype)


def presence(logits: torch.Tensor, prep: Prepared, mode: str, sum_dims) -> torch.Tensor:
    """1 where a class occurs in the target or the hard prediction (valid pixels only).

    A class absent from both is left out of every mean (docs/labels.md, rule 2).
    """
    with torch.no_grad():
        hard = hard_prediction(logits, mode) * prep.valid
        count = (hard + prep.target).sum(dim=sum_dims)
    return (count > 0).to(logits.dtype)


def spatial_dims(x: torch.Tensor, reduction: str) -> tuple[int, ...]:
    """Dimensions summed per class: spatial only ("image") or batch + spatial ("batch")."""
    check_choice("reduction", reduction, REDUCTIONS)
    dims = tuple(range(2, x.ndim))
    return dims if reduction == "image" else (0, *dims)


def masked_mean(values: torch.Tensor, mask: torch.Tensor, weights=None) -> torch.Tensor:
    """Mean of ``values`` where ``mask`` is 1, 0 (with a gradient path) when nothing counts.

    ``values`` and ``mask`` are (C,) for batch reduction or (N, C) for image reduction.
    For (N, C) each class is first averaged over the images where it is present, then
    the classes present anywhere are averaged: the same order as the per-image metrics.
    """
    if weights is not None:
        w = torch.as_tensor(weights, dtype=values.dtype, device=values.device)
        mask = mask * w
    if values.ndim == 2:
        count = mask.sum(dim=0)
        per_class = (values * mask).sum(dim=0) / count.clamp_min(1e-12)
        present = (count > 0).to(values.dtype)
        if weights is not None:
            present = present * w
        values, mask = per_class, present
    total = mask.sum()
    return (values * mask).sum() / total.clamp_min(1e-12)


def class_weight_tensor(class_weights, num: int, like: torch.Tensor):
    """Class weights as a float tensor of length ``num`` on ``like``'s device, or None."""
    if class_weights is None:
        return None
    w = torch.as_tensor(class_weights, dtype=like.dtype, device=like.device).flatten()
    if w.numel() != num:
        raise ValueError(f"class_weights has {w.numel()} entries, expected {num} "
                         "(one per class)")
    if not torch.isfinite(w).all() or bool((w < 0).any()):
        raise ValueError("class_weights must be finite and >= 0")
    return w


def check_pixel_weight(pixel_weight, target_shape, like: torch.Tensor):
    """A (N, *S) pixel weight map as a tensor on ``like``'s device, or None."""
    if pixel_weight is None:
        return None
    w = torch.as_tensor(pixel_weight, dtype=like.dtype, device=like.device)
    if w.ndim == len(target_shape) + 1 and w.shape[1] == 1:
        w = w[:, 0]
    if tuple(w.shape) != tuple(target_shape):
        raise ValueError(f"pixel_weight must be (N, *spatial) = {tuple(target_shape)}, "
                         f"got {tuple(w.shape)}")
    return w
