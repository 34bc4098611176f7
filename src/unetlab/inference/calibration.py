"""Calibration batches for int8 quantization from a folder of the user's own images.

Each image (and each slice of a TIFF stack) gives at most one crop of ``tile_size``
around its centre (mirrored where the image is smaller), scaled by dtype and normalised
exactly as :func:`.predictor.predict_file` prepares its tiles; up to ``max_samples``
crops, spread evenly over the files, stacked ``batch_size`` at a time. A ``tile_size``
beyond what the images need shrinks to them as the tiler's tiles do
(:func:`.tiling.cap_tiles`: no larger than ``max(256, the longest side)``), so a
mistyped size never asks for gigabytes of mirrored pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import UnetlabError
from ..imageio import IMAGE_SUFFIXES, read_image
from ..preprocess import Preprocessing
from .predictor import _layout
from .tiling import cap_tiles, model_geometry, plan_axis, read_region

MAX_SAMPLES = 8


def _samples(path: Path, in_channels: int, spatial_dims: int):
    """``(C, *spatial)`` arrays (dtype preserved) of one file: one per stack slice."""
    array = read_image(path)
    lead_shape, channel_axis = _layout(array.shape, in_channels, spatial_dims, path)
    for lead in np.ndindex(*lead_shape) if lead_shape else [()]:
        item = array[lead]
        axis = channel_axis - len(lead_shape) if channel_axis is not None else None
        item = np.moveaxis(item, axis, 0) if axis is not None else item[None]
        if item.shape[0] == in_channels + 1 and in_channels in (1, 3):
            item = item[:in_channels]  # drop alpha
        if item.shape[0] != in_channels:
            raise UnetlabError(f"{path}: image has {item.shape[0]} channel(s), the model "
                               f"expects {in_channels}")
        yield item


def calibration_tile(model, tile_size: int, longest: int, *, check: bool = True) -> int:
    """The crop size used for calibration images whose longest side is ``longest``:
    ``tile_size`` capped as :func:`.tiling.cap_tiles` caps the tiler's tiles (and, for a
    valid-padding U-Net, any size beyond the smallest valid one that covers ``longest``,
    valid or not). ``check``: a size ``model`` cannot take (not a multiple of its pooling
    factor; for a valid-padding U-Net, not a valid input size) is a one-line
    UnetlabError naming the nearest ones."""
    if tile_size < 1:
        raise UnetlabError(f"--tile-size {tile_size}: must be positive")
    padding, levels, align = model_geometry(model)
    dims = int(getattr(model, "spatial_dims", 2))
    tile = cap_tiles((int(tile_size),) * dims, (int(longest),), padding=padding,
                     levels=levels, align=align)[0]
    if padding == "valid" and tile > longest:  # not a valid size (cap_tiles keeps those)
        from ..models.unet import valid_input_size

        tile = min(tile, valid_input_size(int(longest), levels))
    if check:
        try:
            plan_axis(tile, tile, 0.0, padding=padding, levels=levels, align=align)
        except ValueError as exc:
            raise UnetlabError(f"--tile-size {tile}: {exc}") from None
    return tile


def load_calibration(folder, model, *, tile_size: int = 256, preprocessing=None,
                     max_samples: int = MAX_SAMPLES, batch_size: int = 1,
                     check_tile: bool = False) -> list[torch.Tensor]:
    """Calibration batches ``(batch_size, C, *tile)`` for ``model`` from ``folder``,
    prepared by ``preprocessing`` (default: the model card's, else dtype scaling).
    The crop size is :func:`calibration_tile` (``check_tile``: refuse a size the model
    cannot take, before any crop is made)."""
    if tile_size < 1:
        raise UnetlabError(f"--tile-size {tile_size}: must be positive")
    folder = Path(folder)
    if not folder.is_dir():
        raise UnetlabError(f"--calibration {folder}: not a folder of images")
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UnetlabError(f"--calibration {folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    in_channels = int(getattr(model, "in_channels", 1))
    dims = int(getattr(model, "spatial_dims", 2))
    if preprocessing is None:
        card = getattr(model, "unetlab_card", None)
        preprocessing = Preprocessing.from_card(card) if card else \
            Preprocessing(channels=in_channels)
    items = [s for f in files for s in _samples(f, in_channels, dims)]
    pick = np.unique(np.linspace(0, len(items) - 1, min(max_samples, len(items))).round())
    picked = [items[i] for i in pick.astype(int)]
    tile = calibration_tile(model, tile_size, max(max(item.shape[1:]) for item in picked),
                            check=check_tile)
    crops = []
    for item in picked:
        starts = [(s - tile) // 2 for s in item.shape[1:]]
        crop = read_region(item, starts, [tile] * dims)  # float32, values as stored
        crops.append(torch.from_numpy(preprocessing.apply_inplace(crop, item.dtype)))
    return [torch.stack(crops[i:i + batch_size]) for i in range(0, len(crops), batch_size)]
