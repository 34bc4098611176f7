"""``unetlab plan --dataset FORMAT --data PATH --budget 30m --out plan.yaml``: measure
the dataset and the machine, and write a training config with a reason per choice."""

from __future__ import annotations

from pathlib import Path

from ._common import add_json_argument, write_json
from ._planning import add_planning_arguments, planning_inputs, saved_probe


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "plan", help="plan a training run for a dataset, this machine and a time budget",
        description="Fingerprint the dataset (sizes, intensities, class frequencies, object "
        "size, thinnest structure), probe this machine's training speed (cached), and write "
        "an ordinary YAML config for `unetlab train` with a comment per choice.")
    add_planning_arguments(p)
    p.add_argument("--out", type=Path, required=True, metavar="PLAN.yaml",
                   help="the config file to write")
    add_json_argument(p)
    p.set_defaults(run=run)


def run(args) -> int:
    import torch
    import yaml

    from .._io import atomic_write_text
    from ..errors import UnetlabError
    from ..planning.render import render_plan
    from ..planning.session import plan_dataset
    from ..training.builder import select_device

    options, budget = planning_inputs(args)
    if args.out.exists() and not args.overwrite:
        raise UnetlabError(f"{args.out} exists; pass --overwrite to replace it")
    device = select_device(args.device or "auto")
    planned = plan_dataset(args.dataset, args.data, options, budget, device=device,
                           out_dir=Path("runs") / f"fit-{args.dataset}", seed=args.seed or 0,
                           cache_dir=args.probe_cache, use_cache=not args.no_probe_cache,
                           count_spent=False, probe=saved_probe(args))
    text = render_plan(planned.plan, planned.fingerprint, planned.probe, budget)
    try:  # the plan must be a valid config
        from ..config import config_from_dict

        config_from_dict(yaml.safe_load(text))
    except UnetlabError as exc:
        raise UnetlabError(f"the plan is not a valid config ({exc}); please report this") \
            from None
    atomic_write_text(args.out, text)
    print(text, end="")
    print(f"# wrote {args.out}  (train it: unetlab train {args.out})")
    if args.json is not None:
        write_json(args.json, {"config": planned.plan.config, "reasons": planned.plan.reasons,
                               "expected": planned.plan.expected,
                               "fingerprint": planned.fingerprint.to_dict(),
                               "probe": planned.probe, "device": str(torch.device(device))})
    return 0
