"""Where a run's validation metric stops moving: per fifth of the run's steps, the best
and the mean of the validations that fell in it, from each run's metrics.csv.

A metric still falling in the last fifth says the budget was the limit; one that sits
in the same band from the second or third fifth on says more steps of the same recipe
would not move it (a plateau, or the noise of validating on a few images).

    python benchmarks/val_curve.py RUN_A RUN_B ... [--metric pixel_error] [--mode min]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

PARTS = 5


def validations(run: Path, metric: str) -> list[tuple[int, float]]:
    """(step, value) for every row of ``run/metrics.csv`` that has ``metric``."""
    path = run / "metrics.csv" if run.is_dir() else run
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            value = row.get(metric)
            if value not in (None, ""):
                out.append((int(float(row["step"])), float(value)))
    return out


def by_part(points: list[tuple[int, float]], mode: str = "min", parts: int = PARTS):
    """[(best, mean, count)] per ``parts``-th of the last step (None for an empty part)."""
    if not points:
        return []
    last = max(s for s, _ in points)
    pick = min if mode == "min" else max
    out = []
    for i in range(parts):
        lo, hi = i * last / parts, (i + 1) * last / parts
        vals = [v for s, v in points if lo < s <= hi or (i == 0 and s == 0)]
        out.append((pick(vals), sum(vals) / len(vals), len(vals)) if vals else None)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (or metrics.csv files)")
    p.add_argument("--metric", default="pixel_error")
    p.add_argument("--mode", choices=["min", "max"], default="min",
                   help="min: lower is better (errors); max: higher is better (mIoU)")
    args = p.parse_args(argv)
    head = " | ".join(f"fifth {i + 1}: best / mean (n)" for i in range(PARTS))
    print(f"| run | steps | validations | last | {head} |")
    print("|---|---:|---:|---:|" + "---:|" * PARTS)
    for run in args.runs:
        try:
            points = validations(run, args.metric)
        except (OSError, KeyError, ValueError) as exc:
            print(f"{run}: not readable ({exc})", file=sys.stderr)
            return 2
        if not points:
            print(f"{run}: no {args.metric} in metrics.csv", file=sys.stderr)
            return 2
        cells = ["-" if c is None else f"{c[0]:.4f} / {c[1]:.4f} ({c[2]})"
                 for c in by_part(points, args.mode)]
        print(f"| {run} | {points[-1][0]} | {len(points)} | {points[-1][1]:.4f} | "
              + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
