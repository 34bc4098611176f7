"""Two models on the same images: is the difference more than the spread over images?

Reads two ``unetlab evaluate --per-image-csv`` files (the same split), pairs the rows by
image name and prints, per metric, each model's mean over images and a 95 % percentile
bootstrap interval (10,000 resamples of the images) of the mean paired difference B - A.
An interval that excludes 0 separates the two models *on these images*; it says nothing
about seeds (one run each), so write it as "on this split, this run".

    unetlab evaluate runA/checkpoints/best --dataset camvid --data D --no-boundary \\
        --per-image-csv a.csv
    unetlab evaluate runB/checkpoints/best --dataset camvid --data D --no-boundary \\
        --per-image-csv b.csv
    python benchmarks/paired_images.py a.csv b.csv --metrics miou pixel_accuracy
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path


def read_rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "name" not in rows[0]:
        raise SystemExit(f"{path}: not a per-image CSV (needs a 'name' column)")
    return {r["name"]: r for r in rows}


def _value(row: dict, key: str) -> float:
    try:
        v = float(row.get(key, "nan"))
    except ValueError:
        return math.nan
    return v


def compare(a: dict[str, dict], b: dict[str, dict], metrics) -> list[dict]:
    from unetlab.compare.stats import bootstrap_interval

    names = sorted(set(a) & set(b))
    if not names:
        raise SystemExit("the two files share no image names")
    unmatched = len(set(a) ^ set(b))
    if unmatched:
        print(f"note: {unmatched} image name(s) in only one file are left out",
              file=sys.stderr)
    out = []
    for key in metrics:
        pairs = [(_value(a[n], key), _value(b[n], key)) for n in names]
        pairs = [(x, y) for x, y in pairs if math.isfinite(x) and math.isfinite(y)]
        if not pairs:
            raise SystemExit(f"no finite values of {key!r} in both files")
        diffs = [y - x for x, y in pairs]
        interval = bootstrap_interval(diffs)
        out.append({"metric": key, "images": len(pairs),
                    "mean_a": sum(x for x, _ in pairs) / len(pairs),
                    "mean_b": sum(y for _, y in pairs) / len(pairs),
                    "mean_diff": sum(diffs) / len(diffs), "interval": interval,
                    "separated": interval is not None and (interval[0] > 0 or interval[1] < 0)})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a", type=Path, help="per-image CSV of model A")
    p.add_argument("b", type=Path, help="per-image CSV of model B")
    p.add_argument("--metrics", nargs="+", default=["miou"])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    rows = compare(read_rows(args.a), read_rows(args.b), args.metrics)
    print("| metric | images | mean A | mean B | B - A | 95% interval of B - A | separated |")
    print("|---|---:|---:|---:|---:|---|---|")
    for r in rows:
        lo, hi = r["interval"] or (math.nan, math.nan)
        print(f"| {r['metric']} | {r['images']} | {r['mean_a']:.4f} | {r['mean_b']:.4f} | "
              f"{r['mean_diff']:+.4f} | [{lo:+.4f}, {hi:+.4f}] | "
              f"{'yes' if r['separated'] else 'no'} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
