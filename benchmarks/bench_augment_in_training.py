"""What an augmentation preset costs inside training, against what the planner measures.

The planner times each preset alone (``measure_input``: augment decoded tiles in a
loop) and adds that time to the network's step. Whether that is what the preset costs
between real training steps (caches cold after a backward pass, the torch thread pool
just released) is measured here in one process, so that a slow spell of the machine
falls on every preset alike: one trainer built from a config (e.g. a fit's
``RUN_DIR/config.yaml``), one data loader per preset (no workers, as the plan has on a
CPU), and rounds of ``--steps`` training steps per preset in rotating order. Also timed
in the same rounds: the same steps on one fixed batch (the network alone) and the
presets' augmentation alone, as the planner does it.

    python benchmarks/bench_augment_in_training.py runs/isbi/config.yaml \\
        --presets paper light --rounds 5 --steps 8 [--json out.json]

Prints per preset: ms a step in training, minus the network alone, per tile; and the
planner's ms a tile. Every line names the CPU and its extensions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from torch.utils.data import DataLoader


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", type=Path, help="a training config (a fit's config.yaml)")
    p.add_argument("--presets", nargs="+", default=["paper", "light"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=8, help="training steps per preset a round")
    p.add_argument("--cv2-threads", type=int, default=None,
                   help="OpenCV's thread count for the augmentation (default: OpenCV's own)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if args.cv2_threads is not None:
        import cv2

        cv2.setNumThreads(args.cv2_threads)
    if not args.config.is_file():
        print(f"bench_augment_in_training: {args.config}: no such config", file=sys.stderr)
        return 2
    if args.json is not None and args.json.exists():
        print(f"bench_augment_in_training: {args.json} exists; not replacing it",
              file=sys.stderr)
        return 2

    from unetlab.compare.stats import machine_description
    from unetlab.config import load_config
    from unetlab.data import build_dataset, build_transforms
    from unetlab.errors import UnetlabError
    from unetlab.planning.session import measure_input
    from unetlab.training.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        try:
            cfg = load_config(args.config, [f"train.out_dir={tmp}/run",
                                            "train.progress=false"])
            trainer = Trainer(cfg)
        except (UnetlabError, ValueError, OSError) as exc:
            print(f"bench_augment_in_training: {exc}", file=sys.stderr)
            return 2
        d = cfg.data
        if int(getattr(trainer.net, "spatial_dims", 2)) != 2:
            print("bench_augment_in_training: 2-D configs only", file=sys.stderr)
            return 2
        base = dict(d.options or {})
        options = {**base, "scale": d.scale} if d.scale != 1.0 else base
        loaders = {}
        for preset in args.presets:
            ds = build_dataset(d.dataset, d.root, split=d.split, cache=True,
                               transform=build_transforms(preset, d.tile_size), **options)
            if len(ds) < d.batch_size:
                print(f"bench_augment_in_training: {len(ds)} training items, fewer than "
                      f"the batch of {d.batch_size}", file=sys.stderr)
                return 2
            loaders[preset] = DataLoader(ds, batch_size=d.batch_size, shuffle=True,
                                         num_workers=0, drop_last=True)
        iters = {k: iter(v) for k, v in loaders.items()}

        def next_batch(preset):
            try:
                return next(iters[preset])
            except StopIteration:
                iters[preset] = iter(loaders[preset])
                return next(iters[preset])

        fixed = next_batch(args.presets[0])
        for _ in range(3):  # warm-up: kernels, caches, the decoded images
            trainer.train_step(fixed, first=True, last=True)
            for preset in args.presets:
                next_batch(preset)
        names = ["network alone", *args.presets]
        times = {k: [] for k in names}
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                t = time.perf_counter()
                for _ in range(args.steps):
                    batch = fixed if name == "network alone" else next_batch(name)
                    trainer.train_step(batch, first=True, last=True)
                times[name].append((time.perf_counter() - t) / args.steps)
        # as the planner counts it: timed at scale 1, times scale squared
        alone = {pr: measure_input(d.dataset, d.root, base, pr, d.tile_size,
                                   time_limit_s=2.0) for pr in args.presets}
        alone = {pr: None if v is None else v * d.scale ** 2 for pr, v in alone.items()}
        device = trainer.device.type
        trainer._close_workers()

    net = statistics.median(times["network alone"])
    print(f"machine: {machine_description(device)}")
    print(f"config {args.config}: tile {d.tile_size}, batch {d.batch_size}, "
          f"{args.rounds} rounds x {args.steps} steps, median")
    print(f"{'':16s} {'ms a step':>10s} {'minus net':>10s} {'ms a tile':>10s} "
          f"{'planner ms a tile':>18s}")
    print(f"{'network alone':16s} {net * 1e3:10.1f}")
    rows = {"network_alone_ms": net * 1e3, "presets": {}}
    for preset in args.presets:
        step = statistics.median(times[preset])
        extra = (step - net) / d.batch_size
        planner = alone[preset]
        print(f"{preset:16s} {step * 1e3:10.1f} {(step - net) * 1e3:10.1f} "
              f"{extra * 1e3:10.1f} {planner * 1e3 if planner else float('nan'):18.1f}")
        rows["presets"][preset] = {"step_ms": step * 1e3, "tile_ms_in_training": extra * 1e3,
                                   "planner_tile_ms": None if planner is None
                                   else planner * 1e3,
                                   "rounds_ms": [t * 1e3 for t in times[preset]]}
    if args.json is not None:
        rows.update({"machine": machine_description(device), "config": str(args.config),
                     "rounds": args.rounds, "steps": args.steps,
                     "network_rounds_ms": [t * 1e3 for t in times["network alone"]]})
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
