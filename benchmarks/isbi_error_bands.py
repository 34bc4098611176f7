"""Where a binary model's wrong pixels lie: on the label's edges, or away from them?

For each checkpoint, predicts every image of a labelled split whole (argmax, no TTA, at
the resolution the model card asks for) and splits the share of wrong pixels by the
distance to the nearest label edge: the 1-pixel band on either side of every edge
between the two classes, the band widened to 2 and 3 pixels, and the rest. Also prints
the share wrong at other thresholds of the foreground probability than 0.5, to tell a
miscalibrated model (a better threshold elsewhere) from one that is simply unsure.

Errors inside the 1-pixel band are where a membrane drawn one pixel thicker or thinner
would already disagree; errors beyond 3 pixels are missed or invented structures.

    python benchmarks/isbi_error_bands.py RUN/checkpoints/best [RUN2/checkpoints/last ...] \\
        --data ../shared/data/isbi2012 --split val --json bands.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

THRESHOLDS = (0.3, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)


def edge_band(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` pixels of an edge between the two classes, both sides
    (4-connected: a pixel touching the other class only at a corner is not on the edge)."""
    fg = mask.astype(bool)
    edge = (fg ^ ndi.binary_erosion(fg, border_value=1)) | \
        (~fg ^ ndi.binary_erosion(~fg, border_value=1))
    return ndi.binary_dilation(edge, iterations=width - 1) if width > 1 else edge


def probabilities(checkpoint: Path, name: str, root: str, split: str):
    """Foreground (class 1) probabilities and masks, ``(N, H, W)`` each, the dataset
    prepared as the model card says (as ``unetlab evaluate`` does)."""
    from unetlab import load_model
    from unetlab.commands.evaluate import card_options, check_preprocessing
    from unetlab.data import build_dataset
    from unetlab.inference.scaled import ScaledModel
    from unetlab.training.evaluation import check_compatible, predict_logits

    model = load_model(checkpoint).eval()
    card = model.unetlab_card
    dataset = build_dataset(name, root=root, split=split, **card_options(card, {}, checkpoint))
    check_compatible(model, dataset, str(checkpoint))
    check_preprocessing(card, dataset, checkpoint)
    if int(dataset.num_classes) != 2:
        raise SystemExit(f"{name}: {dataset.num_classes} classes; this needs 2")
    scale = float(card["input"].get("scale", 1.0))
    net = ScaledModel(model, scale) if scale != 1.0 else model
    probs, masks = [], []
    with torch.inference_mode():
        for i in range(len(dataset)):
            item = dataset[i]
            logits = predict_logits(net, item["image"].float())  # valid padding: tiled
            probs.append(torch.softmax(logits, 0)[1].numpy())
            masks.append(item["mask"].numpy())
    return np.stack(probs), np.stack(masks)


def bands(prob: np.ndarray, mask: np.ndarray) -> dict:
    wrong = (prob > 0.5) != (mask == 1)
    out = {"pixel_error": float(wrong.mean()), "bands": {}}
    for width in (1, 2, 3):
        band = np.stack([edge_band(m == 1, width) for m in mask])
        out["bands"][width] = {"share_of_pixels": float(band.mean()),
                               "wrong_in_band": float((wrong & band).mean()),
                               "wrong_in_band_rate": float(wrong[band].mean()) if band.any()
                               else 0.0}
    out["wrong_beyond_3px"] = out["pixel_error"] - out["bands"][3]["wrong_in_band"]
    out["by_threshold"] = {t: float(((prob > t) != (mask == 1)).mean()) for t in THRESHOLDS}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoints", nargs="+", type=Path)
    p.add_argument("--dataset", default="isbi2012")
    p.add_argument("--data", required=True, help="the dataset's folder")
    p.add_argument("--split", default="val")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    if args.json and args.json.exists():
        raise SystemExit(f"{args.json} exists; choose another --json path")
    results = {}
    from unetlab.errors import UnetlabError

    for ckpt in args.checkpoints:
        try:
            r = bands(*probabilities(ckpt, args.dataset, args.data, args.split))
        except (UnetlabError, OSError, ValueError) as exc:  # one line, no traceback
            raise SystemExit(f"{ckpt}: {' '.join(str(exc).split())}") from None
        results[str(ckpt)] = r
        b = r["bands"]
        one = b[1]
        print(f"{ckpt}: wrong {r['pixel_error']:.4f} = {one['wrong_in_band']:.4f} on the 1-px "
              f"edge band ({one['share_of_pixels']:.1%} of pixels, "
              f"{one['wrong_in_band_rate']:.0%} of them wrong) + "
              f"{b[3]['wrong_in_band'] - one['wrong_in_band']:.4f} 2-3 px from an edge + "
              f"{r['wrong_beyond_3px']:.4f} further")
        print("  by threshold: " + "  ".join(f"{t}: {e:.4f}"
                                             for t, e in r["by_threshold"].items()))
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, "dataset": args.dataset,
                                         "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
