"""Predict a NIfTI volume with a 3-D model and write a label volume on the input's grid.

The input is read with its affine; the model's input mapping (``intensity``) and voxel
``spacing`` come from the model card's ``extensions["medical"]`` (what the ``nifti``
dataset used in training). With a spacing, the volume is resampled to it, predicted
tile by tile, and the class probabilities are resampled back (trilinear) before the
argmax, so ``<stem>_labels.nii.gz`` has the input's shape, affine and voxel sizes.
The prediction is streamed along the first axis: class probabilities are held only for
the rows the tiles still add to (one tile's depth of the whole plane) and, with a
spacing, the few model-grid rows the next input rows interpolate from, never for the
whole volume.
Test-time augmentation uses flips only (a 90-degree turn would mix a 2.5 mm axis with a
0.8 mm one).
A case stored one file per modality (nnU-Net's ``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``,
as the ``nifti`` dataset reads them in training) is predicted as one multi-channel input:
:func:`group_channel_inputs` joins predict's inputs, ``channels`` passes the files.
"""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..data.nifti import (
    apply_intensity,
    check_intensity,
    group_channels,
    read_channels,
    split_channel,
)
from ..data.volumes import (
    check_spacing,
    is_nifti,
    nifti_stem,
    resample,
    resampled_shape,
    write_volume,
)
from ..errors import UnetlabError
from .tiling import class_argmax, iter_bands, model_geometry, plan_tiles

log = logging.getLogger(__name__)


def _tile_for(shape, tile_size, model) -> tuple[int, ...]:
    """``tile_size`` per axis, no larger than the (pooling-aligned) volume along each."""
    align = model_geometry(model)[2]
    tiles = (tile_size,) * 3 if isinstance(tile_size, int | np.integer) else tuple(tile_size)
    if len(tiles) != 3:
        raise UnetlabError(f"tile_size={tile_size!r}: a volume needs one size or three")
    return tuple(min(int(t), -(-int(n) // align) * align) for t, n in zip(tiles, shape))


class RowResampler:
    """Rows of the model's grid in, rows of the input grid out, as they become final.

    ``push`` takes the next rows ``(K, m, *plane)`` along the first axis of a grid of
    ``n_in`` rows and yields ``(rows, values)`` for the input-grid rows (of ``shape``)
    whose two source rows have arrived: linear along the first axis, then bilinear in
    the plane, the same mapping as :func:`unetlab.data.volumes.resample` (scipy's
    ``zoom``, ``order=1``, ``grid_mode``; separable, so equal to its trilinear result up
    to float rounding). It keeps only the rows the next output rows still need.
    """

    def __init__(self, n_in: int, shape) -> None:
        n_out = int(shape[0])
        src = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        self.i0 = np.floor(src).astype(np.int64)
        self.i1 = np.minimum(self.i0 + 1, n_in - 1)
        self.frac = (src - self.i0).astype(np.float32)
        self.plane = tuple(int(n) for n in shape[1:])
        self.next = 0      # the first input-grid row not yet given out
        self.lo = 0        # the model-grid row that buf[:, 0] holds
        self.buf = None

    def push(self, values: np.ndarray):
        from scipy import ndimage

        buf = values if self.buf is None else np.concatenate([self.buf, values], axis=1)
        hi = self.lo + buf.shape[1]
        stop = self.next
        while stop < len(self.i0) and self.i1[stop] < hi:
            stop += 1
        if stop > self.next:
            rows = slice(self.next, stop)
            f = self.frac[rows][None, :, None, None]
            out = buf[:, self.i0[rows] - self.lo] * (1 - f) + buf[:, self.i1[rows] - self.lo] * f
            if tuple(out.shape[2:]) != self.plane:
                zoom = [1.0, 1.0] + [n / o for n, o in zip(self.plane, out.shape[2:])]
                out = ndimage.zoom(out, zoom, order=1, mode="nearest", grid_mode=True)
            self.next = stop
            yield rows, out
        # the first row the next output row reads; never past what has arrived (when the
        # model grid is over twice as fine, it may not have arrived yet)
        keep = min(int(self.i0[self.next]) if self.next < len(self.i0) else hi, hi)
        self.buf = np.ascontiguousarray(buf[:, keep - self.lo:])
        self.lo = keep


def group_channel_inputs(items, in_channels: int) -> tuple[list, dict]:
    """Predict's inputs with one file per modality joined into cases, as training reads
    them: in a folder whose NIfTI files are all named ``CASE_NNNN``, the files of ``CASE``
    become one input (its channel-0 file, keyed ``CASE.nii.gz`` so its outputs are
    ``CASE_labels.nii.gz``), when the model takes several channels or when every file is
    a ``_0000`` (one-modality nnU-Net data). Otherwise (other names in the folder, or a
    numbered series for a one-channel model) each file stays its own input.

    ``items``: ``(file, key)`` pairs (:func:`unetlab.inference.outputs.collect_inputs`).
    Returns the items (a case where its channel-0 file was) and ``{str(channel-0 file):
    [its channel files in suffix order]}``. A case missing a channel file is a one-line
    error."""
    folders: dict = {}
    for f, key in items:
        if is_nifti(f):
            folders.setdefault((f.parent.resolve(), PurePosixPath(key).parent), []).append(f)
    cases: dict = {}    # channel-0 file -> (the case's key, its channel files)
    joined: set = set()  # every file of a case
    for (_, parent), files in folders.items():
        names = [split_channel(nifti_stem(f)) for f in files]
        if not all(names) or (in_channels == 1 and any(i for _, i in names)):
            continue
        for case, chans in group_channels(files).items():
            cases[chans[0]] = ((parent / f"{case}.nii.gz").as_posix(), chans)
            joined.update(chans)
    out, channels = [], {}
    for f, key in items:
        if f in cases:
            key, chans = cases[f]
            channels[str(f)] = [str(c) for c in chans]
        elif f in joined:
            continue
        out.append((f, key))
    return out, channels


def predict_nifti(model, path, out_dir, *, tile_size=96, overlap: float = 0.25,
                  blend: str = "gaussian", tta=False, batch_size: int = 2, medical=None,
                  probabilities: bool = False, device=None, overwrite: bool = False,
                  progress: bool = False, stem=None, preprocessing=None,
                  channels=None) -> dict:
    """Predict ``path`` (.nii/.nii.gz, 3-D or 4-D with channels last) and write
    ``<stem>_labels.nii.gz`` (uint8 class ids; the input's affine and spacing) and, with
    ``probabilities``, ``<stem>_probs.nii.gz`` (float32, classes on the 4th axis).

    ``medical``: the card's ``extensions["medical"]`` (``spacing``, ``intensity``); None
    means the model takes the stored intensities on the file's grid. ``channels``: a
    case's files, one per modality in order (``CASE_0000.nii.gz``, ``CASE_0001.nii.gz``
    ...; ``path`` is the first), which must share its grid. ``stem``: the output name
    under ``out_dir`` (default: the input's name without ``.nii.gz``, with ``channels``
    the case's, ``CASE``); ``preprocessing`` must be None (volumes use
    ``medical["intensity"]``). Returns
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
    files = [Path(f) for f in channels] if channels else [path]
    if stem is None:
        case = split_channel(nifti_stem(path)) if channels else None
        stem = case[0] if case else nifti_stem(path)
    stem = Path(stem)
    label_path = out_dir / stem.parent / f"{stem.name}_labels.nii.gz"
    prob_path = out_dir / stem.parent / f"{stem.name}_probs.nii.gz" if probabilities else None
    for p in (label_path, prob_path):
        if p is not None and p.exists() and not overwrite:
            raise UnetlabError(f"{p} exists; pass --overwrite to replace it")
    vol = read_channels(files)
    image = vol.array
    in_channels = int(getattr(model, "in_channels", 1))
    if image.shape[3] != in_channels:
        what = f"its {len(files)} channel files hold" if len(files) > 1 else "volume has"
        hint = ("; a case stored one file per modality (CASE_0000.nii.gz, "
                "CASE_0001.nii.gz ...) is read as one when its folder is given (or all "
                "its files), every NIfTI file there named so"
                if len(files) == 1 and image.shape[3] < in_channels else "")
        raise UnetlabError(f"{path}: {what} {image.shape[3]} channel(s), the model "
                           f"expects {in_channels}{hint}")
    image = apply_intensity(image, intensity)
    shape = tuple(int(n) for n in vol.spatial_shape)
    if target is not None:
        target = check_spacing(target, "card extensions.medical.spacing")
        image = resample(image, resampled_shape(shape, vol.spacing, target, path),
                         order=1)
        log.info("%s: resampled %s at %s mm to %s at %s mm", path, shape, vol.spacing,
                 image.shape[:3], target)
    chw = np.ascontiguousarray(np.moveaxis(image, -1, 0))
    del image
    if tta:  # 90-degree turns would mix a thick axis with a thin one: flips only
        tta = "flips"
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=path.name, unit="tile", leave=False)
    labels = probs = k = None
    try:
        plans = plan_tiles(chw.shape[1:], _tile_for(chw.shape[1:], tile_size, model), overlap,
                           model=model)
        bands = iter_bands(model, chw, plans, blend=blend, tta=tta, batch_size=batch_size,
                           output="probabilities", device=device,
                           progress=bar.update if bar is not None else None)
        back = RowResampler(chw.shape[1], shape) if chw.shape[1:] != shape else None
        for rows, values in bands:  # rows final on the model's grid
            values = values.numpy()
            for out_rows, out in (back.push(values) if back is not None
                                  else [(rows, values)]):
                if labels is None:
                    k = out.shape[0]
                    labels = np.zeros(shape, np.uint8 if k <= 256 else np.uint16)
                    if prob_path is not None:
                        probs = np.zeros((*shape, k), np.float32)
                labels[out_rows] = class_argmax(torch.from_numpy(np.ascontiguousarray(out)))
                if probs is not None:
                    probs[out_rows] = np.moveaxis(out, 0, -1)
    finally:
        if bar is not None:
            bar.close()
    if labels is None:  # iter_bands yields every row of a non-empty volume
        raise UnetlabError(f"{path}: nothing was predicted (empty volume?)")
    out = {"labels": write_volume(label_path, labels, like=vol, overwrite=overwrite),
           "overlay": None, "probabilities": None, "shape": list(shape),
           "spacing": list(vol.spacing), "num_classes": k}
    if prob_path is not None:
        out["probabilities"] = write_volume(prob_path, probs, like=vol, overwrite=overwrite)
    return out
