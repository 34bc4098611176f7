"""Several seeds per entry: mean, spread, an interval, and verdicts only where the
intervals separate.

Each entry of a suite is trained once per seed (``seeds:`` in the comparison file or
``unetlab compare --seeds N``). For every number of the result row this module gives

- the mean and the sample standard deviation over seeds (``<key>_std``, ddof = 1);
- a 95 % percentile-bootstrap interval of the mean over seeds (``<key>_interval``,
  10,000 resamples with a fixed generator, so the same runs give the same interval).

With 3 seeds the bootstrap interval is the range of the seeds (min, max): the chance
that a resample repeats the smallest seed three times, 1/27, is above 2.5 %. Two such
intervals "separate" when every seed of one entry beats every seed of the other; for
exchangeable runs that happens by chance with probability 1/20 (a one-sided
permutation test at p = 0.05). A verdict needs at least :data:`MIN_SEEDS` (3) runs on
each side; with fewer there is an interval but no verdict.

Latency and memory get intervals but no verdict: entries are trained one after another,
so a change of the machine's load between entries is not in the spread of any one entry.
Measure them interleaved (``benchmarks/``) before ranking them.

:func:`verdicts` compares every entry with the best one (by mean) on each metric and
says "separated" only where their intervals do not overlap; everything else is
"not separated". :func:`budget_mode` states whether entries had equal steps or equal
training time.
"""

from __future__ import annotations

import copy
import math

import numpy as np

#: numeric keys of a result row summarised over seeds -> True if higher is better
#: (None: reported, never ranked)
SUMMARY_KEYS = {
    "miou": True, "mdice": True, "pixel_accuracy": True, "class_accuracy": True,
    "boundary_f1": True, "pixel_error": False, "checkerboard": False, "blockiness": False,
    "latency_ms": False, "peak_train_mb": False, "peak_infer_mb": False,
    "train_images_per_s": True, "train_steps": None, "train_time_s": None, "wall_s": None,
}
#: metrics that get a verdict sentence in the report
VERDICT_KEYS = ("miou", "mdice", "boundary_f1", "pixel_error", "checkerboard")
MIN_SEEDS = 3
LEVEL = 0.95
RESAMPLES = 10_000


def _finite(values) -> np.ndarray:
    return np.asarray([float(v) for v in values
                       if v is not None and math.isfinite(float(v))], dtype=np.float64)


def bootstrap_interval(values, *, level: float = LEVEL, resamples: int = RESAMPLES,
                       seed: int = 0) -> list[float] | None:
    """Percentile-bootstrap interval of the mean of ``values``; None for fewer than two."""
    v = _finite(values)
    if len(v) < 2:
        return None
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(resamples, len(v)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [float(lo), float(hi)]


def summarize(values) -> dict:
    """``{"mean", "std", "interval", "n"}`` of the finite values (None where undefined)."""
    v = _finite(values)
    return {"mean": float(v.mean()) if len(v) else None,
            "std": float(v.std(ddof=1)) if len(v) > 1 else None,
            "interval": bootstrap_interval(v), "n": int(len(v))}


def aggregate(runs: list[dict]) -> dict:
    """One row for an entry from its per-seed rows: non-numeric fields of the first run,
    each :data:`SUMMARY_KEYS` number as its mean plus ``<key>_std`` and
    ``<key>_interval``, per-class IoU averaged, and ``seeds`` / ``runs``."""
    if not runs:
        raise ValueError("aggregate needs at least one run")
    row = copy.deepcopy(runs[0])
    for key in (*SUMMARY_KEYS, "seed", "fingerprint"):
        row.pop(key, None)
    for key in SUMMARY_KEYS:
        if not any(key in r for r in runs):
            continue
        s = summarize(r.get(key) for r in runs)
        row[key], row[f"{key}_std"], row[f"{key}_interval"] = s["mean"], s["std"], s["interval"]
        row[f"{key}_n"] = s["n"]
    per_class = [r.get("iou_per_class") or [] for r in runs]
    width = max(len(p) for p in per_class)
    row["iou_per_class"] = [summarize(p[i] for p in per_class if i < len(p))["mean"]
                            for i in range(width)]
    row["seeds"] = [r.get("seed") for r in runs]
    row["runs"] = runs
    return row


def _separated(best: dict, other: dict, key: str, higher: bool) -> bool:
    a, b = best.get(f"{key}_interval"), other.get(f"{key}_interval")
    if not a or not b or min(best.get(f"{key}_n", 0), other.get(f"{key}_n", 0)) < MIN_SEEDS:
        return False
    return a[0] > b[1] if higher else a[1] < b[0]


def verdicts(rows: list[dict], keys=VERDICT_KEYS) -> list[dict]:
    """For each metric of ``keys`` present in the rows: the best entry by mean, the
    entries whose intervals it separates from, and those it does not."""
    out = []
    for key in keys:
        higher = SUMMARY_KEYS.get(key)
        ranked = [r for r in rows if r.get(key) is not None]
        if higher is None or len(ranked) < 2:
            continue
        best = (max if higher else min)(ranked, key=lambda r: r[key])
        others = [r for r in ranked if r is not best]
        out.append({
            "metric": key, "higher_is_better": higher, "best": best["label"],
            "best_mean": best[key], "best_interval": best.get(f"{key}_interval"),
            "separated": [r["label"] for r in others if _separated(best, r, key, higher)],
            "not_separated": [r["label"] for r in others
                              if not _separated(best, r, key, higher)],
        })
    return out


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def verdict_sentence(v: dict) -> str:
    """One line: the best entry with its interval, then who it separates from."""
    word = "highest" if v["higher_is_better"] else "lowest"
    iv = v["best_interval"]
    where = f" [{_num(iv[0])}, {_num(iv[1])}]" if iv else " (one seed: no interval)"
    text = f"**{v['metric']}**: {v['best']} {word} on average ({_num(v['best_mean'])}{where})"
    if v["separated"]:
        text += f"; separated from {', '.join(v['separated'])}"
    if v["not_separated"]:
        text += f"; not separated from {', '.join(v['not_separated'])}"
    return text + "."


def budget_mode(base: dict) -> str:
    """The training budget every entry had, in words: equal steps, equal time or both."""
    train = (base or {}).get("train") or {}
    steps, seconds = train.get("max_steps"), train.get("time_budget_s")
    epochs = train.get("epochs")
    parts = []
    if steps is not None:
        parts.append(f"{steps} optimizer steps")
    if epochs is not None:
        parts.append(f"{epochs} epochs")
    if seconds is not None:
        parts.append(f"{seconds:g} s of training (wall clock)")
    if not parts:
        return "budget: not stated"
    if seconds is not None and steps is None and epochs is None:
        return (f"equal time: each entry trains for {seconds:g} s (wall clock; on a shared "
                "machine the step counts differ between entries and runs)")
    if seconds is None:
        return f"equal steps: each entry trains for {' or '.join(parts)}"
    return f"budget: each entry stops at the first of {', '.join(parts)}"


def machine_description(device: str) -> str:
    """The processor (or GPU) the numbers come from, and the torch thread count."""
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(device))} (torch {torch.__version__})"
    from ..inference.cpu import cpu_features

    cpu = cpu_features().describe()
    return f"{cpu}, {torch.get_num_threads()} torch threads (torch {torch.__version__})"
