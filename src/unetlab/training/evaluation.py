"""Evaluate a model on a dataset: metrics over the whole set, per class and per image.

Used by ``unetlab evaluate`` and ``unetlab demo``. Binary data (two classes, class 1 =
membrane, no ignore label) also gets the ISBI 2012 measures ``pixel_error`` and
``rand_error`` (mean over images) of the label map, and the leaderboard's own
threshold-swept ``challenge_pixel_error`` / ``challenge_rand_error`` of the probability
map (the definitions the U-Net paper's Table 1 uses; see ``unetlab.metrics.isbi``).
"""

from __future__ import annotations

import functools
import logging

import numpy as np
import torch

from ..errors import UnetlabError

log = logging.getLogger(__name__)


def predict_logits(model, image: torch.Tensor, *, tile_size=None, device="cpu",
                   tta: bool = False) -> torch.Tensor:
    """``(K, H, W)`` logits for one ``(C, H, W)`` image: overlap-tile prediction when
    ``tile_size`` is given (or the model uses valid padding), else one forward pass."""
    valid = getattr(model, "padding", "same") == "valid"
    if tile_size or valid or tta:
        from ..inference import predict_tiled
        from ..inference.tiling import model_geometry

        if tile_size or valid:
            size = tile_size or 572
        else:  # test-time augmentation of the whole image: one square tile that covers
            align = model_geometry(model)[2]  # it (square, so the 90-degree turns apply)
            size = -(-max(image.shape[1:]) // align) * align
        return predict_tiled(model, image, tile_size=size, tta=tta, device=device).float()
    with torch.no_grad():
        return model(image[None].to(device))[0].float().cpu()


def check_compatible(model, dataset, checkpoint="the model") -> None:
    """Clear errors when the model cannot be evaluated on this dataset."""
    classes = getattr(model, "num_classes", None) or model.unetlab_config["num_classes"]
    in_ch = getattr(model, "in_channels", None) or model.unetlab_config["in_channels"]
    if classes != dataset.num_classes:
        raise UnetlabError(f"{checkpoint} predicts {classes} classes but the dataset has "
                           f"{dataset.num_classes} ({', '.join(dataset.class_names)})")
    if in_ch != dataset.in_channels:
        raise UnetlabError(f"{checkpoint} takes {in_ch}-channel images but the dataset has "
                           f"{dataset.in_channels} channels")
    if not getattr(dataset, "has_masks", True):
        raise UnetlabError("this split has no labels; evaluation needs masks "
                           "(use unetlab predict for unlabelled images)")


def evaluate_model(model, dataset, *, tile_size=None, device="cpu", boundary: bool = True,
                   tta: bool = False, progress: bool = False, dist_info=None) -> dict:
    """Run ``model`` over ``dataset`` and measure it.

    Returns ``{"metrics": SegmentationMetrics.compute() (+ pixel_error, rand_error for
    binary data), "per_image": [{"name", "pixel_accuracy", "miou", "mdice", ...}],
    "class_names": [...]}``.

    ``dist_info`` (a :class:`~unetlab.training.distributed.DistInfo` of a torchrun job):
    each process measures every ``world_size``-th image; the per-image metric states are
    gathered and added in image order on every process, so the result is identical to a
    one-process run's (a float64 sum depends on its order; a reduction of per-rank partial
    sums would differ in the last digits).
    """
    from ..metrics import ChallengeScores, SegmentationMetrics
    from .distributed import gather

    k = int(dataset.num_classes)
    ignore = getattr(dataset, "ignore_index", None)
    binary = k == 2 and ignore is None
    if isinstance(model, torch.nn.Module):  # an optimize_for_inference callable is ready
        model = model.to(device).eval()
    rank, world = (dist_info.rank, dist_info.world_size) if dist_info is not None else (0, 1)
    indices = range(rank, len(dataset), world)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="evaluating", unit="img", leave=False)
    measure = functools.partial(_measure, model=model, dataset=dataset, k=k, ignore=ignore,
                                binary=binary, boundary=boundary, tile_size=tile_size,
                                device=device, tta=tta)
    if world == 1:
        records = [measure(i) for i in indices]
    else:  # an error on one rank must not leave the others waiting in the gather
        try:
            mine = [measure(i) for i in indices]
        except Exception as exc:  # re-raised below, on every rank
            mine = " ".join(str(exc).split()) or type(exc).__name__
        parts = gather(mine, dist_info)
        failed = next((p for p in parts if isinstance(p, str)), None)
        if failed is not None:
            raise UnetlabError(failed)
        records = sorted((r for part in parts for r in part), key=lambda r: r[0])
    if not records:
        raise UnetlabError("the dataset is empty: nothing to evaluate")
    total = SegmentationMetrics(k, ignore_index=ignore, boundary=boundary)
    challenge = ChallengeScores() if binary else None
    rows, rand = [], []
    for _, one, row, counts in records:
        total.merge(one)
        rows.append(row)
        if binary:
            challenge.counts += counts
            if row["rand_error"] is not None:
                rand.append(row["rand_error"])
    metrics = total.compute()
    if binary:
        metrics["pixel_error"] = 1.0 - metrics["pixel_accuracy"]
        metrics["rand_error"] = float(np.mean(rand)) if rand else None
        metrics.update({f"challenge_{k}": v for k, v in challenge.compute().items()})
    return {"metrics": metrics, "per_image": rows,
            "class_names": list(getattr(dataset, "class_names", [])) or
            [str(c) for c in range(k)]}


def _measure(i: int, *, model, dataset, k: int, ignore, binary: bool, boundary: bool,
             tile_size, device, tta: bool) -> tuple:
    """``(index, SegmentationMetrics of the image, per-image row, challenge counts)``."""
    from ..metrics import ChallengeScores, SegmentationMetrics, pixel_error, rand_error

    item = dataset[i]
    logits = predict_logits(model, item["image"], tile_size=tile_size, device=device, tta=tta)
    pred = logits.argmax(0).cpu()
    mask = item["mask"]
    one = SegmentationMetrics(k, ignore_index=ignore, boundary=boundary)
    one.update(pred[None], mask[None])
    one._to("cpu")
    m = one.compute()
    row = {"name": item.get("name", str(i)), "pixel_accuracy": m["pixel_accuracy"],
           "miou": m["miou"], "mdice": m["mdice"], "boundary_f1": m["boundary_f1"]}
    counts = None
    if binary:
        challenge = ChallengeScores()
        challenge.update(torch.softmax(logits, 0)[1], mask)
        counts = challenge.counts
        row["pixel_error"] = pixel_error(pred, mask)
        row["rand_error"] = rand_error(pred, mask)
        row["membrane_dice"] = m["dice"][1]
    return i, one, row, counts


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
    if "pixel_error" in m:
        lines.append(f"pixel error {f(m['pixel_error']).strip()}   "
                     f"Rand error {f(m['rand_error']).strip()}")
    if "challenge_pixel_error" in m:
        lines.append(f"ISBI leaderboard (best threshold): pixel error "
                     f"{f(m['challenge_pixel_error']).strip()}   Rand error "
                     f"{f(m['challenge_rand_error']).strip()}")
    return "\n".join(lines)
