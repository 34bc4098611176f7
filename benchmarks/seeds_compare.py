"""Two recipes, several seeds each, on the same images: does the difference survive the
spread over seeds as well as over images?

Reads ``unetlab evaluate --per-image-csv`` files, one per run (seed), for recipe A and
recipe B (the same split). Per metric it prints every run's mean over the images, each
recipe's mean over its runs, and two 95 % intervals of B - A:

- a two-level bootstrap (10,000 resamples): the runs of each recipe resampled with
  replacement, the images resampled once per draw and shared by both recipes (the
  images are paired, the seeds are not);
- Welch's t interval over the per-run means (seeds only, images fixed).

An interval that excludes 0 separates the recipes on these images over these seeds.
With two or three runs a side both intervals are rough: say so beside the verdict.

    python benchmarks/seeds_compare.py --a hand_s0.csv hand_s1.csv hand_s2.csv \\
        --b plan_s0.csv plan_s1.csv plan_s2.csv --metrics pixel_error rand_error
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired_images import _value, read_rows


def _matrix(runs: list[dict], names: list[str], key: str) -> list[list[float]]:
    return [[_value(r[n], key) for n in names] for r in runs]


def two_level_interval(a: list[list[float]], b: list[list[float]], *, draws: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of mean(B) - mean(A): runs resampled per recipe, images
    resampled once per draw for both."""
    rng = random.Random(seed)
    n = len(a[0])
    out = []
    for _ in range(draws):
        idx = [rng.randrange(n) for _ in range(n)]
        ra = [a[rng.randrange(len(a))] for _ in a]
        rb = [b[rng.randrange(len(b))] for _ in b]
        ma = sum(r[i] for r in ra for i in idx) / (len(ra) * n)
        mb = sum(r[i] for r in rb for i in idx) / (len(rb) * n)
        out.append(mb - ma)
    out.sort()
    return out[int(0.025 * draws)], out[int(0.975 * draws) - 1]


def welch_interval(a: list[float], b: list[float]) -> tuple[float, float] | None:
    """95 % Welch t interval of mean(b) - mean(a) over the per-run means (None with
    fewer than two runs a side)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy import stats

    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    d = statistics.fmean(b) - statistics.fmean(a)
    se = math.sqrt(va + vb)
    if se == 0:  # every run of both recipes gave the same mean: no spread to judge by
        return None
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    t = stats.t.ppf(0.975, dof)
    return d - t * se, d + t * se


def compare(a_files: list[Path], b_files: list[Path], metrics) -> list[dict]:
    a_runs = [read_rows(p) for p in a_files]
    b_runs = [read_rows(p) for p in b_files]
    if len(a_runs) < 2 or len(b_runs) < 2:
        raise SystemExit("give at least two runs a side (for one run each: paired_images.py)")
    names = sorted(set.intersection(*(set(r) for r in a_runs + b_runs)))
    if not names:
        raise SystemExit("the files share no image names")
    left = len(set.union(*(set(r) for r in a_runs + b_runs))) - len(names)
    if left:
        print(f"note: {left} image name(s) not in every file are left out", file=sys.stderr)
    out = []
    for key in metrics:
        a, b = _matrix(a_runs, names, key), _matrix(b_runs, names, key)
        if not all(math.isfinite(v) for row in a + b for v in row):
            raise SystemExit(f"{key!r} is missing or not finite in some file")
        ma = [statistics.fmean(r) for r in a]
        mb = [statistics.fmean(r) for r in b]
        boot = two_level_interval(a, b)
        welch = welch_interval(ma, mb)
        out.append({"metric": key, "images": len(names), "runs_a": ma, "runs_b": mb,
                    "mean_a": statistics.fmean(ma), "mean_b": statistics.fmean(mb),
                    "mean_diff": statistics.fmean(mb) - statistics.fmean(ma),
                    "bootstrap": boot, "welch": welch,
                    "separated": (boot[0] > 0 or boot[1] < 0)
                    and welch is not None and (welch[0] > 0 or welch[1] < 0)})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", nargs="+", type=Path, required=True, metavar="CSV",
                   help="per-image CSVs of recipe A, one per run")
    p.add_argument("--b", nargs="+", type=Path, required=True, metavar="CSV",
                   help="per-image CSVs of recipe B, one per run")
    p.add_argument("--metrics", nargs="+", default=["miou"])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    for path in args.a + args.b:
        if not path.is_file():
            print(f"seeds_compare: {path}: no such file", file=sys.stderr)
            return 2
    if args.json is not None and args.json.exists():
        print(f"seeds_compare: {args.json} exists; not replacing it", file=sys.stderr)
        return 2
    rows = compare(args.a, args.b, args.metrics)
    print("| metric | images | runs A | runs B | mean A | mean B | B - A | 95 % bootstrap "
          "(runs and images) | 95 % Welch (run means) | separated by both |")
    print("|---|---:|---|---|---:|---:|---:|---|---|---|")
    for r in rows:
        w = r["welch"] or (math.nan, math.nan)
        runs_a = ", ".join(f"{v:.4f}" for v in r["runs_a"])
        runs_b = ", ".join(f"{v:.4f}" for v in r["runs_b"])
        print(f"| {r['metric']} | {r['images']} | {runs_a} | {runs_b} | {r['mean_a']:.4f} | "
              f"{r['mean_b']:.4f} | {r['mean_diff']:+.4f} | [{r['bootstrap'][0]:+.4f}, "
              f"{r['bootstrap'][1]:+.4f}] | [{w[0]:+.4f}, {w[1]:+.4f}] | "
              f"{'yes' if r['separated'] else 'no'} |")
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
