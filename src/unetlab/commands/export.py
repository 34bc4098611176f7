"""``unetlab export``: a trained model as ONNX or TorchScript, checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from ._common import add_json_argument, check_new_file, check_not_input, write_json


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="export a model to ONNX or TorchScript",
        description="Export a model with dynamic batch and spatial size, then run the "
        "export and PyTorch on the same random input and print the max abs difference.")
    p.add_argument("checkpoint", type=Path,
                   help="a model file (.safetensors) or a training-run folder")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    p.add_argument("--out", type=Path, required=True,
                   help="output file (never the checkpoint; an existing file only with "
                   "--overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out when it already exists")
    p.add_argument("--check-size", type=int, default=None,
                   help="spatial size of the check input (default: twice the export size)")
    add_json_argument(p)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    import torch

    from ..errors import UnetlabError
    from ..inference.export import (
        _example_input,
        export_onnx,
        export_torchscript,
    )
    from ..models.serialization import load_model

    if not args.checkpoint.exists():
        raise UnetlabError(f"{args.checkpoint}: no such checkpoint")
    check_not_input(args.out, [args.checkpoint])
    check_new_file(args.out, args.overwrite)
    model = load_model(args.checkpoint)
    example = _example_input(model)
    if args.format == "onnx":
        path = export_onnx(model, args.out, example=example)
    else:
        path = export_torchscript(model, args.out, example=example)
    size = args.check_size or example.shape[-1] * 2
    if getattr(model, "padding", "same") == "valid":
        from ..models.unet import valid_input_size

        size = valid_input_size(size, getattr(model, "levels", 5))
    x = _example_input(model, size)
    with torch.no_grad():
        reference = model(x)
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
    print(f"wrote {path} ({args.format}); max abs difference from PyTorch on "
          f"{tuple(x.shape)}: {diff:.3g}")
    if args.json:
        write_json(args.json, {"path": path, "format": args.format,
                               "check_shape": list(x.shape), "max_abs_diff": diff})
    return 0
