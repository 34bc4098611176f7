"""``unetlab demo``: the whole job on synthetic EM membranes, on the CPU, in minutes.

Generates synthetic membranes, trains a small U-Net with a progress bar, evaluates it on
held-out synthetic images, predicts a held-back synthetic image (and the real ISBI 2012
slices when ``--data`` points at them), and writes metrics, curves and overlays into a
run folder it names at the end. ``--quick`` is a ~20-second version for tests.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ._common import add_json_argument, write_json

log = logging.getLogger(__name__)

OVERLAY_PALETTE = [[0, 0, 0], [255, 48, 48]]  # membrane in red over the grey image


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "demo", help="train and evaluate a U-Net on synthetic membranes in minutes",
        description="Generate synthetic EM membranes, train a small U-Net on the CPU, "
        "evaluate it, predict held-back images (and real ISBI 2012 slices with --data), "
        "and write metrics, curves and overlays into a run folder.")
    p.add_argument("--out", type=Path, default=None,
                   help="run folder (default: runs/demo-<date>-<time>)")
    p.add_argument("--minutes", type=float, default=3.0,
                   help="training time budget in minutes (default: 3)")
    p.add_argument("--data", type=Path, default=None, metavar="PATH_TO_ISBI",
                   help="the isbi2012 folder: also evaluate on its labelled slices and "
                   "predict its test slices")
    p.add_argument("--quick", action="store_true",
                   help="a tiny run (~20 s) that checks that everything works")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in --out (default: refuse)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    add_json_argument(p)
    p.set_defaults(run=run)


def demo_config(out: Path, *, minutes: float, quick: bool, seed: int, device: str):
    """The demo's training config (a small U-Net on synthetic membranes)."""
    from ..config import load_config

    if quick:
        over = ["model.options.channels=[8,16,32]", "data.options.size=48",
                "data.options.num_images=8", "data.val_options.num_images=2",
                "data.tile_size=null", "data.batch_size=4", "train.epochs=2",
                "schedule.name=none", "train.boundary_metric=false"]
    else:
        over = ["model.options.channels=[16,32,64,128]", "data.options.size=128",
                "data.options.num_images=64", "data.val_options.num_images=8",
                "data.tile_size=96", "data.batch_size=8", "train.epochs=null",
                f"train.time_budget_s={minutes * 60:.0f}", "schedule.name=cosine",
                "schedule.by_time=true", "schedule.warmup_steps=20", "train.val_every=2"]
    return load_config(None, [
        "model.name=unet", "model.options.norm=batch", "data.dataset=membranes",
        f"data.options.seed={seed}", "data.augment=light", "data.val_split=val",
        "loss.name=dice_ce", "optim.name=adam", "optim.lr=0.002",
        "train.best_metric=dice.1", f"train.seed={seed}", f"train.device={device}",
        f"train.out_dir={out}", *over])


def _new_folder(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ...: the first that this process creates itself
    (two demos started in the same second used to share one folder)."""
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        path = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{base}: no free run folder name")


def run(args) -> int:
    from .. import load_model
    from ..data import build_dataset
    from ..errors import UnetlabError
    from ..imageio import write_image
    from ..training import train
    from ..training.evaluation import evaluate_model, format_table
    from ..training.trainer import check_run_folder

    if args.minutes <= 0:
        raise UnetlabError(f"--minutes must be positive, got {args.minutes}")
    if args.out is not None and not args.overwrite:  # the demo has no --resume to offer
        check_run_folder(args.out, resume=False, overwrite=False, can_resume=False)
    if args.data is not None:  # the real slices are read after training: check them first
        build_dataset("isbi2012", root=args.data, split="all")
    out = args.out or _new_folder(Path("runs") / time.strftime("demo-%Y%m%d-%H%M%S"))
    cfg = demo_config(out, minutes=args.minutes, quick=args.quick, seed=args.seed,
                      device=args.device)
    summary = train(cfg, overwrite=args.overwrite)
    model = load_model(out / "checkpoints" / "best")

    report = {"run_folder": str(out), "training": summary}
    val = build_dataset("membranes", split="val", **{**cfg.data.options,
                                                      **cfg.data.val_options})
    result = evaluate_model(model, val, boundary=not args.quick)
    print("synthetic validation images:")
    print(format_table(result))
    report["synthetic_val"] = result["metrics"]

    # a held-back image the model never saw: the synthetic "test" split, larger
    size = 64 if args.quick else 256
    held = build_dataset("membranes", split="test", num_images=1, size=size, seed=args.seed)
    item = held[0]
    pred = _predict(model, item["image"], tile_size=32 if args.quick else 128)
    _save_prediction(out / "predictions" / "synthetic_test", item["image"], pred, write_image)
    from ..metrics import pixel_error, rand_error

    report["synthetic_test"] = {"pixel_error": pixel_error(pred, item["mask"]),
                                "rand_error": rand_error(pred, item["mask"])}

    if args.data is not None:
        report["isbi2012"] = _isbi(model, args, out, write_image, format_table,
                                   evaluate_model)
    write_json(out / "demo.json", _drop_matrices(report))
    if args.json is not None:
        write_json(args.json, _drop_matrices(report))
    print(f"held-back synthetic image: pixel error "
          f"{report['synthetic_test']['pixel_error']:.4f}")
    print(f"run folder: {out}  (metrics.csv, curves.png, demo.json, predictions/, "
          f"checkpoints/best)")
    return 0


def _predict(model, image, *, tile_size):
    """Label map of one image: overlap-tile prediction (plain forward if unavailable)."""
    import torch

    try:
        from ..inference import predict_tiled
    except ImportError:  # inference package missing: whole-image forward pass
        with torch.no_grad():
            return model(image[None])[0].argmax(0)
    return predict_tiled(model, image, tile_size=tile_size).argmax(0)


def _save_prediction(stem: Path, image, pred, write_image) -> None:
    import numpy as np

    from ..inference import overlay

    img = image[0].numpy()
    labels = pred.numpy().astype(np.uint8)
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_image(stem.with_name(stem.name + "_labels.png"), labels * 255)
    write_image(stem.with_name(stem.name + "_overlay.png"),
                overlay(img, labels, np.array(OVERLAY_PALETTE, dtype=np.uint8)))


def _isbi(model, args, out, write_image, format_table, evaluate_model) -> dict:
    """Synthetic-trained model on the real slices: metrics on the labelled ones,
    overlays of the first test slices."""
    from ..data import build_dataset

    labelled = build_dataset("isbi2012", root=args.data, split="all")
    if args.quick:
        labelled = _first(labelled, 2)
    result = evaluate_model(model, labelled, tile_size=None, boundary=not args.quick)
    print("real ISBI 2012 labelled slices (model trained on synthetic data only):")
    print(format_table(result))
    test = build_dataset("isbi2012", root=args.data, split="test")
    for i in range(min(len(test), 1 if args.quick else 3)):
        item = test[i]
        pred = _predict(model, item["image"], tile_size=128 if args.quick else 256)
        _save_prediction(out / "predictions" / f"isbi_test_{item['name']}", item["image"],
                         pred, write_image)
    return result["metrics"]


def _first(dataset, n):
    """The first ``n`` items of a dataset, keeping its class attributes."""
    import torch

    sub = torch.utils.data.Subset(dataset, range(min(n, len(dataset))))
    for attr in ("num_classes", "class_names", "palette", "ignore_index", "in_channels"):
        setattr(sub, attr, getattr(dataset, attr))
    return sub


def _drop_matrices(report):
    if isinstance(report, dict):
        return {k: _drop_matrices(v) for k, v in report.items() if k != "confusion_matrix"}
    return report
