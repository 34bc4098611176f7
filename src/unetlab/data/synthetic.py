"""Synthetic data, deterministic by seed, no download: the default for demos and tests.

- ``membranes``: EM-like slices: Voronoi cells separated by dark membranes of varying
  width, dark organelles inside cells, uneven illumination, blur and noise; binary labels
  (1 = membrane), like ISBI 2012.
- ``shapes``: discs, rectangles, triangles and crosses of varied size on textured
  backgrounds; class frequencies are deliberately imbalanced (triangles and crosses are
  rare and small).

Sample ``i`` of a split depends only on ``(seed, split, i)``, so it is the same on every
machine, in every worker, in any order.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import cKDTree

from ..errors import UnetlabError
from .base import SegmentationDataset

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def _smooth_field(rng, size: int, cells: int, lo: float, hi: float) -> np.ndarray:
    """A smooth random field in [lo, hi]: a coarse uniform grid upsampled bicubically."""
    coarse = rng.uniform(lo, hi, size=(cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC), lo, hi)


def make_membrane_image(rng: np.random.Generator, size: int = 256,
                        cell_diameter: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """One EM-like slice: (uint8 image (size, size), uint8 mask with 1 = membrane)."""
    # seeds on a jittered grid: cells of similar size, no degenerate slivers
    step = cell_diameter * rng.uniform(0.85, 1.15)
    centres = np.arange(-step, size + step, step)
    gy, gx = np.meshgrid(centres, centres, indexing="ij")
    seeds = np.stack([gy.ravel(), gx.ravel()], 1)
    seeds += rng.uniform(-0.4, 0.4, size=seeds.shape) * step
    n_cells = len(seeds)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # wavy boundaries: query the Voronoi diagram at smoothly displaced coordinates
    wobble = cell_diameter * 0.12
    qx = xx + _smooth_field(rng, size, 6, -wobble, wobble)
    qy = yy + _smooth_field(rng, size, 6, -wobble, wobble)
    dist, idx = cKDTree(seeds).query(np.stack([qy.ravel(), qx.ravel()], 1), k=2)
    gap = ((dist[:, 1] - dist[:, 0]) * 0.5).reshape(size, size)
    half_width = _smooth_field(rng, size, 5, 0.7, 2.4)
    mask = (gap < half_width).astype(np.uint8)

    cell = idx[:, 0].reshape(size, size)
    cell_level = rng.uniform(0.6, 0.8, size=n_cells).astype(np.float32)
    image = cell_level[cell]
    # texture and organelles (dark blobs inside cells, not membrane)
    image += _smooth_field(rng, size, max(2, size // 6), -0.1, 0.1)
    n_blobs = int(n_cells * rng.uniform(1.0, 3.0))
    for cy, cx, r, level in zip(rng.uniform(0, size, n_blobs), rng.uniform(0, size, n_blobs),
                                rng.uniform(1.5, cell_diameter * 0.12, n_blobs),
                                rng.uniform(0.3, 0.5, n_blobs)):
        cv2.circle(image, (int(cx), int(cy)), int(r), float(level), -1)
    membrane_level = rng.uniform(0.12, 0.3)
    image = np.where(mask == 1, membrane_level + 0.05 * image, image)
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.6, 1.4))
    image *= _smooth_field(rng, size, 3, 0.75, 1.2)  # uneven illumination
    image += rng.normal(0.0, rng.uniform(0.02, 0.07), size=image.shape).astype(np.float32)
    image = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    return image, mask


SHAPE_CLASSES = ("background", "disc", "rectangle", "triangle", "cross")
SHAPE_PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25],
                          [0, 130, 200]], dtype=np.uint8)
# class probabilities and radius ranges (fraction of the image size): imbalance on purpose
_SHAPE_PROB = np.array([0.55, 0.3, 0.1, 0.05])
_SHAPE_RADIUS = ((0.08, 0.2), (0.06, 0.16), (0.04, 0.09), (0.03, 0.07))


def _shape_polygon(kind: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    if kind == 2:  # rectangle
        pts = np.array([[-1, -0.6], [1, -0.6], [1, 0.6], [-1, 0.6]]) * r
    elif kind == 3:  # triangle
        t = np.deg2rad([90, 210, 330])
        pts = np.stack([np.cos(t), np.sin(t)], 1) * r
    else:  # cross
        a, b = 1.0, 0.33
        pts = np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a],
                        [-b, b], [-a, b], [-a, -b], [-b, -b]]) * r
    c, s = np.cos(angle), np.sin(angle)
    pts = pts @ np.array([[c, s], [-s, c]])
    return np.round(pts + [cx, cy]).astype(np.int32)


def make_shapes_image(rng: np.random.Generator, size: int = 128,
                      max_objects: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """One multi-class image: (uint8 RGB (size, size, 3), uint8 mask of class ids)."""
    base = rng.uniform(40, 200, size=3).astype(np.float32)
    texture = np.stack([_smooth_field(rng, size, max(2, size // 8), -40, 40)
                        for _ in range(3)], -1)
    image = np.clip(base + texture, 0, 255).astype(np.float32)
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        kind = int(rng.choice(4, p=_SHAPE_PROB)) + 1
        lo, hi = _SHAPE_RADIUS[kind - 1]
        r = rng.uniform(lo, hi) * size
        cx, cy = rng.uniform(0, size, 2)
        colour = np.clip(SHAPE_PALETTE[kind] * rng.uniform(0.6, 1.0)
                         + rng.uniform(-30, 30, 3), 0, 255).tolist()
        if kind == 1:
            cv2.circle(mask, (int(cx), int(cy)), int(r), kind, -1, lineType=cv2.LINE_8)
            cv2.circle(image, (int(cx), int(cy)), int(r), colour, -1, lineType=cv2.LINE_8)
        else:
            poly = _shape_polygon(kind, cx, cy, r, rng.uniform(0, np.pi))
            cv2.fillPoly(mask, [poly], kind, lineType=cv2.LINE_8)
            cv2.fillPoly(image, [poly], colour, lineType=cv2.LINE_8)
    image += rng.normal(0, 8, size=image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    return image, mask


class _SyntheticDataset(SegmentationDataset):
    def __init__(self, root=None, split: str = "train", transform=None, *, num_images: int,
                 size: int, seed: int = 0, **options):
        options.setdefault("cache", True)
        super().__init__(transform=transform, **options)
        if split not in SPLIT_IDS:
            raise UnetlabError(f"{self.kind}: unknown split {split!r}; choose from "
                               f"{tuple(SPLIT_IDS)}")
        if int(num_images) < 1:
            raise UnetlabError(f"{self.kind}: num_images must be >= 1, got {num_images}")
        if int(size) < 16:
            raise UnetlabError(f"{self.kind}: size must be >= 16, got {size}")
        self.split, self.seed, self.size = split, int(seed), int(size)
        self.names = [f"{self.kind}_{split}_{i:04d}" for i in range(int(num_images))]

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, SPLIT_IDS[self.split], index])


class MembranesDataset(_SyntheticDataset):
    """Synthetic EM membranes (binary, 1 = membrane), ``num_images`` x ``size``^2 grey."""

    kind = "membranes"
    class_names = ("cell", "membrane")
    palette = np.array([[255, 255, 255], [0, 0, 0]], dtype=np.uint8)
    ignore_index = None
    in_channels = 1
    weight_map_objects = (0,)  # the cells; membranes separate them

    def __init__(self, root=None, split: str = "train", transform=None, *,
                 num_images: int = 32, size: int = 256, seed: int = 0,
                 cell_diameter: float = 40.0, **options):
        super().__init__(root, split, transform, num_images=num_images, size=size, seed=seed,
                         **options)
        self.cell_diameter = float(cell_diameter)

    def _load_raw(self, index):
        image, mask = make_membrane_image(self._rng(index), self.size, self.cell_diameter)
        return image, mask.astype(np.int64), self.names[index]


class ShapesDataset(_SyntheticDataset):
    """Synthetic multi-class shapes (5 classes, imbalanced), RGB."""

    kind = "shapes"
    class_names = SHAPE_CLASSES
    palette = SHAPE_PALETTE
    ignore_index = None
    in_channels = 3

    def __init__(self, root=None, split: str = "train", transform=None, *,
                 num_images: int = 64, size: int = 128, seed: int = 0, max_objects: int = 6,
                 **options):
        super().__init__(root, split, transform, num_images=num_images, size=size, seed=seed,
                         **options)
        self.max_objects = int(max_objects)

    def _load_raw(self, index):
        image, mask = make_shapes_image(self._rng(index), self.size, self.max_objects)
        return image, mask.astype(np.int64), self.names[index]
