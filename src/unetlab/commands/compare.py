"""``unetlab compare``: train several models under one setup and measure them side by side.

Suites (``--models`` is the default; several may be given):

- ``--models``: the architectures of the config (U-Net, SegNet, FCN, Res-UNet, ...);
- ``--upsampling``: one U-Net with transpose / bilinear / nearest / max-unpooling;
- ``--losses``: one model with CE, weighted CE, Dice, Generalized Dice, Dice+CE.

Every entry is trained once per seed (``--seeds N`` or ``seeds:`` in the file); the
tables show mean +- std over seeds and a verdict only where the intervals separate.
Results go to ``--out`` (``OUT/<suite>/results.csv``, ``results.md``, plots, one folder
per entry and seed). A run already finished in ``--out`` with the same setup is not
retrained.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ._common import add_json_argument


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="train and measure models side by side (accuracy, cost, artifacts)",
        description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=None,
                   help="comparison YAML (e.g. configs/compare_camvid.yaml)")
    p.add_argument("--quick", action="store_true",
                   help="synthetic data, tiny models: configs/compare_quick.yaml")
    p.add_argument("--models", action="store_true", help="run the architecture suite")
    p.add_argument("--upsampling", action="store_true", help="run the upsampling suite")
    p.add_argument("--losses", action="store_true", help="run the loss suite")
    p.add_argument("--out", type=Path, default=Path("runs/compare"),
                   help="output folder (default: runs/compare)")
    p.add_argument("--data", metavar="PATH", default=None,
                   help="dataset root, overrides base.data.root")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="SECTION.KEY=VALUE",
                   help="override the shared training config, e.g. train.time_budget_s=60")
    p.add_argument("--seeds", type=int, default=None, metavar="N",
                   help="train every entry with N seeds (train.seed, +1, ...); overrides "
                        "the file's seeds (default: the file's, else 1)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, auto")
    p.add_argument("--only", metavar="LABEL[,LABEL]", default=None,
                   help="run only these entries (their runs and summaries; the suite's "
                        "tables need a run without --only, which reuses these runs)")
    p.add_argument("--no-resume", action="store_true",
                   help="retrain entries even when their results exist")
    add_json_argument(p)
    p.set_defaults(run=run)


def _command(args, path, suite: str) -> str:
    """The command line that reproduces one suite (for the report)."""
    parts = ["unetlab compare", f"--config {path}", f"--{suite}"]
    if args.seeds is not None:
        parts.append(f"--seeds {args.seeds}")
    if args.data is not None:
        parts.append(f"--data {args.data}")
    parts += [f"--set {o}" for o in args.overrides]
    if args.device != "cpu":
        parts.append(f"--device {args.device}")
    return " ".join(parts)


def run(args) -> int:
    from tqdm import tqdm

    from ..compare import load_spec, run_suite
    from ..compare.spec import quick_config_path
    from ..errors import UnetlabError
    from ..training.builder import select_device
    from ._common import write_json

    if args.config is None and not args.quick:
        raise UnetlabError("give --config FILE (e.g. configs/compare_camvid.yaml) or --quick")
    path = args.config if args.config is not None else quick_config_path()
    device = str(select_device(args.device))
    spec = load_spec(path, overrides=args.overrides, data_root=args.data, seeds=args.seeds)
    suites = [s for s in ("models", "upsampling", "losses") if getattr(args, s)] or ["models"]
    missing = [s for s in suites if s not in spec.suites]
    if missing:
        raise UnetlabError(f"{path} has no {', '.join(missing)} section; it has: "
                           f"{', '.join(spec.suites) or 'none'}")
    only = None
    if args.only is not None:
        only = list(dict.fromkeys(o.strip() for o in args.only.split(",") if o.strip()))
        if not only:
            raise UnetlabError("--only needs at least one entry label (e.g. --only unet,fcn8s)")
        labels = {e.label for suite in suites for e in spec.suites[suite]}
        unknown = [o for o in only if o not in labels]
        if unknown:
            raise UnetlabError(f"--only {', '.join(unknown)}: no such entry in the "
                               f"{', '.join(suites)} suite(s) of {path}; they have: "
                               f"{', '.join(sorted(labels))}")
        suites = [s for s in suites if any(e.label in only for e in spec.suites[s])]
    summary: dict = {}
    for suite in suites:
        chosen = [o for o in only if o in {e.label for e in spec.suites[suite]}] \
            if only else None
        n = len(chosen) if chosen else len(spec.suites[suite])
        bar = tqdm(total=n * len(spec.seeds), desc=suite, unit="run",
                   file=sys.stderr, disable=None)

        def report(i, total, row, reused, bar=bar, suite=suite):
            bar.update(1)
            how = "reused" if reused else f"trained {row['train_steps']} steps"
            miou = row.get("miou")
            bar.write(f"{suite} {i + 1}/{total} {row['label']} seed {row.get('seed')}: "
                      f"mIoU {miou if miou is None else f'{miou:.3f}'}, "
                      f"{row['parameters']:,} params, {row['latency_ms']:.1f} ms ({how})",
                      file=sys.stderr)

        rows = run_suite(spec, suite, args.out, device=device, resume=not args.no_resume,
                         callback=report, command=_command(args, path, suite), only=chosen)
        bar.close()
        summary[suite] = {row["label"]: row for row in rows}
        if chosen:
            print(f"{suite}: {', '.join(chosen)} done; run without --only for the table")
        else:
            print(f"{suite}: {args.out / suite / 'results.md'}")
    if args.json is not None:
        write_json(args.json, summary)
    return 0
