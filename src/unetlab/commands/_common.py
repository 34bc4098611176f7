"""Helpers shared by the sub-commands: JSON output, argument checks."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .._io import to_jsonable, write_json  # noqa: F401  (re-exported for the commands)
from ..errors import UnetlabError


def add_json_argument(parser) -> None:
    parser.add_argument("--json", metavar="PATH", type=Path, default=None,
                        help="also write the results as JSON to PATH")


def add_precision_argument(parser, help: str) -> None:
    parser.add_argument("--precision", default="auto",
                        choices=("auto", "fp32", "bf16", "fp16", "int8"), help=help)


def add_tta_argument(parser) -> None:
    """--tta [MODE]: test-time augmentation, by default over the views the model's
    training augmentation showed it (its card)."""
    parser.add_argument("--tta", nargs="?", const="auto", default=None,
                        choices=("auto", "dihedral", "flips", "hflip", "vflip"),
                        help="test-time augmentation: average the model's outputs over "
                        "flipped/rotated views. Bare --tta (auto): the views its training "
                        "showed it, from the model card (all 8 flips and 90-degree turns "
                        "for paper/strong/flips, left-right mirrors only for upright road "
                        "scenes); or name them: dihedral, flips, hflip, vflip")


def add_backend_arguments(parser, *, eager: bool = True) -> None:
    """--backend and --calibration (next to --precision): how the model is run."""
    choices = ("auto", "torch", "onnxruntime", "openvino") + (("eager",) if eager else ())
    parser.add_argument("--backend", default="auto", choices=choices,
                        help="auto (default): the fastest backend that keeps fp32's answers "
                        "on this CPU, from a short cached probe; torch: folded batch norm + "
                        "channels-last; onnxruntime / openvino: the exported graph"
                        + ("; eager: the model as is" if eager else ""))
    parser.add_argument("--calibration", type=existing_path, default=None, metavar="DIR",
                        help="a folder of your own images: lets --precision int8 (OpenVINO "
                        "+ NNCF) and auto's reduced precisions be calibrated and checked")


def inference_model(model, args, *, device, preprocessing=None, tile_size=None,
                    batch_size=1, size=None):
    """The model as ``args.backend`` / ``args.precision`` / ``args.calibration`` ask
    (``eager``: unchanged); prints what ``auto`` chose. One-line UnetlabErrors.

    The input the run will feed it (``auto``'s probe, the OpenVINO graph's Winograd
    layers): ``batch_size`` tiles of ``tile_size``, else of ``size`` (evaluate's whole
    images), else of predict's default tile; at the card's resolution scale."""
    backend, precision = args.backend, args.precision
    if backend == "eager":
        if precision not in ("auto", "fp32"):
            raise UnetlabError(f"--precision {precision} needs --backend torch, openvino "
                               "or auto (eager runs the model as it is)")
        if args.calibration is not None:
            raise UnetlabError("--calibration needs --backend openvino or auto")
        return model
    calibration = None
    if args.calibration is not None:
        from ..inference.calibration import load_calibration

        calibration = load_calibration(args.calibration, model, tile_size=tile_size or 256,
                                       preprocessing=preprocessing, batch_size=batch_size)
    elif precision == "int8":
        raise UnetlabError("--precision int8 needs --calibration DIR (a few of your own "
                           "images to calibrate the quantization)")
    dims = int(getattr(model, "spatial_dims", 2))
    side = tile_size or size or (96 if dims == 3 else 256)  # predict's default tiles
    sides = tuple(side) if isinstance(side, tuple | list) else (side,) * dims
    card = getattr(model, "unetlab_card", None) or {}
    scale = float((card.get("input") or {}).get("scale", 1.0))  # the model sees it scaled
    sides = tuple(max(1, round(s * scale)) for s in sides)
    if not tile_size and size:  # evaluate's whole image: the square tile it runs
        from ..training.evaluation import _whole_tile

        sides = (_whole_tile(model, sides),) * dims
    shape = (batch_size, int(getattr(model, "in_channels", 1)), *sides)
    fast = optimized(model, backend=backend, device=device, precision=precision,
                     calibration=calibration, probe_shape=shape)
    choice = getattr(fast, "choice", None)
    if choice is not None and os.environ.get("RANK", "0") == "0":  # torchrun: rank 0 says it
        how = "cached probe" if choice.get("cached") else "probe"
        everything = choice.get("keep_fp32") == []  # int8 including the first conv and head
        print(f"backend: {choice['backend']} {choice['precision']}"
              + (" (every layer)" if everything else "")
              + (f" ({how})" if "cached" in choice else ""))
        from ..inference.auto import AGREEMENT, candidate_name

        agreements = choice.get("agreement") or {}
        name = candidate_name(choice["backend"], choice["precision"], choice.get("keep_fp32"))
        if agreements.get(name, 1.0) < AGREEMENT:
            print(f"warning: {name} agrees with fp32 on {agreements[name]:.4f} of the probe's "
                  f"pixels (below {AGREEMENT}); kept because --precision asked for it",
                  file=sys.stderr)
    return fast


def optimized(model, **options):
    """``optimize_for_inference(model, **options)`` with its ValueErrors (an impossible
    precision, backend or device) as one-line UnetlabErrors."""
    from ..inference import optimize_for_inference

    try:
        return optimize_for_inference(model, **options)
    except UnetlabError:
        raise
    except ValueError as exc:
        raise UnetlabError(str(exc)) from None


class MissingPath(UnetlabError, argparse.ArgumentTypeError):
    """A path that does not exist: argparse shows it as the argument's error, and code
    that calls :func:`existing_path` directly gets a UnetlabError."""


def existing_path(value: str) -> Path:
    """argparse type (or plain check): a path that must exist."""
    path = Path(value)
    if not path.exists():
        raise MissingPath(f"{path}: no such file or directory")
    return path


def add_max_pixels_argument(parser) -> None:
    """``--max-pixels N``: the largest image decoded (see :mod:`unetlab.limits`)."""
    from ..limits import DEFAULT_MAX_PIXELS, ENV_VAR

    parser.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help="refuse images whose header declares more than N pixels "
                        f"(default {DEFAULT_MAX_PIXELS:,}, or ${ENV_VAR})")


def safe_name(value: str, what: str) -> str:
    """``value`` when it can be one file or folder name inside an output folder; a
    one-line error when it would leave it (``..``, a path separator, an absolute path)."""
    text = str(value)
    if not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text \
            or text != text.strip():
        raise UnetlabError(f"{what} {value!r} cannot be used as a file name inside the output "
                           "folder (no '/', '\\', '..' or surrounding spaces)")
    return text


def check_not_input(out: Path, inputs, what: str = "--out") -> None:
    """A one-line error when ``out`` is one of the ``inputs`` or lies inside an input
    folder (a checkpoint folder): nothing may write over what it reads."""
    target = Path(out).resolve()
    for item in inputs:
        item = Path(item).resolve()
        if target == item or (item.is_dir() and item in target.parents):
            raise UnetlabError(f"{what} {out} would write over the input {item}; choose "
                               "another path")


def check_json_target(args, attr: str = "json") -> None:
    """``--json PATH`` (every command that has it; or another output-file option,
    ``attr``), checked before any work: never one of the command's inputs, and an
    existing file only with ``--overwrite`` (commands without that flag: choose another
    path)."""
    path = getattr(args, attr, None)
    flag = "--" + attr.replace("_", "-")
    if path is None:
        return
    target = Path(path).resolve()
    inputs = []
    for name in ("inputs", "checkpoint", "config", "data", "calibration"):
        value = getattr(args, name, None)
        inputs += value if isinstance(value, list) else [value] if value is not None else []
    for item in inputs:
        if Path(item).resolve() == target:
            raise UnetlabError(f"{flag} {path} is an input of this command; choose another path")
    if target.is_dir():
        raise UnetlabError(f"{flag} {path} is a folder; give a file path")
    clash = _own_output(args, target)
    if clash:
        raise UnetlabError(f"{flag} {path} {clash}; choose another path")
    kind = ".csv" if attr == "per_image_csv" else ".json"
    if target.exists() and target.suffix.lower() != kind:
        # --overwrite is the run's (or the plan's): it does not make any file fair game
        raise UnetlabError(f"{flag} {path} exists and is not a {kind} file (--overwrite "
                           f"would replace only a {kind} file there); choose another path")
    if target.exists() and not getattr(args, "overwrite", False):
        hint = "pass --overwrite to replace it" if hasattr(args, "overwrite") else \
            "choose another path or remove it"
        raise UnetlabError(f"{flag} {path} already exists; {hint}")


#: commands whose --out is one file (their side files are named after it: X.onnx.card.json,
#: X.bin beside X.xml); the others' --out is a folder they fill
_FILE_OUT = ("export", "plan")


def _folder_outputs(command: str, relative: Path) -> bool:
    """Whether ``relative`` (a path inside a folder command's --out) is one of the
    files or folders that command writes there."""
    from ..training.trainer import RUN_OUTPUTS

    top = relative.parts[0]
    if command == "predict":
        from ..inference.manifest import MANIFEST
        from ..inference.outputs import OUTPUT_NAME

        return relative.name == MANIFEST or bool(OUTPUT_NAME.match(relative.name))
    if command == "fit":
        from ..planning.fit import FIT_STATE
        from .fit import FIT_OUTPUTS

        return top in (*RUN_OUTPUTS, *FIT_OUTPUTS, FIT_STATE)
    if command == "demo":
        return top in (*RUN_OUTPUTS, "demo.json", "predictions")
    if command == "compare":
        from ..compare.spec import SUITES

        return top in SUITES
    return top in RUN_OUTPUTS  # train


def _own_output(args, target: Path) -> str | None:
    """Why ``target`` is a file the command itself writes (a report there would replace
    the model, the run's state or a prediction, or be replaced by them), else None."""
    command, out = getattr(args, "command", None), getattr(args, "out", None)
    if out is None and command == "train":
        try:  # the run folder named by the config
            from .train import resolve_config

            out = resolve_config(args).train.out_dir
        except Exception:  # the config's own errors are reported by the command
            out = None
    if out is None or command is None:
        return None
    shown = out
    out = Path(out).resolve()
    if command in _FILE_OUT:
        if target == out or (target.parent == out.parent and target.name.startswith(
                out.name + ".")) or target in (out.with_suffix(".bin"), out.with_suffix(".xml")):
            return f"is a file this command writes (--out {shown})"
        return None
    if target == out:
        return f"is the command's output folder {shown}"
    if out in target.parents and _folder_outputs(command, target.relative_to(out)):
        return f"is a file this command writes in {shown}"
    return None


def free_name(path: Path) -> Path:
    """``path``, or ``stem-2.suffix``, ``stem-3.suffix``, ... : the first that does not
    exist (a default output name that keeps earlier results)."""
    path = Path(path)
    n = 2
    while path.exists():
        path = path.with_name(f"{path.stem.rsplit('-', 1)[0] if n > 2 else path.stem}-{n}"
                              f"{path.suffix}")
        n += 1
    return path


def check_new_file(path: Path, overwrite: bool, what: str = "--out") -> None:
    """A one-line error when ``path`` exists and ``overwrite`` is not set."""
    if Path(path).exists() and not overwrite:
        raise UnetlabError(f"{what} {path} already exists; pass --overwrite to replace it")
