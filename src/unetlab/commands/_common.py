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
