"""Colours for label maps and overlays when a checkpoint carries no dataset palette."""

from __future__ import annotations

import colorsys

import numpy as np

# Background black, then well-separated colours (Tableau-like), then generated hues.
_BASE = [
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60),
    (250, 190, 212), (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200),
    (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128),
]


def default_palette(num_classes: int) -> np.ndarray:
    """``(num_classes, 3)`` uint8 colours: class 0 black, then distinct colours.

    Two classes (binary segmentation) give black and white.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if num_classes == 2:
        return np.array([(0, 0, 0), (255, 255, 255)], dtype=np.uint8)
    colours = list(_BASE[:num_classes])
    golden = 0.618033988749895
    for i in range(len(colours), num_classes):  # evenly spread hues beyond the table
        r, g, b = colorsys.hsv_to_rgb((i * golden) % 1.0, 0.75, 0.95)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return np.array(colours, dtype=np.uint8)


def resolve_palette(metadata: dict | None, num_classes: int) -> np.ndarray:
    """The checkpoint's ``palette`` when it has one colour per class, else the default."""
    palette = (metadata or {}).get("palette")
    if palette is not None:
        arr = np.asarray(palette)
        if arr.ndim == 2 and arr.shape[1] == 3 and len(arr) >= num_classes:
            return np.clip(arr[:num_classes], 0, 255).astype(np.uint8)
    return default_palette(num_classes)


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray,
            alpha: float = 0.45) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8: ``image`` (gray or RGB, any dtype) blended with the
    label colours. Pixels of class 0 are left as the image when class 0 is black."""
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    img = img[..., :3]
    lo, hi = float(img.min()), float(img.max())
    img = (img - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(img)
    colour = np.asarray(palette, dtype=np.float32)[labels]
    mix = (1 - alpha) * img + alpha * colour
    if len(palette) and not np.asarray(palette[0]).any():
        mix = np.where((labels == 0)[..., None], img, mix)
    return np.clip(mix + 0.5, 0, 255).astype(np.uint8)
