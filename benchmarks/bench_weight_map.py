"""Time unetlab.losses.border_weight_map against the naive per-object loop.

The naive loop computes one Euclidean distance transform per object and sorts them
(the definition of d1, d2 in the U-Net paper); unetlab colours the objects and needs
one transform per colour. Both run in the same process on the same label, and the
report is their ratio (machines are shared and noisy), plus the largest difference.

    .venv/bin/python benchmarks/bench_weight_map.py [--label PATH] [--repeats 5] [--json OUT]

Default label: ../shared/data/isbi2012/train/label/00.png (512x512, 255 = cell interior,
the objects). When it is absent a synthetic 512x512 label with ~150 blobs is used.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from unetlab.losses import border_weight_map

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared/data/isbi2012/train/label/00.png"


def naive_weight_map(objects: np.ndarray, w0=10.0, sigma=5.0) -> np.ndarray:
    """One distance transform per object, then the two smallest per pixel."""
    ids = [i for i in np.unique(objects) if i != 0]
    if len(ids) < 2:
        return np.ones(objects.shape, dtype=np.float32)
    d1 = np.full(objects.shape, np.inf)
    d2 = np.full(objects.shape, np.inf)
    for i in ids:
        d = ndimage.distance_transform_edt(objects != i)
        d2 = np.minimum(d2, np.maximum(d1, d))
        d1 = np.minimum(d1, d)
    return (1 + w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))).astype(np.float32)


def synthetic_label(shape=(512, 512), count=150, seed=0) -> np.ndarray:
    """0/255 label with ``count`` disc-shaped cells (255) on a 0 background."""
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, dtype=np.uint8)
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    for _ in range(count):
        cy, cx, r = rng.integers(0, shape[0]), rng.integers(0, shape[1]), rng.integers(6, 22)
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 255
    return lab


def best_of(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", type=Path, default=DEFAULT)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.label.is_file():
        from PIL import Image

        label = np.asarray(Image.open(args.label))
        source = str(args.label)
    else:
        label = synthetic_label()
        source = "synthetic 512x512, 150 discs (ISBI label not found)"
    objects, count = ndimage.label(label == 255)

    fast_t, fast_all = best_of(lambda: border_weight_map(label), args.repeats)
    naive_t, naive_all = best_of(lambda: naive_weight_map(objects), max(1, args.repeats // 2))
    diff = float(np.abs(border_weight_map(label) - naive_weight_map(objects)).max())
    result = {
        "label": source, "shape": list(label.shape), "objects": int(count),
        "unetlab_s": fast_t, "naive_s": naive_t, "speedup": naive_t / fast_t,
        "max_abs_difference": diff, "unetlab_runs_s": fast_all, "naive_runs_s": naive_all,
        "median_unetlab_s": statistics.median(fast_all),
    }
    sys.stdout.write(
        f"{source}: {label.shape[0]}x{label.shape[1]}, {count} objects\n"
        f"border_weight_map {fast_t * 1e3:.1f} ms (best of {args.repeats}), naive per-object "
        f"loop {naive_t * 1e3:.1f} ms -> {naive_t / fast_t:.1f}x faster, "
        f"max |difference| {diff:.2e}\n")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
