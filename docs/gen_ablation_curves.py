"""Learning curves of a ``unetlab compare`` suite run with several seeds.

    python docs/gen_ablation_curves.py runs/ablation
    python docs/gen_ablation_curves.py runs/table1 --out docs/figures/table1_curves.png \
        --title "CamVid at 180x240, Table 1"

Reads ``<out>/models/<label>/seed_<s>/run/metrics.csv`` (written by ``unetlab compare``,
finished runs only) and draws, per entry, against the optimizer step: the training loss
(left; smoothed over 5 epochs) and the validation metric (right; ``--metric``, default
``miou``): the mean over seeds (line) and the range of the seeds (band). It shows whether
the entries had reached a plateau when the equal-steps budget stopped them.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from unetlab.plotting import subplots


def _read(path: Path, column: str) -> tuple[np.ndarray, np.ndarray]:
    steps, values = [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            if row.get(column):
                steps.append(int(row["step"]))
                values.append(float(row[column]))
    return np.array(steps), np.array(values)


def _smooth(steps: np.ndarray, values: np.ndarray, k: int = 5):
    if len(values) < k:
        return steps, values
    smooth = np.convolve(values, np.ones(k) / k, mode="valid")
    return steps[len(steps) - len(smooth):], smooth


def _draw(ax, runs: dict, ylabel: str) -> None:
    for label, curves in runs.items():
        curves = [c for c in curves if len(c[0])]
        if not curves:
            continue
        n = min(len(s) for s, _ in curves)
        steps = curves[0][0][:n]
        values = np.stack([v[:n] for _, v in curves])
        line = ax.plot(steps, values.mean(0), label=f"{label} ({len(curves)} seeds)")[0]
        ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(),
                        alpha=0.15)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("roots", nargs="*", default=["runs/ablation"])
    p.add_argument("--out", default="docs/figures/ablation_curves.png")
    p.add_argument("--metric", default="miou", help="validation column of metrics.csv")
    p.add_argument("--title", default="ISBI 2012 ablations")
    args = p.parse_args(argv)
    loss, metric = defaultdict(list), defaultdict(list)
    for root in args.roots:
        for csv_path in sorted(Path(root).glob("models/*/seed_*/run/metrics.csv")):
            if (csv_path.parents[1] / "result.json").is_file():  # finished runs only
                label = csv_path.parents[2].name
                loss[label].append(_smooth(*_read(csv_path, "train_loss")))
                metric[label].append(_read(csv_path, args.metric))
    if not loss:
        print(f"no finished runs under {args.roots}")
        return 1
    fig, (left, right) = subplots(1, 2, figsize=(11, 4.2))
    _draw(left, loss, "training loss (5-epoch mean)")
    _draw(right, metric, f"validation {args.metric}")
    left.legend(fontsize=7, ncols=2)
    fig.suptitle(f"{args.title}: mean over seeds, band = range of the seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
