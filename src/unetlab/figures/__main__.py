"""``python -m unetlab.figures --out docs/figures [--only NAME ...]``: regenerate the
docs' figures."""

from __future__ import annotations

import argparse
import logging
import sys

from . import list_figures, make_figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unetlab.figures",
                                     description="Regenerate the documentation figures.")
    parser.add_argument("--out", default="docs/figures", help="output folder")
    parser.add_argument("--only", nargs="+", choices=list_figures(), metavar="NAME",
                        help=f"figures to make (default: all): {', '.join(list_figures())}")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make_figures(args.out, args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
