"""``unetlab fit --dataset FORMAT --data PATH --budget 30m --out RUN_DIR``: plan, train,
evaluate and report within the budget; ``RUN_DIR/checkpoints/best`` is the model."""

from __future__ import annotations

import shutil
from pathlib import Path

from ._common import add_json_argument, write_json
from ._planning import add_planning_arguments, planning_inputs, saved_probe


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "fit", help="plan, train, evaluate and report within a time budget",
        description="Fingerprint the dataset, probe this machine, plan a config (RUN_DIR/"
        "plan.yaml, with reasons), train it, evaluate the best checkpoint on the "
        "validation split at native resolution and write RUN_DIR/report.md (curves, "
        "per-class table, overlays). The budget bounds the whole command.")
    add_planning_arguments(p)
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR",
                   help="run folder (must not exist unless --overwrite)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_json_argument(p)
    p.set_defaults(run=run)


FIT_OUTPUTS = ("plan.yaml", "report.md", "report.json", "fingerprint.json", "probe.json",
               "overlays")


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an existing, non-empty RUN_DIR unless ``--overwrite``; with it, only what
    fit and its training wrote is removed (other files in the folder stay)."""
    from ..errors import UnetlabError
    from ..training.trainer import RUN_OUTPUTS

    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise UnetlabError(f"--out {out} exists and is not a folder")
    if not overwrite:
        raise UnetlabError(f"{out} exists and is not empty; pass --overwrite to replace it")
    if not (out / "plan.yaml").is_file():
        raise UnetlabError(f"{out} is not a run folder of unetlab fit (no plan.yaml); "
                           "not replacing it")
    for name in FIT_OUTPUTS + RUN_OUTPUTS:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def run(args) -> int:
    from ..planning.fit import fit

    options, budget = planning_inputs(args)
    _check_out(args.out, args.overwrite)
    report = fit(args.dataset, args.data, budget, args.out, options=options,
                 device=args.device, seed=args.seed, cache_dir=args.probe_cache,
                 use_cache=not args.no_probe_cache, progress=not args.no_progress,
                 probe=saved_probe(args))
    print((args.out / "report.md").read_text(), end="")
    print(f"run folder: {args.out} (plan.yaml, report.md, checkpoints/best); "
          f"{report['timings']['total_s']:.0f}s of {budget:.0f}s")
    if args.json is not None:
        write_json(args.json, report)
    return 0
