"""``unetlab predict``: segment images of any size with a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import (
    add_json_argument,
    add_max_pixels_argument,
    add_precision_argument,
    optimized,
    write_json,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "predict", help="segment images (any size) with a trained model",
        description="Predict label maps with overlap-tile inference. Writes "
        "<name>_labels.png (.tif for TIFF inputs, stacks and volumes), <name>_overlay.png "
        "and, with --probabilities, <name>_probs.tif into --out.")
    p.add_argument("checkpoint", type=Path,
                   help="a model file (.safetensors) or a training-run folder")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="image files or folders of images")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--tile-size", type=int, default=256,
                   help="input tile size in pixels (default 256; valid-padding models: a "
                   "valid input size such as 572)")
    p.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction")
    p.add_argument("--blend", default="gaussian", choices=("gaussian", "linear", "constant"))
    p.add_argument("--tta", nargs="?", const="dihedral", default=None,
                   choices=("dihedral", "flips"),
                   help="test-time augmentation: flips and 90-degree rotations, averaged")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "eager"),
                   help="torch: folded batch norm + channels-last; eager: the model as is")
    add_precision_argument(p, "bf16: about 2x faster on CPUs with AVX512-BF16/AMX and on "
                           "recent GPUs (logits within ~1%%); fp16: CUDA only (default: fp32)")
    p.add_argument("--probabilities", action="store_true",
                   help="also write per-class probability maps (float32 TIFF)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_max_pixels_argument(p)
    add_json_argument(p)
    p.set_defaults(run=run)
    return p


def _collect(inputs) -> list[Path]:
    from ..errors import UnetlabError
    from ..imageio import IMAGE_SUFFIXES

    files = []
    for item in inputs:
        if item.is_dir():
            found = sorted(f for f in item.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UnetlabError(f"{item}: no images ({', '.join(IMAGE_SUFFIXES)}) in folder")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise UnetlabError(f"{item}: no such file or directory")
    return files


def run(args) -> int:
    import torch

    from ..card import palette_of
    from ..errors import UnetlabError
    from ..inference import predict_file
    from ..models.serialization import load_model
    from ..preprocess import Preprocessing

    if not args.checkpoint.exists():
        raise UnetlabError(f"{args.checkpoint}: no such checkpoint")
    files = _collect(args.inputs)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise UnetlabError(f"--device {args.device!r} is not a valid device") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UnetlabError("--device cuda: no CUDA device is available")
    model = load_model(args.checkpoint, map_location=device)
    card = model.unetlab_card  # what the model was trained to see, and its classes
    if args.backend == "eager" and args.precision != "fp32":
        raise UnetlabError(f"--precision {args.precision} needs --backend torch")
    if args.backend != "eager":
        model = optimized(model, backend=args.backend, device=device,
                          precision=args.precision)
    palette = palette_of(card)
    preprocessing = Preprocessing.from_card(card)
    results = {}
    for f in files:
        res = predict_file(model, f, args.out, tile_size=args.tile_size, overlap=args.overlap,
                           blend=args.blend, tta=args.tta or False, batch_size=args.batch_size,
                           probabilities=args.probabilities, palette=palette,
                           preprocessing=preprocessing, device=device,
                           progress=not args.no_progress)
        results[str(f)] = res
        print(f"{f}: {res['labels']}" + (f", {res['overlay']}" if res["overlay"] else ""))
    if args.json:
        write_json(args.json, {"checkpoint": args.checkpoint, "outputs": results})
    return 0
