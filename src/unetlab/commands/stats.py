"""``unetlab stats``: image sizes, class pixel frequencies and class weights of a split."""

from __future__ import annotations

import logging

from ._common import add_json_argument, existing_path, write_json

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "stats", help="class frequencies and class weights of a dataset split",
        description="Count the pixels of every class in a dataset split and derive class "
        "weights: SegNet's median-frequency balancing (freq(c) = pixels of c / pixels of "
        "the images containing c; weight = median freq / freq(c)) and inverse frequency "
        "(N / (K n_c)). Ignored pixels count nowhere.")
    parser.add_argument("--dataset", default="membranes",
                        help="dataset name: folder, isbi2012, camvid, voc, cityscapes, "
                        "geotiff, nifti, membranes, shapes (default: membranes)")
    parser.add_argument("--data", metavar="PATH", type=existing_path, default=None,
                        help="dataset root (not needed for membranes/shapes)")
    parser.add_argument("--split", default="train", help="split to count (default: train)")
    parser.add_argument("--option", dest="options", action="append", default=[],
                        metavar="KEY=VALUE", help="dataset option (repeatable)")
    parser.add_argument("--no-fingerprint", action="store_true",
                        help="skip the fingerprint (intensities, object size, thinnest "
                        "structure) that unetlab plan reads")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_json_argument(parser)
    parser.set_defaults(run=run)


def format_table(result: dict) -> str:
    """The per-class table printed by ``unetlab stats``."""
    names = result["class_names"]
    width = max([len("class")] + [len(n) for n in names])
    weights = result["class_weights"]
    lines = [f"{'id':>3}  {'class':<{width}}  {'pixels':>12}  {'freq':>8}  {'images':>6}  "
             f"{'median_freq_w':>13}  {'inverse_freq_w':>14}"]
    for c, name in enumerate(names):
        lines.append(
            f"{c:>3}  {name:<{width}}  {result['pixel_counts'][c]:>12d}  "
            f"{result['class_frequencies'][c]:>8.4f}  {result['images_with_class'][c]:>6d}  "
            f"{weights['median_frequency'][c]:>13.4f}  {weights['inverse_frequency'][c]:>14.4f}")
    sizes = ", ".join("x".join(str(n) for n in s.get("shape", (s.get("height"), s.get("width"))))
                      + f" ({s['count']})" for s in result["image_sizes"])
    kind = "volumes" if any("shape" in s for s in result["image_sizes"]) else "images"
    unit = "voxels" if kind == "volumes" else "pixels"
    lines.append(f"{result['num_images']} {kind}; sizes: {sizes}; ignored {unit}: "
                 f"{result['ignored_pixels']} (ignore_index={result['ignore_index']})")
    return "\n".join(lines)


def run(args) -> int:
    from ..data import build_dataset, class_statistics
    from ..errors import UnetlabError

    if args.data is None and args.dataset not in ("membranes", "shapes"):
        raise UnetlabError(f"--data PATH is required for dataset {args.dataset!r}")
    from .evaluate import parse_options

    options = parse_options(args.options)
    dataset = build_dataset(args.dataset, args.data, split=args.split, cache=False, **options)
    if getattr(dataset, "split_found", True) is False and args.split != "train":
        raise UnetlabError(f"--split {args.split}: {args.data} has no {args.split}/ folder; "
                           "a flat images/ + masks/ folder is counted whole with --split "
                           "train (the default)")
    result = class_statistics(dataset, progress=not args.no_progress)
    result = {"dataset": args.dataset, "split": args.split, **result}
    print(format_table(result))
    if not args.no_fingerprint and int(getattr(dataset, "spatial_dims", 2)) != 2:
        log.info("no fingerprint: it measures 2-D images, %s holds volumes", args.dataset)
    elif not args.no_fingerprint:
        from ..planning import compute_fingerprint, format_fingerprint

        fp = compute_fingerprint(dataset, name=args.dataset)
        print(format_fingerprint(fp))
        result["fingerprint"] = fp.to_dict()
    if args.json is not None:
        write_json(args.json, result)
        log.info("wrote %s", args.json)
    return 0
