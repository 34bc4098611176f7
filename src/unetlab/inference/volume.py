"""Predict a NIfTI volume with a 3-D model and write a label volume on the input's grid.

The input is read with its affine; the model's input mapping (``intensity``) and voxel
``spacing`` come from the model card's ``extensions["medical"]`` (what the ``nifti``
dataset used in training). With a spacing, the volume is resampled to it, predicted
tile by tile, and the class probabilities are resampled back (trilinear) before the
argmax, so ``<stem>_labels.nii.gz`` has the input's shape, affine and voxel sizes.
Test-time augmentation uses flips only (a 90-degree turn would mix a 2.5 mm axis with a
0.8 mm one).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..data.nifti import apply_intensity, check_intensity
from ..data.volumes import (
    check_spacing,
    nifti_stem,
    read_volume,
    resample,
    resampled_shape,
    write_volume,
)
from ..errors import UnetlabError
from .tiling import model_geometry, predict_tiled

log = logging.getLogger(__name__)


def _tile_for(shape, tile_size, model) -> tuple[int, ...]:
    """``tile_size`` per axis, no larger than the (pooling-aligned) volume along each."""
    align = model_geometry(model)[2]
    tiles = (tile_size,) * 3 if isinstance(tile_size, int | np.integer) else tuple(tile_size)
    if len(tiles) != 3:
        raise UnetlabError(f"tile_size={tile_size!r}: a volume needs one size or three")
    return tuple(min(int(t), -(-int(n) // align) * align) for t, n in zip(tiles, shape))


def predict_nifti(model, path, out_dir, *, tile_size=96, overlap: float = 0.25,
                  blend: str = "gaussian", tta=False, batch_size: int = 2, medical=None,
                  probabilities: bool = False, device=None, overwrite: bool = False,
                  progress: bool = False, stem=None, preprocessing=None) -> dict:
    """Predict ``path`` (.nii/.nii.gz, 3-D or 4-D with channels last) and write
    ``<stem>_labels.nii.gz`` (uint8 class ids; the input's affine and spacing) and, with
    ``probabilities``, ``<stem>_probs.nii.gz`` (float32, classes on the 4th axis).

    ``medical``: the card's ``extensions["medical"]`` (``spacing``, ``intensity``); None
    means the model takes the stored intensities on the file's grid. ``stem``: the
    output name under ``out_dir`` (default: the input's name without ``.nii.gz``);
    ``preprocessing`` must be None (volumes use ``medical["intensity"]``). Returns
    ``{"labels", "overlay": None, "probabilities", "shape", "spacing", "num_classes"}``.
    """
    path, out_dir = Path(path), Path(out_dir)
    if int(getattr(model, "spatial_dims", 2)) != 3:
        raise UnetlabError(f"{path}: a NIfTI volume needs a 3-D model (spatial_dims=3); this "
                           "one is 2-D")
    medical = dict(medical or {})
    intensity = check_intensity(medical.get("intensity") or "none")
    target = medical.get("spacing")
    if preprocessing is not None:
        raise UnetlabError("predict_nifti: volumes take medical['intensity'], not a 2-D "
                           "preprocessing")
    stem = Path(stem) if stem is not None else Path(nifti_stem(path))
    label_path = out_dir / stem.parent / f"{stem.name}_labels.nii.gz"
    prob_path = out_dir / stem.parent / f"{stem.name}_probs.nii.gz" if probabilities else None
    for p in (label_path, prob_path):
        if p is not None and p.exists() and not overwrite:
            raise UnetlabError(f"{p} exists; pass --overwrite to replace it")
    vol = read_volume(path)
    image = vol.array if vol.array.ndim == 4 else vol.array[..., None]
    in_channels = int(getattr(model, "in_channels", 1))
    if image.shape[3] != in_channels:
        raise UnetlabError(f"{path}: volume has {image.shape[3]} channel(s), the model "
                           f"expects {in_channels}")
    image = apply_intensity(image, intensity)
    shape = vol.spatial_shape
    if target is not None:
        target = check_spacing(target, "card extensions.medical.spacing")
        image = resample(image, resampled_shape(shape, vol.spacing, target), order=1)
        log.info("%s: resampled %s at %s mm to %s at %s mm", path, shape, vol.spacing,
                 image.shape[:3], target)
    chw = np.ascontiguousarray(np.moveaxis(image, -1, 0))
    if tta:  # 90-degree turns would mix a thick axis with a thin one: flips only
        tta = "flips"
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=path.name, unit="tile", leave=False)
    try:
        probs = predict_tiled(model, chw, tile_size=_tile_for(chw.shape[1:], tile_size, model),
                              overlap=overlap, blend=blend, tta=tta, batch_size=batch_size,
                              output="probabilities", device=device, spatial_dims=3,
                              progress=bar.update if bar is not None else None).numpy()
    finally:
        if bar is not None:
            bar.close()
    if probs.shape[1:] != shape:  # back to the input grid before the decision
        probs = np.moveaxis(resample(np.moveaxis(probs, 0, -1), shape, order=1), -1, 0)
    k = probs.shape[0]
    labels = probs.argmax(0).astype(np.uint8 if k <= 256 else np.uint16)
    out = {"labels": write_volume(label_path, labels, like=vol, overwrite=overwrite),
           "overlay": None, "probabilities": None, "shape": list(shape),
           "spacing": list(vol.spacing), "num_classes": k}
    if prob_path is not None:
        out["probabilities"] = write_volume(
            prob_path, np.ascontiguousarray(np.moveaxis(probs, 0, -1), dtype=np.float32),
            like=vol, overwrite=overwrite)
    return out
