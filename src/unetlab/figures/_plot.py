"""Shared plotting helpers for the figures: a fixed DPI, small palette PNGs, matrices
drawn with their values."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

DPI = 80  # pixels per inch: a figure of (w, h) inches is (w * DPI, h * DPI) pixels


def new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1):
    """A standalone matplotlib figure (no pyplot, no backend switch) and its axes array."""
    from ..plotting import subplots

    fig, axes = subplots(nrows, ncols, figsize=(width, height), dpi=DPI, squeeze=False)
    return fig, axes


def save_png(fig, path, colors: int = 96) -> Path:
    """Write ``fig`` as a palette PNG (``colors`` colours: a few tens of KB) and close it.

    The pixel size is exactly ``figsize * DPI`` (no tight bounding box), so tests and
    docs can rely on it.
    """
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB")
    image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path


def draw_matrix(ax, values, *, title: str = "", fmt: str = "{:g}", cmap: str = "Blues",
                highlight=None, vmin=None, vmax=None) -> None:
    """A small matrix as coloured cells with its numbers written in them.

    ``highlight``: optional boolean mask of cells drawn with a red frame.
    """
    values = np.asarray(values, dtype=float)
    ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax)
    big = values.size > 64
    for (i, j), v in np.ndenumerate(values):
        colour = "white" if vmax is not None and v > 0.6 * vmax else "black"
        ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=6 if big else 9,
                color=colour)
        if highlight is not None and highlight[i, j]:
            ax.add_patch(_square(j, i, "red"))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def _square(x, y, colour):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor=colour, linewidth=1.5)


def show_image(ax, image, title: str = "", cmap: str = "gray", **kwargs) -> None:
    """An image without ticks."""
    ax.imshow(image, cmap=cmap, **kwargs)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
