"""Colour palettes (K x 3 uint8) for the built-in datasets."""

from __future__ import annotations

import numpy as np


def voc_palette(n: int = 256) -> np.ndarray:
    """The PASCAL VOC colour map (bit-interleaved class ids)."""
    palette = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def default_palette(num_classes: int) -> np.ndarray:
    """Black background then distinct colours (the VOC map) for any number of classes."""
    return voc_palette(max(num_classes, 1))[:num_classes].copy()
