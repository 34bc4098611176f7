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
        "per-class table, overlays). The budget bounds the whole command. An interrupted "
        "fit continues with `unetlab fit --resume --out RUN_DIR`.")
    add_planning_arguments(p, required=False)
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted fit in RUN_DIR from checkpoints/last "
                   "(its plan, budget and seed; the time already trained counts), then "
                   "evaluate and report; give only --out (and --no-progress, --json)")
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR",
                   help="run folder (must not exist unless --overwrite)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_json_argument(p)
    p.set_defaults(run=run, interrupt_hint=_interrupt_hint)


def _interrupt_hint(args) -> str | None:
    """After Ctrl-C: how to go on, when the run has a checkpoint to go on from."""
    from ..planning.fit import FIT_STATE, has_checkpoint

    out = getattr(args, "out", None)
    if out is not None and (out / FIT_STATE).is_file() and has_checkpoint(out):
        return f"continue it with: unetlab fit --resume --out {out}"
    return None


# after planning's fit.json (FIT_STATE, removed first: a half-removed folder is then no
# run to resume)
FIT_OUTPUTS = ("plan.yaml", "report.md", "report.json", "fingerprint.json", "probe.json",
               "overlays")


def _check_out(out: Path, overwrite: bool) -> None:
    """Refuse an existing, non-empty RUN_DIR unless ``--overwrite``; with it, only what
    fit and its training wrote is removed (other files in the folder stay)."""
    from ..errors import UnetlabError
    from ..planning.fit import FIT_STATE
    from ..training.trainer import RUN_OUTPUTS

    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise UnetlabError(f"--out {out} exists and is not a folder")
    if not overwrite:
        resumable = (out / FIT_STATE).is_file() and not (out / "report.json").is_file()
        raise UnetlabError(f"{out} exists and is not empty; pass --overwrite to replace it"
                           + (f", or continue the interrupted fit with: unetlab fit "
                              f"--resume --out {out}" if resumable else ""))
    if not (out / "plan.yaml").is_file():
        raise UnetlabError(f"{out} is not a run folder of unetlab fit (no plan.yaml); "
                           "not replacing it")
    for name in (FIT_STATE, *FIT_OUTPUTS, *RUN_OUTPUTS):
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


_PLANNING_ONLY = ("dataset", "data", "budget", "probe", "probe_cache", "seed", "device")


def run(args) -> int:
    from ..errors import UnetlabError
    from ..planning.fit import fit, resume_fit

    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in _PLANNING_ONLY
                 if getattr(args, k) is not None]
        given += [f for f, on in (("--option", args.options), ("--overwrite", args.overwrite),
                                  ("--no-probe-cache", args.no_probe_cache)) if on]
        if given:
            raise UnetlabError(f"--resume continues the run in --out with its own plan; leave "
                               f"out {', '.join(given)}")
        if not args.out.is_dir():
            raise UnetlabError(f"--out {args.out}: no such run folder to resume")
        report = resume_fit(args.out, progress=not args.no_progress)
        budget = report["budget_s"]
    else:
        missing = [f for f, v in (("--dataset", args.dataset), ("--budget", args.budget))
                   if v is None]
        if missing:
            raise UnetlabError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} "
                               "required (or --resume with --out)")
        options, budget = planning_inputs(args)
        _check_out(args.out, args.overwrite)
        report = fit(args.dataset, args.data, budget, args.out, options=options,
                     device=args.device or "auto", seed=args.seed or 0, cache_dir=args.probe_cache,
                     use_cache=not args.no_probe_cache, progress=not args.no_progress,
                     probe=saved_probe(args))
    print((args.out / "report.md").read_text(), end="")
    print(f"run folder: {args.out} (plan.yaml, report.md, checkpoints/best); "
          f"{report['timings']['total_s']:.0f}s of {budget:.0f}s")
    if args.json is not None:
        write_json(args.json, report)
    return 0
