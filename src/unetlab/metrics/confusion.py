"""Streaming, mergeable segmentation metrics from a confusion matrix (+ boundary F1).

Label rules (docs/labels.md): pixels whose target is ``ignore_index`` count nowhere; a
class absent from both prediction and target is reported as ``None`` per class and left
out of every mean; no NaN or inf is returned (undefined values are ``None``).
"""

from __future__ import annotations

import logging

import torch

from .boundary import boundary_f1_scores

logger = logging.getLogger(__name__)

REDUCTIONS = ("dataset", "image")
_STATE = ("confmat", "iou_sum", "dice_sum", "img_count", "bf_sum", "bf_count",
          "bf_image_sum", "bf_images", "num_images")


def _shape(t) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def to_labels(prediction, target, num_classes: int):
    """Bring (labels or logits, target) to two long tensors of shape (N, *S).

    ``prediction`` is either labels shaped like ``target`` or logits (N, C, *S) with
    C = ``num_classes`` (argmax) or C = 1 for ``num_classes == 2`` (logit > 0).
    """
    prediction = torch.as_tensor(prediction)
    target = torch.as_tensor(target, device=prediction.device)
    if target.ndim < 2:
        raise ValueError(f"target must be (N, *spatial), got shape {_shape(target)}")
    if prediction.ndim == target.ndim + 1:
        if not prediction.is_floating_point():
            raise ValueError(f"prediction of shape {_shape(prediction)} looks like logits but "
                             f"is {prediction.dtype}; pass float logits or integer labels")
        c = prediction.shape[1]
        if prediction.shape[:1] + prediction.shape[2:] != target.shape:
            raise ValueError(f"logits {_shape(prediction)} do not fit target {_shape(target)}")
        if bool(torch.isnan(prediction).any()):  # argmax of NaN is class 0: a score
            raise ValueError("logits hold NaN values (a diverged model?)")
        if c == num_classes:
            prediction = prediction.argmax(dim=1)
        elif c == 1 and num_classes == 2:
            prediction = (prediction[:, 0] > 0).long()
        else:
            raise ValueError(f"logits have {c} channels {_shape(prediction)} but "
                             f"num_classes={num_classes}")
    elif prediction.shape != target.shape:
        raise ValueError(f"prediction {_shape(prediction)} and target {_shape(target)} must "
                         "have the same shape (labels) or prediction (N, C, *spatial) (logits)")
    for name, t in (("prediction", prediction), ("target", target)):
        if t.is_floating_point() and not torch.equal(t, t.round()):
            raise ValueError(f"{name} labels must be integers, got fractional values")
    return prediction.long(), target.long()


class SegmentationMetrics:
    """Accumulates a confusion matrix (and per-image scores) over batches.

    Args:
        num_classes: number of classes (2 for binary membrane data, class 1 = membrane).
        ignore_index: target value that counts nowhere.
        boundary: also compute the BF score (costs a few convolutions per batch).
        reduction: "dataset" (IoU/Dice from the summed confusion matrix) or "image"
            (per class, mean over the images where the class is present in prediction
            or target). Accuracies and fwIoU always use the summed matrix; the BF score
            is always averaged over images, as in its paper.
        boundary_tolerance: BF match distance as a fraction of the image diagonal.

    Streaming equals one-shot: any split of the data into batches gives the same result,
    and ``merge`` adds the state of another instance (e.g. another worker).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None, boundary: bool = True,
                 *, reduction: str = "dataset", boundary_tolerance: float = 0.0075):
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2 (binary data = 2 classes), "
                             f"got {num_classes!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction={reduction!r} is not valid; choose one of "
                             f"{list(REDUCTIONS)}")
        if boundary_tolerance < 0:
            raise ValueError(f"boundary_tolerance must be >= 0, got {boundary_tolerance}")
        if ignore_index is not None and 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index={ignore_index} is one of the classes "
                             f"0..{num_classes - 1}; use a value outside that range")
        self.num_classes, self.ignore_index, self.boundary = num_classes, ignore_index, boundary
        self.reduction, self.boundary_tolerance = reduction, boundary_tolerance
        self.reset()

    # -- state ------------------------------------------------------------------------
    def reset(self, device=None) -> None:
        """Forget everything seen so far."""
        c = self.num_classes
        dev = torch.device(device) if device is not None else torch.device("cpu")
        self.confmat = torch.zeros(c, c, dtype=torch.int64, device=dev)
        self.iou_sum = torch.zeros(c, dtype=torch.float64, device=dev)
        self.dice_sum = torch.zeros(c, dtype=torch.float64, device=dev)
        self.img_count = torch.zeros(c, dtype=torch.int64, device=dev)
        self.bf_sum = torch.zeros(c, dtype=torch.float64, device=dev)
        self.bf_count = torch.zeros(c, dtype=torch.int64, device=dev)
        self.bf_image_sum = torch.zeros((), dtype=torch.float64, device=dev)
        self.bf_images = torch.zeros((), dtype=torch.int64, device=dev)
        self.num_images = torch.zeros((), dtype=torch.int64, device=dev)

    def _to(self, device) -> None:
        for name in _STATE:
            setattr(self, name, getattr(self, name).to(device))

    def _check_compatible(self, other: SegmentationMetrics) -> None:
        mine = (self.num_classes, self.ignore_index, self.boundary, self.reduction,
                self.boundary_tolerance)
        theirs = (other.num_classes, other.ignore_index, other.boundary, other.reduction,
                  other.boundary_tolerance)
        if mine != theirs:
            raise ValueError(f"cannot merge metrics with different settings: {mine} vs {theirs}"
                             " (num_classes, ignore_index, boundary, reduction, tolerance)")

    def merge(self, other: SegmentationMetrics) -> SegmentationMetrics:
        """Add another instance's state to this one (same settings); returns self."""
        if not isinstance(other, SegmentationMetrics):
            raise ValueError(f"can only merge SegmentationMetrics, got {type(other).__name__}")
        self._check_compatible(other)
        for name in _STATE:
            mine = getattr(self, name)
            setattr(self, name, mine + getattr(other, name).to(mine.device))
        return self

    def sync(self) -> SegmentationMetrics:
        """Sum the state over all processes when torch.distributed is initialised."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        if dist.get_backend() == "nccl" and self.confmat.device.type != "cuda":
            self._to(torch.device("cuda", torch.cuda.current_device()))
        for name in _STATE:
            dist.all_reduce(getattr(self, name), op=dist.ReduceOp.SUM)
        return self

    # -- accumulation -----------------------------------------------------------------
    @torch.no_grad()
    def update(self, prediction, target) -> None:
        """Add a batch: ``prediction`` labels (N, *S) or logits (N, C, *S), target (N, *S)."""
        pred, tgt = to_labels(prediction, target, self.num_classes)
        if self.confmat.device != tgt.device:
            self._to(tgt.device)
        c = self.num_classes
        valid = torch.ones_like(tgt, dtype=torch.bool)
        if self.ignore_index is not None:
            valid = tgt != self.ignore_index
        for name, t, mask in (("target", tgt, valid), ("prediction", pred, valid)):
            vals = t[mask]
            bad = (vals < 0) | (vals >= c)
            if bool(bad.any()):
                found = torch.unique(vals[bad]).tolist()[:10]
                hint = "" if name == "prediction" else " (set ignore_index for a void label)"
                raise ValueError(f"{name} has values {found} outside [0, {c - 1}]{hint}")
        n = tgt.shape[0]
        pred = torch.where(valid, pred, torch.zeros_like(pred))
        tgt_safe = torch.where(valid, tgt, torch.zeros_like(tgt))
        image = torch.arange(n, device=tgt.device).view(n, *([1] * (tgt.ndim - 1)))
        index = (image * c * c + tgt_safe * c + pred)[valid]
        per_image = torch.bincount(index, minlength=n * c * c).view(n, c, c)
        self.confmat += per_image.sum(0)
        self.num_images += n
        if self.reduction == "image":
            tp = per_image.diagonal(dim1=1, dim2=2).double()
            union = per_image.sum(1).double() + per_image.sum(2).double() - tp
            present = union > 0
            iou = tp / union.clamp_min(1)
            dice = 2 * tp / (union + tp).clamp_min(1)
            self.iou_sum += (iou * present).sum(0)
            self.dice_sum += (dice * present).sum(0)
            self.img_count += present.sum(0)
        if self.boundary:
            f1, counted = boundary_f1_scores(pred, tgt, c, valid, self.boundary_tolerance)
            self.bf_sum += (f1 * counted).sum(0)
            self.bf_count += counted.sum(0)
            per_img = counted.sum(1)
            has = per_img > 0
            img_mean = (f1 * counted).sum(1) / per_img.clamp_min(1)
            self.bf_image_sum += (img_mean * has).sum()
            self.bf_images += has.sum()

    # -- results ----------------------------------------------------------------------
    def compute(self) -> dict:
        """The metrics as plain Python values (JSON-able); ``None`` where undefined.

        Keys: ``iou``, ``dice``, ``precision``, ``recall``, ``boundary_f1_per_class``
        (lists, one entry per class, None for a class absent from prediction and target
        or otherwise undefined), ``miou``, ``mdice``, ``pixel_accuracy``,
        ``class_accuracy`` (mean recall over classes present in the target), ``fwiou``
        (IoU weighted by target frequency), ``boundary_f1`` (per-image mean over counted
        classes, averaged over images), ``confusion_matrix`` (rows = target, columns =
        prediction), ``num_pixels``, ``num_images``, ``reduction``.
        """
        cm = self.confmat.double().cpu()
        tp = cm.diagonal()
        rows, cols = cm.sum(1), cm.sum(0)
        union = rows + cols - tp
        total = float(cm.sum())
        if self.reduction == "dataset":
            iou = _ratio(tp, union)
            dice = _ratio(2 * tp, union + tp)
        else:
            count = self.img_count.cpu().double()
            iou = _ratio(self.iou_sum.cpu(), count)
            dice = _ratio(self.dice_sum.cpu(), count)
        recall = _ratio(tp, rows)
        precision = _ratio(tp, cols)
        iou_cm = _ratio(tp, union)
        fw = [float(r) / total * v for r, v in zip(rows.tolist(), iou_cm) if r > 0]
        result = {
            "iou": iou,
            "miou": _mean(iou),
            "dice": dice,
            "mdice": _mean(dice),
            "precision": precision,
            "recall": recall,
            "pixel_accuracy": float(tp.sum()) / total if total > 0 else None,
            "class_accuracy": _mean(recall),
            "fwiou": sum(fw) if fw else None,
            "boundary_f1": None,
            "boundary_f1_per_class": [None] * self.num_classes,
            "confusion_matrix": self.confmat.cpu().tolist(),
            "num_pixels": int(total),
            "num_images": int(self.num_images),
            "reduction": self.reduction,
        }
        if self.boundary:
            result["boundary_f1_per_class"] = _ratio(self.bf_sum.cpu(), self.bf_count.cpu())
            images = int(self.bf_images)
            result["boundary_f1"] = float(self.bf_image_sum) / images if images else None
        return result

    def __repr__(self) -> str:
        return (f"SegmentationMetrics(num_classes={self.num_classes}, "
                f"ignore_index={self.ignore_index}, images={int(self.num_images)})")


def _ratio(num: torch.Tensor, den: torch.Tensor) -> list:
    """Element-wise num / den as floats, None where den == 0."""
    return [float(a) / float(b) if b > 0 else None for a, b in zip(num.tolist(), den.tolist())]


def _mean(values: list):
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None
