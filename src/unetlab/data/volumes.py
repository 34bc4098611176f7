"""NIfTI volumes (``.nii``, ``.nii.gz``) through nibabel: read with the affine and the
voxel spacing, write label volumes that keep the input's affine, resample to a spacing.

Arrays stay in the file's voxel order ``(i, j, k[, channel])``: no reorientation, so a
prediction written with the input's affine lies exactly on the input in any viewer.
Spacing is in the header's units (millimetres for clinical scans).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UnetlabError

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii.gz", ".nii")


def require_nibabel():
    """The nibabel module, or a one-line error naming the extra that installs it."""
    from .._extras import require

    return require("nibabel", "medical", "NIfTI volumes need nibabel")


def is_nifti(path) -> bool:
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_stem(path) -> str:
    """``case_01.nii.gz`` -> ``case_01``."""
    name = Path(path).name
    for suffix in NIFTI_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def list_nifti(directory, *, what: str = "volumes") -> list[Path]:
    """NIfTI files in ``directory`` sorted by name; an error when it is missing or empty."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UnetlabError(f"{directory}: {what} directory not found")
    files = sorted(p for p in directory.iterdir() if p.is_file() and is_nifti(p))
    if not files:
        raise UnetlabError(f"{directory}: no {what} found (looked for .nii, .nii.gz)")
    return files


@dataclass
class Volume:
    """A decoded volume: ``array`` ``(X, Y, Z)`` or ``(X, Y, Z, C)``, the 4x4 ``affine``
    (voxel -> world), ``spacing`` (3 voxel sizes) and the nibabel ``header``."""

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    header: object
    path: Path

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape[:3])


def read_volume(path, *, labels: bool = False) -> Volume:
    """Read a 3-D or 4-D NIfTI file (4-D: the last axis is channels/modalities).

    Intensities keep their stored meaning (scl_slope/inter applied) as float32; with
    ``labels=True`` the raw integer class ids are returned (int64) and fractional values
    are an error naming the file.
    """
    nib = require_nibabel()
    path = Path(path)
    if not path.is_file():
        raise UnetlabError(f"{path}: no such NIfTI file")
    from ..imageio import check_finite
    from ..limits import check_pixels

    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)  # the header's, before any voxel is read
    except Exception as exc:  # nibabel raises many types for damaged files
        raise UnetlabError(f"{path}: unreadable NIfTI ({' '.join(str(exc).split())})") \
            from None
    check_pixels(path, shape, int(np.prod(shape[:3], dtype=np.int64)))
    try:
        if labels:
            raw = np.asanyarray(img.dataobj)
        else:
            raw = img.get_fdata(dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for damaged files
        raise UnetlabError(f"{path}: unreadable NIfTI ({' '.join(str(exc).split())})") \
            from None
    array = raw
    if raw.ndim == 5 and raw.shape[3] == 1:  # (X, Y, Z, 1, C): ITK's vector image
        array = raw[:, :, :, 0, :]
    elif raw.ndim > 4 and all(n == 1 for n in raw.shape[4:]):
        array = raw.reshape(raw.shape[:4])
    if labels and array.ndim == 4 and array.shape[3] == 1:  # (X, Y, Z, 1), as some tools
        array = array[..., 0]                               # write a label map
    if array.ndim not in (3, 4) or (labels and array.ndim != 3):
        want = "3-D" if labels else "3-D or 4-D (channels last)"
        raise UnetlabError(f"{path}: expected a {want} volume, got shape {tuple(raw.shape)}")
    if labels:
        if np.issubdtype(array.dtype, np.floating):
            rounded = np.rint(array)
            if not np.array_equal(rounded, array):
                raise UnetlabError(f"{path}: label volume has non-integer values "
                                   f"(e.g. {array[rounded != array].flat[0]})")
            array = rounded
        array = array.astype(np.int64)
    else:
        check_finite(array, path)
    spacing = tuple(round(float(z), 6) for z in img.header.get_zooms()[:3])  # float32 noise
    if any(not np.isfinite(s) or s <= 0 for s in spacing):
        raise UnetlabError(f"{path}: invalid voxel spacing {spacing} in the header")
    return Volume(array=np.asarray(array), affine=np.asarray(img.affine, dtype=np.float64),
                  spacing=spacing, header=img.header, path=path)


def write_volume(path, array: np.ndarray, *, like: Volume | None = None, affine=None,
                 spacing=None, overwrite: bool = False) -> Path:
    """Write ``array`` as NIfTI with ``like``'s affine and header (or ``affine`` /
    ``spacing``), atomically; an existing file is kept unless ``overwrite``."""
    nib = require_nibabel()
    path = Path(path)
    if path.exists() and not overwrite:
        raise UnetlabError(f"{path} exists; pass --overwrite (overwrite=True) to replace it")
    if like is not None:
        header = like.header.copy()
        header.set_data_dtype(array.dtype)
        kind = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        img = kind(array, like.affine, header=header)
        # a 3-D label map from a 4-D input: the header must not keep a 4th dimension
        img.header.set_zooms(tuple(like.spacing) + (1.0,) * (array.ndim - 3))
        # the input's qform and sform as stored, codes included (e.g. sform 4 = MNI next
        # to a scanner qform): the output lies where the input does in every reader
        if hasattr(like.header, "get_qform"):
            for key in ("qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d",
                        "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z"):
                img.header[key] = like.header[key]
            img.header["pixdim"][0] = like.header["pixdim"][0]  # qfac
    else:
        if affine is None:
            affine = np.diag([*(spacing or (1.0, 1.0, 1.0)), 1.0])
        img = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
        img.header.set_xyzt_units("mm")
        img.set_qform(img.affine, code=1)
        img.set_sform(img.affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp{os.getpid()}.{path.name}")  # keeps the suffix nibabel reads
    try:
        nib.save(img, str(tmp))
        tmp.replace(path)
    except OSError as exc:
        raise UnetlabError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def check_spacing(spacing, where: str = "target_spacing") -> tuple[float, float, float]:
    """Three positive voxel sizes, or a one-line error naming ``where``."""
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise UnetlabError(f"{where}={spacing!r}: expected three voxel sizes, e.g. "
                           "[1.0, 1.0, 3.0]") from None
    if len(values) != 3 or any(not np.isfinite(v) or v <= 0 for v in values):
        raise UnetlabError(f"{where}={spacing!r}: expected three positive voxel sizes")
    return values


def resampled_shape(shape, spacing, target, path=None) -> tuple[int, int, int]:
    """The grid size that covers the same extent at the ``target`` spacing. With ``path``,
    a grid over the pixel limit is refused before anything is allocated: a header's
    voxel size is as untrusted as its size (100 mm voxels at a 1 mm target: 10^6 x)."""
    out = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(shape, spacing, target))
    if path is not None:
        from ..limits import check_pixels

        check_pixels(f"{path} (resampled from {'x'.join(str(int(n)) for n in shape)} at "
                     f"{'x'.join(f'{float(v):g}' for v in spacing)} mm to the model's "
                     f"{'x'.join(f'{float(v):g}' for v in target)} mm)", out, math.prod(out))
    return out


def resample(array: np.ndarray, shape, *, order: int) -> np.ndarray:
    """Resample the first three axes of ``array`` to ``shape`` (``order`` 0: nearest, for
    labels; 1: trilinear, for intensities and probabilities); extra axes are kept."""
    from scipy import ndimage

    shape = tuple(int(s) for s in shape)
    if tuple(array.shape[:3]) == shape:
        return array
    zoom = [n / o for n, o in zip(shape, array.shape[:3])] + [1.0] * (array.ndim - 3)
    out = ndimage.zoom(array, zoom, order=order, mode="nearest", grid_mode=True)
    return out
