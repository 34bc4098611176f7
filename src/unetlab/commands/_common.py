"""Helpers shared by the sub-commands: JSON output, argument checks."""

from __future__ import annotations

import argparse
from pathlib import Path

from .._io import to_jsonable, write_json  # noqa: F401  (re-exported for the commands)
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


def check_new_file(path: Path, overwrite: bool, what: str = "--out") -> None:
    """A one-line error when ``path`` exists and ``overwrite`` is not set."""
    if Path(path).exists() and not overwrite:
        raise UnetlabError(f"{what} {path} already exists; pass --overwrite to replace it")
