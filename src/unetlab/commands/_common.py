"""Helpers shared by the sub-commands: JSON output, argument checks."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

from ..errors import UnetlabError


def add_json_argument(parser) -> None:
    parser.add_argument("--json", metavar="PATH", type=Path, default=None,
                        help="also write the results as JSON to PATH")


def add_precision_argument(parser, help: str) -> None:
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"),
                        help=help)


def optimized(model, **options):
    """``optimize_for_inference(model, **options)`` with its ValueErrors (an impossible
    precision, backend or device) as one-line UnetlabErrors."""
    from ..inference import optimize_for_inference

    try:
        return optimize_for_inference(model, **options)
    except ValueError as exc:
        raise UnetlabError(str(exc)) from None


def to_jsonable(obj):
    """Tensors, numpy values, paths and non-finite floats to plain JSON values."""
    if hasattr(obj, "tolist"):
        obj = obj.tolist()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(json.dumps(to_jsonable(obj), indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UnetlabError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


class MissingPath(UnetlabError, argparse.ArgumentTypeError):
    """A path that does not exist: argparse shows it as the argument's error, and code
    that calls :func:`existing_path` directly gets a UnetlabError."""


def existing_path(value: str) -> Path:
    """argparse type (or plain check): a path that must exist."""
    path = Path(value)
    if not path.exists():
        raise MissingPath(f"{path}: no such file or directory")
    return path
