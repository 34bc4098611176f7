"""``unetlab evaluate CHECKPOINT --dataset FORMAT --data PATH``: measure a trained model.

Prints a per-class table (IoU, Dice, accuracy, boundary F1) and the means; for binary
membrane data also ``pixel_error`` and ``rand_error``. The results are saved as JSON
(``--json``, default ``<checkpoint folder>/eval_<dataset>_<split>.json``); ``--per-image-csv``
adds one row per image.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from ..errors import UnetlabError
from ._common import (
    add_backend_arguments,
    add_json_argument,
    add_max_pixels_argument,
    add_precision_argument,
    add_tta_argument,
    check_json_target,
    existing_path,
    free_name,
    inference_model,
    safe_name,
    write_json,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="measure a trained model on a labelled dataset",
        description="Evaluate a saved model (a .safetensors file or a checkpoint folder) "
        "on a labelled dataset split.")
    p.add_argument("checkpoint", type=Path,
                   help="model.safetensors or a checkpoint folder (e.g. runs/x/checkpoints/best)")
    p.add_argument("--dataset", required=True, metavar="FORMAT",
                   help="dataset format: folder, isbi2012, camvid, voc, cityscapes, geotiff, "
                   "nifti, membranes, shapes")
    p.add_argument("--data", type=Path, default=None, metavar="PATH",
                   help="dataset root (not needed for the synthetic ones)")
    p.add_argument("--split", default="val",
                   help="split to evaluate (default: val; a flat images/ + masks/ folder: "
                   "val = the images training held out when it is the training folder, "
                   "else every image)")
    p.add_argument("--option", dest="options", action="append", default=[],
                   metavar="KEY=VALUE", help="dataset option, e.g. --option cache=false "
                   "(the normalisation comes from the model card; see unetlab info)")
    p.add_argument("--tile-size", type=int, default=None,
                   help="predict with overlapping tiles of this size (default: whole image)")
    add_tta_argument(p)
    p.add_argument("--device", default="auto",
                   help="cpu, cuda or auto (default); under torchrun cuda = one GPU per process")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads per process (default: all cores, divided by "
                   "the processes on the node under torchrun)")
    add_backend_arguments(p)
    add_precision_argument(p, "run the model in this precision (see unetlab predict "
                           "--help); measures what bf16 or int8 cost in accuracy")
    p.add_argument("--any-dtype", action="store_true",
                   help="geotiff: evaluate rasters whose dtype has other units than the "
                   "training rasters' (e.g. float32 reflectance for a model trained on "
                   "uint16 counts) with a warning, not an error")
    p.add_argument("--no-boundary", action="store_true", help="skip the boundary F1 score")
    add_max_pixels_argument(p)
    p.add_argument("--per-image-csv", type=Path, default=None, metavar="PATH",
                   help="also write one row of metrics per image to PATH (a new file: an "
                   "existing one is never replaced)")
    add_json_argument(p)
    p.set_defaults(run=run)


def parse_options(items: list[str]) -> dict:
    import yaml

    out = {}
    for item in items:
        if "=" not in item:
            raise UnetlabError(f"--option {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise UnetlabError(f"--option {item!r}: not a plain YAML value "
                               f"({' '.join(str(exc).split())})") from None
    return out


def card_options(card: dict, options: dict, source) -> dict:
    """Dataset options with the card's normalisation: the model is measured on the input
    it was trained on. An explicit ``normalize`` that disagrees with the card is an error
    (a file saved before cards, whose card is assumed, takes the user's value)."""
    from ..preprocess import resolve_normalize

    channels = int(card["architecture"]["in_channels"])
    theirs = card["input"].get("normalize")
    if "normalize" in options and not card.get("assumed"):
        mine = resolve_normalize(options["normalize"], channels)
        if not _same_normalize(mine, theirs):
            raise UnetlabError(f"--option normalize={options['normalize']!r} disagrees with "
                               f"the model card of {source} ({_describe(theirs)}); drop the "
                               "option: evaluate uses the card's")
    if "normalize" not in options or not card.get("assumed"):
        options = {**options, "normalize": theirs}
    return options


def _same_normalize(a, b) -> bool:
    import numpy as np

    if a is None or b is None:
        return a is None and b is None
    return all(np.allclose(a[k], b[k], rtol=1e-6, atol=1e-9) for k in ("mean", "std"))


def _describe(norm) -> str:
    if norm is None:
        return "no normalisation"
    return f"normalize {norm.get('name', 'custom')} mean={norm['mean']} std={norm['std']}"


def check_preprocessing(card: dict, dataset, source) -> None:
    """The dataset must scale its images as the card says (e.g. a dataset class whose
    ``input_scaling`` differs from the model's)."""
    from ..preprocess import Preprocessing

    if not hasattr(dataset, "preprocessing"):
        return
    want = Preprocessing.from_card(card)
    got = dataset.preprocessing(want.channels)
    if got.scaling != want.scaling or not _same_normalize(got.normalize, want.normalize):
        raise UnetlabError(f"{source}: the dataset prepares images as {got.to_card()} but the "
                           f"model card says {want.to_card()}")


def _geo_options(card: dict) -> dict:
    """``bands`` (the selection and order the model was trained on) from the card's
    ``extensions["geo"]``, as ``unetlab predict`` reads them, and the class names."""
    geo = (card.get("extensions") or {}).get("geo") or {}
    names = (card.get("classes") or {}).get("names")
    out = {"class_names": list(names)} if names else {}
    if geo.get("bands"):
        out["bands"] = list(geo["bands"])
    return out


def _check_geo_dtype(card: dict, dataset, args) -> None:
    """Rasters of a dtype with other units than the training rasters' give wrong scores
    without a word: one line, unless ``--any-dtype`` (as ``unetlab predict``)."""
    from ..inference.raster import check_dtype
    from ..preprocess import Preprocessing

    trained = ((card.get("extensions") or {}).get("geo") or {}).get("dtype")
    dtype = getattr(dataset, "dtype", None)
    if trained and dtype is not None:
        check_dtype(args.data, dtype, trained, Preprocessing.from_card(card).scaling,
                    any_dtype=args.any_dtype)


def _folder_options(card: dict, options: dict) -> dict:
    """The mask values -> classes the model learned (the card's ``extensions["folder"]``),
    unless the user declares the classes: masks that lack a class would otherwise be
    numbered differently."""
    folder = (card.get("extensions") or {}).get("folder") or {}
    mode = {"image_mode": str(folder["image_mode"])} \
        if folder.get("image_mode") and "image_mode" not in options else {}
    if not folder.get("mapping") or {"mapping", "num_classes", "class_names"} & set(options):
        return mode
    out = {**mode, "mapping": dict(folder["mapping"]),
           "num_classes": int(card["architecture"]["num_classes"])}
    names = (card.get("classes") or {}).get("names")
    if names and len(names) == out["num_classes"]:
        out["class_names"] = list(names)
    if folder.get("ignore_values"):
        out["ignore_values"] = list(folder["ignore_values"])
    if folder.get("ignore_index") is not None:
        out["ignore_index"] = int(folder["ignore_index"])
    return out


def _medical_options(card: dict) -> dict:
    """``intensity`` / ``target_spacing`` from the card's ``extensions["medical"]`` and
    the class names the model was trained with."""
    medical = (card.get("extensions") or {}).get("medical") or {}
    names = (card.get("classes") or {}).get("names")
    out = {"class_names": list(names)} if names else {}
    if medical.get("intensity") is not None:
        out["intensity"] = medical["intensity"]
    if medical.get("spacing") is not None:
        out["target_spacing"] = medical["spacing"]
    return out


def tta_for_rank(requested, card, info):
    """:func:`~unetlab.inference.tiling.tta_for_card` (a one-line UnetlabError where the
    request cannot be met); under torchrun only rank 0 logs its warnings, since every
    rank would say the same."""
    from ..inference.tiling import log as tiling_log
    from ..inference.tiling import tta_for_card

    level = tiling_log.level
    if not info.is_main:
        tiling_log.setLevel(logging.ERROR)
    try:
        return tta_for_card(requested, card)
    finally:
        tiling_log.setLevel(level)


def run(args) -> int:
    from ..inference import distributed as D
    from ..training.builder import select_device

    existing_path(args.checkpoint)
    check_json_target(args, "per_image_csv")  # never replaces a file (a run's metrics.csv)
    if args.per_image_csv is not None and args.json is not None and \
            Path(args.per_image_csv).resolve() == Path(args.json).resolve():
        raise UnetlabError("--per-image-csv and --json name the same file")
    if args.json is None:  # the default file name holds the split: keep it in the folder
        safe_name(args.split, "--split")
    info, device = D.start(str(select_device(args.device)), args.threads)
    ok = False
    try:
        _run(args, info, device)
        ok = True
    finally:
        D.stop(info, ok)
    return 0


def _flat_split(dataset, args, card: dict, say: bool):
    """A folder dataset without a ``ROOT/<split>`` folder: on the data the model was
    trained on (the same folder, dataset format and number of images), ``val`` is the
    items training held out and ``train`` the rest (the same rule,
    :mod:`unetlab.data.splits`); otherwise, or when training held nothing out, every
    image, reported as ``all``. Returns the dataset and the split name to report."""
    from torch.utils.data import Subset

    from ..data.splits import DEFAULT_VAL_FRACTION, holdout_indices, holdout_items

    if args.split not in ("val", "train"):
        raise UnetlabError(f"--split {args.split}: {args.data} has no {args.split}/ folder; "
                           "a flat images/ + masks/ folder has the splits val and train")
    training = card.get("training") or {}
    root, n = training.get("root"), len(dataset)
    val_split, val_items = training.get("val_split"), training.get("val_items")

    def whole(why: str):
        if say:
            print(f"{args.data} has no {args.split}/ folder: evaluating all {n} images "
                  f"({why})")
        return dataset, "all"

    if root is None or args.data is None or \
            Path(root).resolve() != Path(args.data).resolve() or \
            training.get("dataset") != args.dataset:
        return whole("not the folder the model was trained on, as its card records")
    if training.get("items") not in (None, n):
        return whole(f"training read {training['items']} images here, now there are {n}: "
                     "its hold-out cannot be repeated")
    if n < 2 or (val_items is None and val_split is None):
        return whole("training held none of them out: it saw every one")
    if val_items is not None:
        kept, held = holdout_items(n, val_items)
    else:
        fraction = val_split if isinstance(val_split, float) else DEFAULT_VAL_FRACTION
        kept, held = holdout_indices(n, fraction)
    items = held if args.split == "val" else kept
    if say:
        print(f"{args.data} has no {args.split}/ folder: evaluating the {len(items)} of {n} "
              f"images training {'held out for validation' if args.split == 'val' else 'used'}")
    return Subset(dataset, items), f"{args.split} (held out of {n})" \
        if args.split == "val" else f"train (kept of {n})"


def _run(args, info, device) -> None:
    """Every process measures its share of the images (all of them without torchrun);
    rank 0 prints and writes the results."""
    from .. import load_model
    from ..data import build_dataset
    from ..training.evaluation import check_compatible, evaluate_model, format_table

    try:
        model = load_model(args.checkpoint, map_location=device)
    except UnetlabError:
        raise
    except ValueError as exc:
        raise UnetlabError(str(exc)) from None
    options = card_options(model.unetlab_card, parse_options(args.options), args.checkpoint)
    if args.dataset == "nifti":  # repeat the training's input mapping unless overridden
        options = {**_medical_options(model.unetlab_card), **options}
    elif args.dataset == "geotiff":  # the bands it was trained on, in their order
        options = {**_geo_options(model.unetlab_card), **options}
    elif args.dataset == "folder":  # the classes numbered as in training
        options = {**_folder_options(model.unetlab_card, options), **options}
    dataset = build_dataset(args.dataset, root=args.data, split=args.split, **options)
    check_compatible(model, dataset, str(args.checkpoint))
    check_preprocessing(model.unetlab_card, dataset, args.checkpoint)
    if args.dataset == "geotiff":
        _check_geo_dtype(model.unetlab_card, dataset, args)
    split = args.split
    if getattr(dataset, "split_found", True) is False:
        dataset, split = _flat_split(dataset, args, model.unetlab_card, info.is_main)
    scale = float(model.unetlab_card["input"].get("scale", 1.0))  # the resolution it saw
    tta = tta_for_rank(args.tta, model.unetlab_card, info)
    from ..preprocess import Preprocessing

    size = None
    if not args.tile_size and args.backend != "eager" and len(dataset):  # whole images
        size = tuple(int(v) for v in dataset[0]["image"].shape[1:])
    model = inference_model(model, args, device=device,
                            preprocessing=Preprocessing.from_card(model.unetlab_card),
                            tile_size=args.tile_size, size=size)
    result = evaluate_model(model, dataset, tile_size=args.tile_size, device=device,
                            boundary=not args.no_boundary, tta=tta,
                            progress=info.is_main, dist_info=info if info.enabled else None,
                            scale=scale)
    if not info.is_main:
        return
    result.update({"checkpoint": str(args.checkpoint), "dataset": args.dataset,
                   "data": str(args.data) if args.data else None, "split": split,
                   "num_images": len(dataset), "scale": scale})
    print(format_table(result))
    folder = args.checkpoint if args.checkpoint.is_dir() else args.checkpoint.parent
    target = args.json or free_name(folder / f"eval_{args.dataset}_{split.split()[0]}.json")
    out = {**result["metrics"], "class_names": result["class_names"],
           **{k: result[k] for k in ("checkpoint", "dataset", "data", "split", "num_images",
                                     "scale")}}
    write_json(target, out)
    print(f"saved {target}")
    if args.per_image_csv is not None:
        rows = result["per_image"]
        args.per_image_csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.per_image_csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"saved {args.per_image_csv}")
