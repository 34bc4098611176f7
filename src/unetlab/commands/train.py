"""``unetlab train [CONFIG] [--set key=value ...] [--resume]``: train a model.

Also works under ``torchrun --nproc_per_node=N -m unetlab train ...`` (DDP; only rank 0
writes). ``--resume`` continues the run in ``train.out_dir`` (or ``--out``) from
``checkpoints/last``; without CONFIG it reads that run's saved ``config.yaml``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ._common import add_json_argument, add_max_pixels_argument, write_json

log = logging.getLogger(__name__)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a segmentation model from a YAML config",
        description="Train a model from a YAML config (default: synthetic membranes). "
        "Writes config.yaml, metrics.csv, curves.png, checkpoints/{last,best} and "
        "summary.json into train.out_dir.")
    p.add_argument("config", nargs="?", type=Path, default=None,
                   help="YAML config (see configs/); default: the built-in defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a config value, e.g. "
                   "--set train.epochs=50 (repeatable)")
    p.add_argument("--out", type=Path, default=None, help="run folder (train.out_dir)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in the run folder from checkpoints/last")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a run folder that holds an earlier one, removing "
                   "the earlier run's outputs (default: refuse)")
    add_max_pixels_argument(p)
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config and exit")
    add_json_argument(p)
    p.set_defaults(run=run, interrupt_hint=_interrupt_hint)


def _interrupt_hint(args) -> str | None:
    """After Ctrl-C: how to continue, when the run saved a checkpoint to continue from."""
    try:
        out = Path(resolve_config(args).train.out_dir)
    except Exception:  # the config itself was the problem: nothing to continue
        return None
    from ..training.checkpoint import checkpoint_exists

    if checkpoint_exists(out / "checkpoints" / "last"):
        return (f"continue it from its last checkpoint with: unetlab train --out {out} "
                "--resume")
    return None


def resolve_config(args):
    """The config from CONFIG (or the run's saved one when resuming) plus overrides."""
    from ..config import load_config

    overrides = list(args.overrides)
    if args.out is not None:
        overrides.append(f"train.out_dir={args.out}")
    if args.max_pixels is not None:
        overrides.append(f"data.max_pixels={args.max_pixels}")
    path = args.config
    if path is None and args.resume and args.out is not None:
        saved = Path(args.out) / "config.yaml"
        if saved.is_file():
            path = saved
    return load_config(path, overrides)


def run(args) -> int:
    from ..config import dump_config
    from ..training import train

    cfg = resolve_config(args)
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    if args.resume and args.overwrite:
        from ..errors import UnetlabError

        raise UnetlabError("--resume continues the run; --overwrite replaces it: choose one")
    summary = train(cfg, resume=args.resume, overwrite=args.overwrite)
    if os.environ.get("RANK", "0") != "0":  # torchrun: only rank 0 reports
        return 0
    if args.json is not None:
        write_json(args.json, summary)
    best = summary.get("best_value")
    best_txt = f", best {summary['best_metric']} = {best:.4f} (epoch {summary['best_epoch']})" \
        if best is not None else ""
    print(f"run folder: {summary['out_dir']} ({summary['reason']} after "
          f"{summary['steps']} steps{best_txt})")
    return 0
