"""Comparison plots (matplotlib figures without pyplot, files only): accuracy vs latency,
accuracy vs parameters, per-class IoU bars, and prediction crops side by side."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..plotting import subplots

log = logging.getLogger(__name__)


def _scatter(rows, x_key, x_label, path: Path, *, logx: bool) -> Path | None:
    pts = [(r[x_key], r["miou"], r["label"], r.get("miou_interval")) for r in rows
           if r.get(x_key) is not None and r.get("miou") is not None]
    if not pts:
        return None
    fig, ax = subplots(figsize=(6, 4.5))
    for x, y, label, interval in pts:
        if interval:  # the interval over seeds (unetlab.compare.stats)
            ax.errorbar(x, y, yerr=[[y - interval[0]], [interval[1] - y]], fmt="o",
                        ms=6, capsize=3)
        else:
            ax.scatter(x, y, s=40)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("mIoU (validation; bars: 95% interval over seeds)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_per_class_iou(rows, path: Path) -> Path | None:
    """Grouped bars: IoU of every class, one bar per entry."""
    names: list[str] = []
    for r in rows:
        names += [n for n in r.get("class_names", []) if n not in names]
    if not names or not rows:
        return None
    fig, ax = subplots(figsize=(max(6, 0.9 * len(names) * max(1, len(rows) / 3)), 4.5))
    width = 0.8 / len(rows)
    x = np.arange(len(names))
    for i, r in enumerate(rows):
        per = dict(zip(r.get("class_names", []), r.get("iou_per_class", [])))
        vals = [per.get(n) if per.get(n) is not None else 0.0 for n in names]
        ax.bar(x + (i - (len(rows) - 1) / 2) * width, vals, width, label=r["label"])
    ax.set_xticks(x, names, rotation=30, ha="right")
    ax.set_ylabel("IoU")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncols=min(len(rows), 4))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def _colour(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    out = np.zeros((*labels.shape, 3), dtype=np.uint8)
    valid = (labels >= 0) & (labels < len(palette))
    out[valid] = palette[labels[valid]]
    return out


def plot_crops(rows, folder: Path, path: Path) -> Path | None:
    """Input, ground truth and each entry's prediction (first seed) for the first
    validation image."""
    crops = []
    for r in rows:
        seeds = r.get("seeds") or []
        sub = f"seed_{seeds[0]}" if seeds and seeds[0] is not None else ""
        file = folder / r["label"] / sub / "crop.npz"
        if file.is_file():
            crops.append((r["label"], np.load(file)))
    if not crops:
        return None
    first = crops[0][1]
    image = first["image"].transpose(1, 2, 0)
    image = (image - image.min()) / max(float(image.max() - image.min()), 1e-8)
    palette = first["palette"]
    panels = [("input", image.squeeze()), ("ground truth", _colour(first["mask"], palette))]
    panels += [(label, _colour(c["prediction"], palette)) for label, c in crops]
    fig, axes = subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8))
    for ax, (title, img) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None, interpolation="nearest")
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_suite(rows, folder, *, suite: str) -> list[Path]:
    """Every plot of a suite into ``folder``; returns the files written."""
    folder = Path(folder)
    written = [
        _scatter(rows, "latency_ms", "inference latency per image (ms)",
                 folder / "miou_vs_latency.png", logx=True),
        _scatter(rows, "parameters", "parameters", folder / "miou_vs_parameters.png",
                 logx=True),
        plot_per_class_iou(rows, folder / "iou_per_class.png"),
        plot_crops(rows, folder, folder / "crops.png"),
    ]
    return [p for p in written if p is not None]
