"""Pixel error of a binary model over decision thresholds: is the argmax (0.5) the best
decision, or would another threshold on the foreground probability do better?

Reads the probability maps ``unetlab predict --probabilities`` wrote (``NAME_probs.tif``,
class planes first) and the label images with the same stems, and prints the pixel error,
false positives and false negatives per threshold, over all images together:

    unetlab predict RUN/checkpoints/last VAL_IMAGES --out probs --probabilities \\
        --backend torch --precision fp32
    python benchmarks/threshold_sweep.py probs ../shared/data/isbi2012/train/label \\
        --foreground-value 0          # ISBI: membranes are 0 in the labels

Diagnostic only: a threshold chosen on these images is chosen on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_inference import refuse_existing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("probs", type=Path, help="folder of NAME_probs.tif")
    p.add_argument("labels", type=Path, help="folder of label images NAME.png/.tif")
    p.add_argument("--foreground-value", type=int, default=1,
                   help="label value of the foreground class (ISBI: 0)")
    p.add_argument("--channel", type=int, default=1, help="probability plane of the foreground")
    p.add_argument("--thresholds", type=float, nargs="+",
                   default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    refuse_existing(p, args.json)

    import imageio.v3 as iio
    import tifffile

    probs, truth = [], []
    files = sorted(args.probs.glob("*_probs.tif"))
    if not files:
        p.error(f"{args.probs}: no *_probs.tif (run unetlab predict --probabilities)")
    for path in files:
        stem = path.name[: -len("_probs.tif")]
        labels = sorted(args.labels.glob(stem + ".*"))
        if not labels:
            p.error(f"{args.labels}: no label image for {stem}")
        try:
            planes, label = tifffile.imread(path), iio.imread(labels[0])
        except (OSError, ValueError) as exc:
            p.error(f"{path.name} or {labels[0].name}: not readable ({exc})")
        if planes.ndim != 3 or not 0 <= args.channel < planes.shape[0] \
                or planes.shape[1:] != label.shape:
            p.error(f"{path.name}: {planes.shape} is not class planes of the label's size "
                    f"{label.shape} with a plane {args.channel}")
        probs.append(planes[args.channel].astype(np.float32))   # class planes first
        truth.append(label == args.foreground_value)
    prob, fg = np.stack(probs), np.stack(truth)
    rows = []
    print(f"{len(files)} images; foreground {fg.mean():.4f} of the pixels")
    print("| threshold | pixel error | false positives | false negatives |\n|---:|---:|---:|---:|")
    for t in args.thresholds:
        pred = prob > t
        row = {"threshold": t, "pixel_error": float((pred != fg).mean()),
               "false_positive": float((pred & ~fg).mean()),
               "false_negative": float((~pred & fg).mean())}
        rows.append(row)
        print(f"| {t:.2f} | {row['pixel_error']:.4f} | {row['false_positive']:.4f} | "
              f"{row['false_negative']:.4f} |")
    if args.json:
        args.json.write_text(json.dumps({"images": len(files), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
