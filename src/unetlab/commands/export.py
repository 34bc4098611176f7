"""``unetlab export``: a trained model as ONNX or TorchScript, checked against PyTorch.

The exported graph takes images scaled to [0, 1] (the card's normalisation is its first
operations unless ``--no-embed-normalize``); the card of the exported file is written
beside it (``model.onnx.card.json``) and, for ONNX, into the graph's ``metadata_props``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_json_argument, check_new_file, check_not_input, write_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="export a model to ONNX or TorchScript",
        description="Export a model with dynamic batch and spatial size, then run the "
        "export and PyTorch on the same random input and print the max abs difference. "
        "Writes OUT and its card OUT.card.json (what a caller must do to an image).")
    p.add_argument("checkpoint", type=Path,
                   help="a model file (.safetensors) or a training-run folder")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    p.add_argument("--out", type=Path, required=True,
                   help="output file (never the checkpoint; an existing file only with "
                   "--overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out (and its card) when it already exists")
    p.add_argument("--check-size", type=int, default=None,
                   help="spatial size of the check input (default: twice the export size)")
    p.add_argument("--no-embed-normalize", action="store_true",
                   help="leave the card's normalisation to the caller (the exported card "
                   "then says which mean/std to apply)")
    add_json_argument(p)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    import torch

    from ..errors import UnetlabError
    from ..inference.export import (
        _example_input,
        card_path_for,
        export_onnx,
        export_torchscript,
        with_normalization,
    )
    from ..models.geometry import geometry_of
    from ..models.serialization import load_model

    if not args.checkpoint.exists():
        raise UnetlabError(f"{args.checkpoint}: no such checkpoint")
    card_file = card_path_for(args.out)
    check_not_input(args.out, [args.checkpoint])
    check_not_input(card_file, [args.checkpoint], "the export's card")
    check_new_file(args.out, args.overwrite)
    check_new_file(card_file, args.overwrite, "the export's card")
    model = load_model(args.checkpoint)
    embed = not args.no_embed_normalize
    example = _example_input(model)
    export = export_onnx if args.format == "onnx" else export_torchscript
    path = export(model, args.out, example=example, normalize=embed)
    size = args.check_size or example.shape[-1] * 2
    geo = geometry_of(model)
    if geo.padding == "valid":
        from ..models.unet import valid_input_size

        size = valid_input_size(size, geo.levels)
    x = _example_input(model, size)  # an image scaled to [0, 1]
    reference_net = with_normalization(model) if embed else model
    with torch.no_grad():
        reference = reference_net(x)
    if args.format == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        (y,) = session.run(None, {"image": x.numpy()})
        y = torch.from_numpy(y)
    else:
        with torch.no_grad():
            y = torch.jit.load(str(path))(x)
    if tuple(y.shape) != tuple(reference.shape):
        raise UnetlabError(f"exported model gives shape {tuple(y.shape)}, PyTorch "
                           f"{tuple(reference.shape)}")
    diff = float((y - reference).abs().max())
    print(f"wrote {path} ({args.format}) and {card_file}; max abs difference from PyTorch "
          f"on {tuple(x.shape)}: {diff:.3g}")
    if args.json:
        write_json(args.json, {"path": path, "card": card_file, "format": args.format,
                               "normalization_in_graph": embed,
                               "check_shape": list(x.shape), "max_abs_diff": diff})
    return 0
