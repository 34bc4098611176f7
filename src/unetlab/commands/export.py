"""``unetlab export``: a trained model as ONNX, TorchScript or OpenVINO (fp32 or int8),
checked against PyTorch.

The ONNX and TorchScript graphs take images scaled to [0, 1] (the card's normalisation
is their first operations unless ``--no-embed-normalize``); the OpenVINO IR is the bare
network (the caller normalises). The card of the exported file is written beside it
(``model.onnx.card.json``) and, for ONNX, into the graph's ``metadata_props``; its
``extensions.export.caller_prepares`` says what the caller does to an image.

Every file is written into a private folder beside ``--out`` and moved onto its name
only once the export has been checked: a failed export leaves nothing behind and no
earlier file touched.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from ._common import (
    add_json_argument,
    check_new_file,
    check_not_input,
    existing_path,
    write_json,
)


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="export a model to ONNX, TorchScript or OpenVINO",
        description="Export a model with dynamic batch and spatial size, then run the "
        "export and PyTorch on the same random input and print the max abs difference. "
        "Writes OUT and its card OUT.card.json (what a caller must do to an image); "
        "OpenVINO int8: the argmax agreement on the calibration images.")
    p.add_argument("checkpoint", type=Path,
                   help="a model file (.safetensors) or a training-run folder")
    p.add_argument("--format", required=True, choices=("onnx", "torchscript", "openvino"))
    p.add_argument("--out", type=Path, required=True,
                   help="output file (never the checkpoint; an existing file only with "
                   "--overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out (and its card) when it already exists")
    p.add_argument("--int8", action="store_true",
                   help="openvino: quantize to int8 with NNCF (needs --calibration)")
    p.add_argument("--calibration", type=existing_path, default=None, metavar="DIR",
                   help="a folder of your own images to calibrate --int8")
    p.add_argument("--tile-size", type=int, default=None,
                   help="--int8: calibration crop size (default 256; a multiple of the "
                   "model's pooling factor, or a valid size for a valid-padding U-Net; "
                   "no larger than the calibration images need)")
    p.add_argument("--check-size", type=int, default=None,
                   help="spatial size of the check input (default: twice the export size; "
                   "openvino fp32: 256)")
    p.add_argument("--no-embed-normalize", action="store_true",
                   help="onnx, torchscript: leave the card's normalisation to the caller "
                   "(the exported card then says which mean/std to apply; the OpenVINO "
                   "IR always leaves it to the caller)")
    add_json_argument(p)
    p.set_defaults(run=run)
    return p


def run(args) -> int:
    from ..errors import UnetlabError
    from ..inference.export import card_path_for
    from ..models.serialization import load_model

    if not args.checkpoint.exists():
        raise UnetlabError(f"{args.checkpoint}: no such checkpoint")
    card_file = card_path_for(args.out)
    check_not_input(args.out, [args.checkpoint])
    check_not_input(card_file, [args.checkpoint], "the export's card")
    check_new_file(args.out, args.overwrite)
    check_new_file(card_file, args.overwrite, "the export's card")
    if args.tile_size is not None and not args.int8:
        raise UnetlabError(f"--tile-size {args.tile_size}: the calibration crop size, only "
                           "used with --int8 (--check-size sets the check input)")
    if args.check_size is not None and args.check_size < 1:
        raise UnetlabError(f"--check-size {args.check_size}: must be positive")
    model = load_model(args.checkpoint)
    if args.format == "openvino" or args.int8 or args.calibration:
        return _openvino(args, model)
    return _graph(args, model, card_file)


def _graph(args, model, card_file) -> int:
    """ONNX or TorchScript, written staged and checked against PyTorch."""
    import torch

    from ..errors import UnetlabError
    from ..inference.export import (
        _example_input,
        export_onnx,
        export_torchscript,
        with_normalization,
    )
    from ..models.geometry import geometry_of

    embed = not args.no_embed_normalize
    example = _example_input(model)
    export = export_onnx if args.format == "onnx" else export_torchscript
    size = args.check_size or example.shape[-1] * 2
    geo = geometry_of(model)
    if geo.padding == "valid":
        from ..models.unet import valid_input_size

        size = valid_input_size(size, geo.levels)
    x = _example_input(model, size)  # an image scaled to [0, 1]
    reference_net = with_normalization(model) if embed else model
    with torch.no_grad():
        reference = reference_net(x)
    with _staged(args.out, [card_file]) as staged:
        path = export(model, staged, example=example, normalize=embed)
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
    path = args.out
    diff = float((y - reference).abs().max())
    print(f"wrote {path} ({args.format}) and {card_file}; max abs difference from PyTorch "
          f"on {tuple(x.shape)}: {diff:.3g}")
    if args.json:
        write_json(args.json, {"path": path, "card": card_file, "format": args.format,
                               "normalization_in_graph": embed,
                               "check_shape": list(x.shape), "max_abs_diff": diff})
    return 0


def _openvino(args, model) -> int:
    import torch

    from ..errors import UnetlabError
    from ..inference.calibration import load_calibration
    from ..inference.export import card_path_for, export_card
    from ..inference.openvino import (
        check_writable,
        load_openvino,
        require_openvino,
        save_openvino,
    )
    from ..preprocess import Preprocessing
    from ._common import optimized

    if args.format != "openvino":
        raise UnetlabError("--int8 and --calibration need --format openvino")
    if args.int8 and args.calibration is None:
        raise UnetlabError("--int8 needs --calibration DIR (a few of your own images)")
    if args.calibration is not None and not args.int8:
        raise UnetlabError("--calibration is only used with --int8")
    check_writable(args.out, args.overwrite)
    card = model.unetlab_card
    calibration = None
    if args.int8:  # the crop size checked (and capped to the images) before any work
        tile = args.tile_size
        if tile is None:  # 256, or for a valid-padding U-Net the valid size covering it
            from ..models.geometry import geometry_of

            geo = geometry_of(model)
            if geo.padding == "valid":
                from ..models.unet import valid_input_size

                tile = valid_input_size(256, geo.levels)
            else:
                tile = 256
        calibration = load_calibration(args.calibration, model, tile_size=tile,
                                       check_tile=True,
                                       preprocessing=Preprocessing.from_card(card))
    require_openvino()
    checks = calibration or [_example_input_of(model, args.check_size or 256)]
    # a file handed on runs on CPUs unknown here: the plain graph, no Winograd layers
    fast = optimized(model, backend="openvino", precision="int8" if args.int8 else "fp32",
                     calibration=calibration, winograd=False)
    if calibration is not None:
        fast.optimization["calibration"]["folder"] = str(args.calibration)
    # the IR is the bare network: the caller scales, normalises, resizes and pads
    card = export_card(card, format="openvino", normalization_in_graph=False)
    xml = Path(args.out)
    with _staged(xml, [xml.with_suffix(".bin"), card_path_for(xml)]) as staged:
        path = save_openvino(fast, staged, card=card)
        loaded = load_openvino(path)
        with torch.no_grad():
            pairs = [(model(x), loaded(x)) for x in checks]
        if any(tuple(a.shape) != tuple(b.shape) for a, b in pairs):
            raise UnetlabError(f"exported model gives shape {tuple(pairs[0][1].shape)}, "
                               f"PyTorch {tuple(pairs[0][0].shape)}")
    path = xml
    diff = max(float((b - a).abs().max()) for a, b in pairs)
    agree = sum(int((a.argmax(1) == b.argmax(1)).sum()) for a, b in pairs) / \
        sum(a[:, 0].numel() for a, _ in pairs)
    what = "int8" if args.int8 else "fp32"
    on = f"{len(checks)} calibration batch(es) of {tuple(checks[0].shape)}" if args.int8 \
        else str(tuple(checks[0].shape))
    print(f"wrote {path} (openvino {what}); on {on}: argmax agreement with PyTorch "
          f"{agree:.4f}, max abs logit difference {diff:.3g}")
    if args.json:
        write_json(args.json, {"path": path, "format": "openvino", "precision": what,
                               "optimization": fast.optimization, "argmax_agreement": agree,
                               "max_abs_diff": diff})
    return 0


def _example_input_of(model, size):
    """A check input of ``size`` the bare graph takes: a valid size for a valid-padding
    U-Net, else a multiple of the pooling factor (the IR does not pad)."""
    from ..inference.export import _example_input
    from ..models.geometry import geometry_of

    geo = geometry_of(model)
    if geo.padding == "valid":
        from ..models.unet import valid_input_size

        size = valid_input_size(size, geo.levels)
    else:
        size = -(-size // geo.divisor) * geo.divisor
    return _example_input(model, size)


@contextlib.contextmanager
def _staged(out: Path, companions):
    """Yield where to write ``out``: the same name in a private folder beside it. When
    the block succeeds, ``out``'s ``companions`` (its card, OpenVINO's .bin) and then
    ``out`` itself are moved onto their names (an earlier file is replaced only then);
    whatever happens, the folder goes, with anything left in it, and so do the folders
    made for ``out`` when nothing was moved."""
    from ..errors import UnetlabError

    out = Path(out)
    missing = [d for d in (out.parent, *out.parent.parents) if not d.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial",
                                      dir=out.parent))
    except OSError as exc:
        raise UnetlabError(f"cannot write {out}: {exc.strerror or exc}") from None
    moved = False
    try:
        yield stage / out.name
        for target in [*companions, out]:  # the model file last: complete once it is there
            source = stage / Path(target).name
            if source.exists():
                os.replace(source, target)
        moved = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not moved:
            for folder in missing:  # innermost first; only while empty
                try:
                    folder.rmdir()
                except OSError:
                    break
