"""Draw docs/figures/medical_overlay.png: a volume, its labels and a prediction, on an
axial and a coronal slice drawn at their physical proportions (voxel spacing).

    python docs/gen_medical_figure.py IMAGE.nii.gz LABELS.nii.gz PREDICTION.nii.gz \
        docs/figures/medical_overlay.png
"""

from __future__ import annotations

import argparse

import numpy as np

from unetlab.data.synthetic3d import CLASS_NAMES
from unetlab.data.volumes import read_volume
from unetlab.figures._plot import new_figure, save_png

COLOURS = np.array([[0, 0, 0], [230, 25, 75], [255, 225, 25]], dtype=np.float32) / 255


def _overlay(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(grey, [1, 99])
    rgb = np.repeat(np.clip((grey - lo) / (hi - lo + 1e-8), 0, 1)[..., None], 3, -1)
    fg = labels > 0
    rgb[fg] = 0.45 * rgb[fg] + 0.55 * COLOURS[labels[fg]]
    return rgb


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("image", "labels", "prediction", "out"):
        p.add_argument(name)
    args = p.parse_args()
    vol = read_volume(args.image)
    image = vol.array if vol.array.ndim == 3 else vol.array[..., 0]
    truth = read_volume(args.labels, labels=True).array
    pred = read_volume(args.prediction, labels=True).array
    sx, sy, sz = vol.spacing
    z = int(np.argmax((truth > 0).sum((0, 1))))       # the axial slice with most labels
    y = int(np.argmax((truth > 0).sum((0, 2))))       # the coronal slice with most labels
    fig, axes = new_figure(9.0, 6.4, ncols=3, nrows=2)
    views = [("axial", lambda a: a[:, :, z].T, sy / sx, f"z = {z}"),
             ("coronal", lambda a: a[:, y, :].T, sz / sx, f"y = {y}")]
    for row, (name, cut, aspect, where) in enumerate(views):
        grey = cut(image)
        panels = [(np.repeat(_overlay(grey, np.zeros_like(cut(truth)))[..., :1], 3, -1),
                   f"{name} {where}"),
                  (_overlay(grey, cut(truth)), "ground truth"),
                  (_overlay(grey, cut(pred)), "prediction")]
        for ax, (rgb, title) in zip(axes[row], panels):
            ax.imshow(rgb, origin="lower", aspect=aspect, interpolation="nearest")
            ax.set_title(title, fontsize=10)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"voxels {sx:g} x {sy:g} x {sz:g} mm; red: blob, yellow: tube "
                 f"({', '.join(CLASS_NAMES)})", fontsize=10)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.88, wspace=0.05,
                        hspace=0.25)
    print(save_png(fig, args.out))


if __name__ == "__main__":
    main()
