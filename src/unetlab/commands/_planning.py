"""Arguments shared by ``unetlab plan`` and ``unetlab fit``."""

from __future__ import annotations

from pathlib import Path

from ..errors import UnetlabError


def add_planning_arguments(p, *, required: bool = True) -> None:
    p.add_argument("--dataset", required=required, metavar="FORMAT",
                   help="folder, isbi2012, camvid, voc, cityscapes, membranes, shapes")
    p.add_argument("--data", type=Path, default=None, metavar="PATH",
                   help="dataset root (not needed for membranes/shapes)")
    p.add_argument("--budget", required=required, metavar="DURATION",
                   help="wall-clock budget: 90s, 25m, 2h, 1h30m")
    p.add_argument("--option", dest="options", action="append", default=[],
                   metavar="KEY=VALUE", help="dataset option (repeatable), e.g. "
                   "--option image_mode=RGB")
    p.add_argument("--device", default=None, help="cpu, cuda or auto (default)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    p.add_argument("--probe-cache", type=Path, default=None, metavar="DIR",
                   help="where machine probes are cached (default ~/.cache/unetlab)")
    p.add_argument("--no-probe-cache", action="store_true",
                   help="probe again and do not cache the result")
    p.add_argument("--probe", type=Path, default=None, metavar="PROBE.json",
                   help="use a saved probe (RUN_DIR/probe.json of an earlier fit) instead of "
                   "measuring: the same fingerprint and probe give the same plan")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output")


def saved_probe(args) -> dict | None:
    from ..planning.session import load_probe

    return None if args.probe is None else load_probe(args.probe)


def planning_inputs(args) -> tuple[dict, float]:
    """(dataset options, budget in seconds), with one-line errors."""
    from ..data import SYNTHETIC
    from ..planning import parse_duration
    from .evaluate import parse_options

    if args.data is None and args.dataset not in SYNTHETIC:
        raise UnetlabError(f"--data PATH is required for dataset {args.dataset!r}")
    if args.data is not None and not args.data.exists():
        raise UnetlabError(f"{args.data}: no such file or directory")
    return parse_options(args.options), parse_duration(args.budget)
