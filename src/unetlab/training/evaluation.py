"""THE evaluator: one function turns a model and a labelled dataset into metrics.

:func:`evaluate_model` is behind ``Trainer.validate`` (which adds the validation loss and
reduces over distributed ranks), ``unetlab evaluate`` and ``compare`` (through the
trainer), so the same checkpoint on the same split gives the same numbers through all
three. Predictions come from :func:`predict_logits` (whole image by default; overlap
tiles with ``tile_size``; a valid-padding model always goes through the overlap-tile
predictor, one tile covering the image when no size is given). Metrics are computed on
the CPU, image by image, and merged:

- :class:`unetlab.metrics.SegmentationMetrics` (``ignore_index`` pixels count nowhere);
- binary data (two classes, class 1 = membrane, no ignore label): the ISBI 2012
  ``pixel_error`` (``1 - pixel_accuracy``) and ``rand_error`` (mean over images whose
  target has a cell), and with ``challenge=True`` the leaderboard's threshold-swept
  ``challenge_pixel_error`` / ``challenge_rand_error`` of the probability map (the
  definitions the U-Net paper's Table 1 uses; see ``unetlab.metrics.isbi``).
"""

from __future__ import annotations

import contextlib
import logging

import torch

from ..errors import UnetlabError
from ..models.geometry import geometry_of

log = logging.getLogger(__name__)


def _whole_tile(model, spatial) -> int:
    """An input tile that covers the whole image in one pass (square, so that every
    test-time transform applies), aligned to the model's geometry."""
    geo = geometry_of(model)
    size = max(int(s) for s in spatial)
    if geo.padding == "valid":
        from ..models.unet import valid_input_size

        return valid_input_size(size, geo.levels)
    return -(-size // geo.divisor) * geo.divisor


def predict_logits(model, images: torch.Tensor, *, tile_size=None, device="cpu",
                   tta: bool = False, autocast=None) -> torch.Tensor:
    """Float32 logits for ``(C, *S)`` or ``(N, C, *S)`` images, at the images' size:
    overlap-tile prediction with ``tile_size`` (or for a valid-padding model, or with
    ``tta``), else one forward pass of the whole batch. ``autocast``: a context manager
    factory (the trainer's mixed precision), or None."""
    single = images.dim() == geometry_of(model).spatial_dims + 1
    batch = images[None] if single else images
    valid = geometry_of(model).padding == "valid"
    with (autocast or contextlib.nullcontext)():
        if tile_size or valid or tta:
            from ..inference import predict_tiled

            size = tile_size or _whole_tile(model, batch.shape[2:])
            out = predict_tiled(model, batch, tile_size=size, tta=tta, device=device)
        else:
            with torch.no_grad():
                out = model(batch.to(device))
    out = out.float()
    return out[0] if single else out


def check_compatible(model, dataset, checkpoint="the model") -> None:
    """Clear errors when the model cannot be evaluated on this dataset."""
    config = getattr(model, "unetlab_config", None) or {}
    classes = getattr(model, "num_classes", None) or config.get("num_classes")
    in_ch = getattr(model, "in_channels", None) or config.get("in_channels")
    if classes != dataset.num_classes:
        raise UnetlabError(f"{checkpoint} predicts {classes} classes but the dataset has "
                           f"{dataset.num_classes} ({', '.join(dataset.class_names)})")
    if in_ch != dataset.in_channels:
        raise UnetlabError(f"{checkpoint} takes {in_ch}-channel images but the dataset has "
                           f"{dataset.in_channels} channels")
    if not getattr(dataset, "has_masks", True):
        raise UnetlabError("this split has no labels; evaluation needs masks "
                           "(use unetlab predict for unlabelled images)")


class Evaluator:
    """Accumulates metrics over batches of logits and masks, image by image (so every
    batch size gives the same numbers), on the CPU.

    ``loss_fn``: also average this loss over images (the trainer's ``val_loss``).
    ``challenge``: the ISBI leaderboard scores too (binary data only).
    ``per_image``: keep one row of scores per image.
    """

    def __init__(self, num_classes: int, *, ignore_index=None, boundary: bool = True,
                 loss_fn=None, challenge: bool = False, per_image: bool = False,
                 keep_records: bool = False, spacing=None):
        from ..metrics import ChallengeScores, SegmentationMetrics

        self.num_classes, self.ignore_index, self.boundary = num_classes, ignore_index, boundary
        self.binary = num_classes == 2 and ignore_index is None
        self.loss_fn = loss_fn
        self.total = SegmentationMetrics(num_classes, ignore_index=ignore_index,
                                         boundary=boundary)
        self.challenge = ChallengeScores() if (challenge and self.binary) else None
        self.rows: list[dict] | None = [] if per_image else None
        self.records: list[tuple[int, dict]] | None = [] if keep_records else None
        # loss sum, images in the loss, rand error sum, images with a rand error
        self.sums = torch.zeros(4, dtype=torch.float64)
        # volumes: HD95 per foreground class in mm (``spacing``: dataset index -> voxel
        # sizes), summed over the images where the class is present, and those counts
        self.spacing = spacing
        self.hd95 = torch.zeros(2, num_classes, dtype=torch.float64)

    def update(self, logits: torch.Tensor, masks: torch.Tensor, *, names=None,
               weight=None, indices=None) -> None:
        """Add ``(N, K, *S)`` logits and their ``(N, *S)`` masks (any device).

        With ``keep_records`` the images' measurements are kept (with their dataset
        ``indices``) instead of added, for :func:`evaluate_model` to gather across
        processes and add in image order."""
        if bool(torch.isnan(logits).any()):  # the argmax would score NaN as class 0
            raise ValueError("the model's logits hold NaN values (a diverged model?)")
        masks, weight = crop_targets(logits, masks, weight)
        if self.loss_fn is not None:
            loss = self.loss_fn(logits, masks.to(logits.device), pixel_weight=None
                                if weight is None else weight.to(logits.device))
            self.sums[0] += float(loss) * logits.shape[0]
            self.sums[1] += logits.shape[0]
        labels = logits.argmax(1).cpu()
        masks = masks.cpu()
        for j in range(labels.shape[0]):
            name = names[j] if names is not None else None
            index = int(indices[j]) if indices is not None else None
            spacing = self.spacing(index) if self.spacing and index is not None else None
            record = self._measure(labels[j], masks[j], logits[j], name, spacing)
            if self.records is not None:
                index = index if index is not None else len(self.records)
                self.records.append((index, record))
            else:
                self.add(record)

    def _measure(self, pred, mask, logits, name, spacing=None) -> dict:
        """One image's metric state, Rand error, challenge counts, HD95 (mm, volumes)
        and score row."""
        from ..metrics import ChallengeScores, SegmentationMetrics, pixel_error, rand_error

        one = SegmentationMetrics(self.num_classes, ignore_index=self.ignore_index,
                                  boundary=self.boundary)
        one.update(pred[None], mask[None])
        record = {"metrics": one, "rand": None, "counts": None, "row": None, "hd95": None}
        if spacing is not None:  # class 0 (background) is not measured
            from ..metrics import hausdorff95_per_class

            record["hd95"] = hausdorff95_per_class(
                pred[None], mask[None], self.num_classes, ignore_index=self.ignore_index,
                spacing=spacing, classes=range(1, self.num_classes))
        if self.binary:
            record["rand"] = rand_error(pred, mask)  # None: no cell pixel in the target
            if self.challenge is not None:
                scores = ChallengeScores()
                scores.update(torch.softmax(logits.float(), 0)[1].cpu(), mask)
                record["counts"] = scores.counts
        if self.rows is not None:
            m = one.compute()
            row = {"name": name if name is not None else str(len(self.rows)),
                   "pixel_accuracy": m["pixel_accuracy"], "miou": m["miou"],
                   "mdice": m["mdice"], "boundary_f1": m["boundary_f1"]}
            if self.binary:
                row.update(pixel_error=pixel_error(pred, mask), rand_error=record["rand"],
                           membrane_dice=m["dice"][1])
            if record["hd95"] is not None:
                present = [v for v in record["hd95"] if v is not None]
                row["hd95"] = sum(present) / len(present) if present else None
            record["row"] = row
        return record

    def add(self, record: dict) -> None:
        """Add one image's measurement (from :meth:`_measure`)."""
        self.total.merge(record["metrics"])
        if record["rand"] is not None:
            self.sums[2] += record["rand"]
            self.sums[3] += 1
        if record["counts"] is not None:
            self.challenge.counts += record["counts"]
        for c, value in enumerate(record.get("hd95") or []):
            if value is not None:
                self.hd95[0, c] += value
                self.hd95[1, c] += 1
        if record["row"] is not None:
            self.rows.append(record["row"])

    def sync(self, dist=None, device=None) -> Evaluator:
        """Sum the state over distributed ranks (``dist``: the trainer's DistInfo);
        per-image rows and challenge scores stay per rank."""
        from . import distributed

        self.total.sync()
        if dist is not None and dist.enabled:
            self.sums = distributed.all_reduce_sum(self.sums.to(device), dist).cpu()
            if self.spacing is not None:
                self.hd95 = distributed.all_reduce_sum(self.hd95.to(device), dist).cpu()
        return self

    def compute(self) -> dict:
        """``SegmentationMetrics.compute()`` plus ``pixel_error``/``rand_error`` (binary
        data), ``challenge_*`` (when asked) and ``loss`` (with a loss function)."""
        if int(self.total.num_images) == 0:
            raise UnetlabError("the dataset is empty: nothing to evaluate")
        metrics = self.total.compute()
        if self.binary:
            metrics["pixel_error"] = 1.0 - metrics["pixel_accuracy"]
            count = float(self.sums[3])
            metrics["rand_error"] = float(self.sums[2]) / count if count else None
        if self.challenge is not None:
            metrics.update({f"challenge_{k}": v for k, v in self.challenge.compute().items()})
        if self.loss_fn is not None:
            metrics["loss"] = float(self.sums[0] / max(float(self.sums[1]), 1.0))
        if self.spacing is not None:
            per = [float(s / n) if n and c > 0 else None
                   for c, (s, n) in enumerate(zip(self.hd95[0].tolist(), self.hd95[1].tolist()))]
            present = [v for v in per if v is not None]
            metrics.update(hd95=per, mhd95=sum(present) / len(present) if present else None,
                           hd95_units="mm (voxel spacing)")
        return metrics


def _warn_if_prepared_otherwise(model, dataset) -> None:
    """A warning when ``dataset`` prepares images otherwise than ``model``'s card says
    (another normalisation: the scores are of a model that sees other numbers; ``unetlab
    evaluate`` refuses this, the Python function says it)."""
    card = getattr(model, "unetlab_card", None)
    if not card or "architecture" not in card or not hasattr(dataset, "preprocessing"):
        return
    from ..commands.evaluate import _same_normalize
    from ..preprocess import Preprocessing

    want = Preprocessing.from_card(card)
    got = dataset.preprocessing(want.channels)
    if got.scaling != want.scaling or not _same_normalize(got.normalize, want.normalize):
        log.warning("the dataset prepares images as %s, the model card says %s: build the "
                    "dataset with the card's normalisation, or the scores are of other "
                    "inputs than the model learned", got.to_card(), want.to_card())


def evaluate_model(model, dataset, *, tile_size=None, device="cpu", boundary: bool = True,
                   tta: bool = False, progress: bool = False, batch_size: int = 1,
                   num_workers: int = 0, indices=None, loss_fn=None, autocast=None,
                   challenge: bool = True, per_image: bool = True, dist=None,
                   dist_info=None, scale: float = 1.0, loader=None) -> dict:
    """Run ``model`` over ``dataset`` (or its ``indices``) and measure it.

    ``loader``: a DataLoader over exactly those items in that order, with ``batch_size``
    (the trainer passes one whose worker processes live for the whole run); made here
    when None.

    ``scale`` (the model card's ``input.scale``): the model sees each image resampled by
    that factor and its logits are upsampled back, so the metrics are measured at the
    dataset's own resolution.

    Returns ``{"metrics": Evaluator.compute(), "per_image": [{"name", "pixel_accuracy",
    "miou", "mdice", ...}] (or None), "class_names": [...]}``. ``dist`` (the trainer's
    DistInfo): each rank passes its share of ``indices``; the metrics are summed over
    ranks. ``loss_fn``, ``autocast``: see :class:`Evaluator` and :func:`predict_logits`.

    ``dist_info`` (a torchrun job's DistInfo; ``unetlab evaluate``): each process
    measures every ``world_size``-th image, the per-image measurements are gathered and
    added in image order on every process, so the result is identical to a one-process
    run's (a float64 sum depends on its order: summing per-rank partial totals would
    change the last digits).
    """
    from torch.utils.data import DataLoader, Subset

    info = dataset  # a held-out Subset (data.val_split: 0.2) describes no classes itself
    while not hasattr(info, "num_classes") and hasattr(info, "dataset"):
        info = info.dataset
    k = int(info.num_classes)
    ignore = getattr(info, "ignore_index", None)
    _warn_if_prepared_otherwise(model, info)
    if isinstance(model, torch.nn.Module):  # an optimize_for_inference callable is ready
        model = model.to(device).eval()
    if scale != 1.0:
        from ..inference.scaled import ScaledModel

        model = ScaledModel(model, scale)
    exact = dist_info is not None and dist_info.enabled
    evaluator = Evaluator(k, ignore_index=ignore, boundary=boundary, loss_fn=loss_fn,
                          challenge=challenge, per_image=per_image, keep_records=exact,
                          spacing=_spacing_of(dataset))
    if exact:
        indices = range(dist_info.rank, len(dataset), dist_info.world_size)
    indices = list(range(len(dataset)) if indices is None else indices)
    if loader is None:
        loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                            num_workers=num_workers)
    elif loader.batch_size != batch_size or len(loader.dataset) != len(indices):
        raise ValueError(f"the loader gives {len(loader.dataset)} items in batches of "
                         f"{loader.batch_size}; this evaluation needs {len(indices)} in "
                         f"batches of {batch_size}")
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="evaluating", unit="batch", leave=False)
    try:
        _run(model, loader, evaluator, indices, batch_size, tile_size=tile_size,
             device=device, tta=tta, autocast=autocast, loss_fn=loss_fn)
        failure = None
    except Exception as exc:  # under torchrun: re-raised below on every rank, so that
        if not exact:         # no rank is left waiting in the gather
            raise
        failure = " ".join(str(exc).split()) or type(exc).__name__
    if exact:
        from .distributed import gather

        parts = gather(failure if failure is not None else evaluator.records, dist_info)
        failed = next((p for p in parts if isinstance(p, str)), None)
        if failed is not None:
            raise UnetlabError(failed)
        evaluator.records = None
        for _, record in sorted((r for part in parts for r in part), key=lambda r: r[0]):
            evaluator.add(record)
    if dist is not None:
        evaluator.sync(dist, device)
    return {"metrics": evaluator.compute(), "per_image": evaluator.rows,
            "class_names": list(getattr(info, "class_names", [])) or
            [str(c) for c in range(k)]}


def _run(model, loader, evaluator, indices, batch_size, *, tile_size, device, tta, autocast,
         loss_fn) -> None:
    with torch.no_grad():
        for b, batch in enumerate(loader):
            if "mask" not in batch:
                raise UnetlabError("this split has no labels; evaluation needs masks")
            logits = predict_logits(model, batch["image"], tile_size=tile_size,
                                    device=device, tta=tta, autocast=autocast)
            evaluator.update(logits, batch["mask"], names=batch.get("name"),
                             indices=indices[b * batch_size:(b + 1) * batch_size],
                             weight=batch.get("weight") if loss_fn is not None and getattr(
                                 loss_fn, "uses_pixel_weight", False) else None)


def crop_targets(logits: torch.Tensor, masks: torch.Tensor, weight: torch.Tensor | None):
    """Centre-crop masks (and weights) to the logits' size: a valid-padding U-Net predicts
    only the centre of its input tile (the paper's overlap-tile geometry)."""
    out, full = tuple(logits.shape[2:]), tuple(masks.shape[1:])
    if out == full:
        return masks, weight
    if any(o > f for o, f in zip(out, full)):
        raise UnetlabError(f"model output {out} is larger than the mask {full}")
    index = (slice(None), *(slice((f - o) // 2, (f - o) // 2 + o) for o, f in zip(out, full)))
    return masks[index], (weight[index] if weight is not None else None)


def _spacing_of(dataset):
    """``index -> voxel sizes`` of a volume dataset (through Subsets), or None."""
    if hasattr(dataset, "voxel_spacing"):
        return dataset.voxel_spacing
    inner = getattr(dataset, "dataset", None)
    outer = _spacing_of(inner) if inner is not None else None
    if outer is None or not hasattr(dataset, "indices"):
        return None
    return lambda i: outer(dataset.indices[i])


def format_table(result: dict) -> str:
    """A per-class table (IoU, Dice, accuracy, boundary F1) and the means, as text."""
    m, names = result["metrics"], result["class_names"]

    def f(v):
        return "     -" if v is None else f"{v:6.4f}"

    width = max(8, *(len(n) for n in names))
    lines = [f"{'class':<{width}}    IoU    Dice    Acc    BF1",
             "-" * (width + 32)]
    bf = m.get("boundary_f1_per_class") or [None] * len(names)
    for i, name in enumerate(names):
        lines.append(f"{name:<{width}} {f(m['iou'][i])}  {f(m['dice'][i])} "
                     f"{f(m['recall'][i])} {f(bf[i])}")
    lines.append("-" * (width + 32))
    lines.append(f"{'mean':<{width}} {f(m['miou'])}  {f(m['mdice'])} "
                 f"{f(m['class_accuracy'])} {f(m['boundary_f1'])}")
    lines.append(f"pixel accuracy {f(m['pixel_accuracy']).strip()}")
    if m.get("hd95") is not None:
        per = ", ".join(f"{n} {f(v).strip()}" for n, v in zip(names, m["hd95"])
                        if v is not None)
        lines.append(f"HD95 (mm): mean {f(m['mhd95']).strip()}" + (f"  ({per})" if per else ""))
    if "pixel_error" in m:
        lines.append(f"pixel error {f(m['pixel_error']).strip()}   "
                     f"Rand error {f(m['rand_error']).strip()}")
    if "challenge_pixel_error" in m:
        lines.append(f"ISBI leaderboard (best threshold): pixel error "
                     f"{f(m['challenge_pixel_error']).strip()}   Rand error "
                     f"{f(m['challenge_rand_error']).strip()}")
    return "\n".join(lines)
