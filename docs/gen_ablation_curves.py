"""Training-loss curves of the ISBI ablations (docs/figures/ablation_curves.png).

    python docs/gen_ablation_curves.py runs/ablation [runs/ablation_few ...]

Reads ``<out>/models/<label>/seed_<s>/run/metrics.csv`` (written by ``unetlab compare``)
and draws, per entry, the training loss against the optimizer step: the mean over seeds
(line) and the range of the seeds (band), smoothed over 5 epochs. It shows whether the
entries were still improving when the equal-steps budget stopped them.
"""

from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from unetlab.plotting import subplots


def _curve(path: Path) -> tuple[np.ndarray, np.ndarray]:
    steps, loss = [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            if row.get("train_loss"):
                steps.append(int(row["step"]))
                loss.append(float(row["train_loss"]))
    kernel = np.ones(5) / 5
    smooth = np.convolve(loss, kernel, mode="valid") if len(loss) >= 5 else np.array(loss)
    return np.array(steps[len(steps) - len(smooth):]), smooth


def main(roots: list[str], out: str = "docs/figures/ablation_curves.png") -> int:
    curves = defaultdict(list)
    for root in roots:
        for csv_path in sorted(Path(root).glob("models/*/seed_*/run/metrics.csv")):
            if (csv_path.parents[1] / "result.json").is_file():  # finished runs only
                curves[csv_path.parents[2].name].append(_curve(csv_path))
    if not curves:
        print(f"no metrics.csv under {roots}")
        return 1
    fig, ax = subplots(figsize=(7, 4.2))
    for label, runs in curves.items():
        n = min(len(s) for s, _ in runs)
        steps = runs[0][0][:n]
        values = np.stack([v[:n] for _, v in runs])
        line = ax.plot(steps, values.mean(0), label=f"{label} ({len(runs)} seeds)")[0]
        ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.15)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (cross-entropy, 5-epoch mean)")
    ax.set_title("ISBI 2012 ablations: mean over seeds, band = range of seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["runs/ablation"]))
