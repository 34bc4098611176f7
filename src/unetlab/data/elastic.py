"""The U-Net paper's elastic deformation as an albumentations transform.

Ronneberger et al. 2015, section 3.1: "smooth deformations using random displacement
vectors on a coarse 3 by 3 grid. The displacements are sampled from a Gaussian
distribution with 10 pixels standard deviation. Per-pixel displacements are then
computed using bicubic interpolation."

The grid nodes sit at the corners, edge midpoints and centre of the image; each axis is
interpolated by a natural cubic spline through the nodes (separable, so bicubic in 2-D).
Images are resampled bilinearly, masks and weight maps by nearest neighbour (labels are
never interpolated), with reflected borders (no invented label values).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from albumentations.core.transforms_interface import DualTransform


@lru_cache(maxsize=16)
def _spline_matrix(length: int, nodes: int) -> np.ndarray:
    """(length, nodes) weights: values at every pixel from values at ``nodes`` evenly
    spaced knots (first and last pixel included), by a natural cubic spline."""
    from scipy.interpolate import CubicSpline

    knots = np.linspace(0.0, length - 1.0, nodes)
    spline = CubicSpline(knots, np.eye(nodes), bc_type="natural", axis=0)
    return spline(np.arange(length, dtype=np.float64)).astype(np.float32)


def grid_displacement(shape, grid: int, sigma: float, rng: np.random.Generator):
    """Per-pixel (dy, dx) fields from N(0, sigma) displacements on a ``grid`` x ``grid``
    lattice, interpolated bicubically."""
    height, width = shape
    coarse = rng.normal(0.0, sigma, size=(2, grid, grid)).astype(np.float32)
    wy, wx = _spline_matrix(height, grid), _spline_matrix(width, grid)
    # (H, g) @ (g, W): cv2.gemm, because numpy's BLAS is slow for an inner size of 3
    return tuple(cv2.gemm(wy @ c, wx, 1.0, None, 0.0, flags=cv2.GEMM_2_T) for c in coarse)


@lru_cache(maxsize=8)
def _identity_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.indices((height, width), dtype=np.float32)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


class GridElastic(DualTransform):
    """Elastic deformation from a coarse ``grid`` x ``grid`` lattice of Gaussian
    displacements (``sigma`` pixels), bicubically interpolated (the U-Net paper)."""

    class InitSchema(DualTransform.InitSchema):
        grid: int = 3
        sigma: float = 10.0

    def __init__(self, grid: int = 3, sigma: float = 10.0, p: float = 0.5):
        super().__init__(p=p)
        if int(grid) < 2:
            raise ValueError(f"GridElastic: grid must be >= 2, got {grid}")
        if sigma < 0:
            raise ValueError(f"GridElastic: sigma must be >= 0, got {sigma}")
        self.grid = int(grid)
        self.sigma = float(sigma)

    def get_params_dependent_on_data(self, params, data):
        height, width = params["shape"][:2]
        dy, dx = grid_displacement((height, width), self.grid, self.sigma,
                                   self.random_generator)
        yy, xx = _identity_grid(height, width)
        return {"map_x": xx + dx, "map_y": yy + dy}

    def apply(self, img, map_x, map_y, **params):
        return _remap(img, map_x, map_y, cv2.INTER_LINEAR)

    def apply_to_mask(self, mask, map_x, map_y, **params):
        return _remap(mask, map_x, map_y, cv2.INTER_NEAREST)

    def get_transform_init_args_names(self):
        return ("grid", "sigma")


def _remap(array: np.ndarray, map_x, map_y, interpolation: int) -> np.ndarray:
    dtype = array.dtype
    work = array
    if dtype not in (np.uint8, np.uint16, np.int16, np.float32, np.float64):
        work = array.astype(np.float32 if np.issubdtype(dtype, np.floating) else np.int32)
    if work.dtype == np.int32 and interpolation != cv2.INTER_NEAREST:
        work = work.astype(np.float32)
    if work.dtype == np.int32:  # cv2.remap has no int32: move an index image instead
        h, w = array.shape[:2]
        iy = _reflect(np.rint(map_y).astype(np.intp), h)
        ix = _reflect(np.rint(map_x).astype(np.intp), w)
        return array[iy, ix]
    channels = work.shape[2] if work.ndim == 3 else 0
    if channels > 4:  # cv2.remap handles at most 4 channels at once
        out = np.stack([cv2.remap(work[..., c], map_x, map_y, interpolation,
                                  borderMode=cv2.BORDER_REFLECT_101)
                        for c in range(channels)], -1)
    else:
        out = cv2.remap(work, map_x, map_y, interpolation, borderMode=cv2.BORDER_REFLECT_101)
        if work.ndim == 3 and out.ndim == 2:
            out = out[..., None]
    return out.astype(dtype, copy=False)


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Indices reflected into [0, n) like cv2.BORDER_REFLECT_101."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.abs(index) % period
    return np.where(index >= n, period - index, index)
