"""The ``unetlab`` command line: ``unetlab demo|train|evaluate|predict|compare|stats|export|info``.

Every bad input ends in one line on stderr (``unetlab <command>: error: ...``) and a
non-zero exit status; never a traceback (set ``UNETLAB_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from . import __version__
from .commands import COMMANDS
from .limits import pixel_limit


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unetlab",
        description="Train, evaluate, serve and compare U-Net, Res-UNet, Attention U-Net, "
        "FCN and SegNet for semantic segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"unetlab {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".commands.{name}", __package__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.commands.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        from .commands._common import check_json_target

        check_json_target(args)  # --json never replaces an input or an earlier file
        with pixel_limit(getattr(args, "max_pixels", None)):  # --max-pixels
            return int(args.run(args) or 0)
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", None)
        hint = hint(args) if hint is not None else None
        print(f"unetlab {args.command}: interrupted" + (f"; {hint}" if hint else ""),
              file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        if os.environ.get("UNETLAB_DEBUG"):
            raise
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"unetlab {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
