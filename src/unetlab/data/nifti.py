"""``nifti``: 3-D volumes and label volumes in NIfTI (``.nii``, ``.nii.gz``).

Layout (``images`` and ``labels`` are options)::

    ROOT/images/case01.nii.gz          ROOT/labels/case01.nii.gz
    ROOT/images/case02_0000.nii.gz     ROOT/labels/case02.nii.gz   (multi-modal: one file
    ROOT/images/case02_0001.nii.gz                                  per channel, nnU-Net style)

(or ``ROOT/<split>/images``, ``ROOT/<split>/labels``). A 4-D image holds its channels on
the last axis. Arrays keep the file's voxel order (no reorientation).

An item is ``{"image": float32 (C, X, Y, Z), "mask": int64 (X, Y, Z), "name"}``. What
changes the model's input (``intensity``, ``target_spacing``) is published in
``card_extensions["medical"]`` so prediction repeats it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import numpy as np
import torch

from ..errors import UnetlabError
from .base import SegmentationDataset, check_no_missing_masks, describe_occurrences
from .palettes import default_palette
from .volumes import (
    Volume,
    check_spacing,
    list_nifti,
    nifti_stem,
    read_volume,
    resample,
    resampled_shape,
)

log = logging.getLogger(__name__)

_CHANNEL = re.compile(r"^(.*)_(\d{4})$")
# an undeclared label value on fewer voxels than this share, in a single file, is taken
# for a stray one (as the folder dataset's RARE_COLOUR_SHARE)
RARE_LABEL_SHARE = 1e-4


def check_intensity(intensity):
    """``"zscore"``, ``"none"`` or ``{"window": [lo, hi]}`` (``[lo, hi]`` accepted)."""
    if intensity in ("zscore", "none"):
        return intensity
    window = intensity.get("window") if isinstance(intensity, dict) else intensity
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        lo = hi = None
    if lo is None or not lo < hi:
        raise UnetlabError(f"intensity={intensity!r}: expected 'zscore', 'none' or "
                           "{'window': [low, high]} with low < high")
    return {"window": [lo, hi]}


def apply_intensity(image: np.ndarray, intensity) -> np.ndarray:
    """Map a float32 ``(X, Y, Z, C)`` volume as ``intensity`` says (per channel)."""
    image = image.astype(np.float32, copy=True)
    if intensity == "zscore":
        axes = tuple(range(image.ndim - 1))
        mean = image.mean(axes, keepdims=True)
        std = image.std(axes, keepdims=True)
        image -= mean
        image /= np.maximum(std, 1e-8)
    elif isinstance(intensity, dict):
        lo, hi = intensity["window"]
        np.clip(image, lo, hi, out=image)
        image -= lo
        image /= hi - lo
    return image


def split_channel(stem: str) -> tuple[str, int] | None:
    """``("case", 1)`` for ``case_0001`` (a channel file, nnU-Net naming), else None."""
    m = _CHANNEL.match(stem)
    return (m.group(1), int(m.group(2))) if m else None


def read_channels(files) -> Volume:
    """A case's image from its files (one per modality in order, or one 4-D file) as the
    first file's :class:`Volume` with the channels stacked: ``array`` ``(X, Y, Z, C)``,
    the first file's affine, spacing and header. The files must share one voxel grid
    (shape and affine): stacked voxel by voxel, a modality on another grid would pair
    each voxel with another place in the body."""
    ref, arrays = None, []
    for f in files:
        vol = read_volume(f)
        if ref is None:
            ref = vol
        elif vol.spatial_shape != ref.spatial_shape:
            raise UnetlabError(f"{vol.path}: shape {vol.spatial_shape} differs from "
                               f"{ref.path.name} {ref.spatial_shape}")
        elif not np.allclose(vol.affine, ref.affine, atol=1e-3):
            raise UnetlabError(f"{vol.path}: affine differs from {ref.path.name}'s (the "
                               "channel files of a case must share one voxel grid; resample "
                               "them onto one)")
        arrays.append(vol.array if vol.array.ndim == 4 else vol.array[..., None])
    image = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=3)
    return dataclasses.replace(ref, array=image)


def group_channels(files: list[Path]) -> dict[str, list[Path]]:
    """``{case: [channel files]}``: ``case_0000``, ``case_0001`` ... are channels of
    ``case`` when every file is named so; otherwise each file is one case."""
    stems = [nifti_stem(f) for f in files]
    seen: dict[str, Path] = {}
    for s, f in zip(stems, files):  # case.nii and case.nii.gz: which one? neither silently
        if s in seen:
            raise UnetlabError(f"{seen[s]} and {f.name}: two volumes named {s!r}; keep one")
        seen[s] = f
    matches = [_CHANNEL.match(s) for s in stems]
    if not all(matches):
        return {s: [f] for s, f in zip(stems, files)}
    cases: dict[str, dict[int, Path]] = {}
    for m, f in zip(matches, files):
        cases.setdefault(m.group(1), {})[int(m.group(2))] = f
    n = max(max(c) + 1 for c in cases.values())
    for case, chans in cases.items():
        if sorted(chans) != list(range(n)):
            raise UnetlabError(f"{files[0].parent}: case {case!r} has channel files "
                               f"{sorted(chans)}; every case needs _0000 .. _{n - 1:04d}")
    return {case: [chans[i] for i in sorted(chans)] for case, chans in cases.items()}


class NiftiDataset(SegmentationDataset):
    """3-D volumes and label volumes in NIfTI.

    Args:
        root: the data folder; split: ``ROOT/<split>/<images>`` when it exists, else
            ``ROOT/<images>`` (hold out validation cases with ``data.val_split: 0.2``).
        images, labels: sub-directory names (default ``images``, ``labels``); a split
            without a labels folder has no masks (prediction only).
        num_classes / class_names: the classes (label values are class ids); without
            either, ``max label + 1`` over the label volumes, which must then hold
            every value ``0..max`` and none on a stray few voxels of one file
            (:func:`check_inferred_labels`). Every label volume is read once when the
            dataset is built, so a value outside the classes is an error naming the file
            before training starts, in validation cases too.
        ignore_index: a label value that counts nowhere (loss, metrics).
        intensity: ``"zscore"`` (default; per volume and channel, for MR), ``"none"``
            or ``{"window": [lo, hi]}`` (clip then scale to [0, 1], for CT).
        target_spacing: resample every case to these voxel sizes (trilinear images,
            nearest-neighbour labels); None keeps the files' grids.
    """

    spatial_dims = 3
    input_scaling = "none"  # float intensities, mapped by ``intensity`` (in the card)

    def __init__(self, root, split: str = "train", transform=None, *, images: str = "images",
                 labels: str = "labels", num_classes: int | None = None, class_names=None,
                 palette=None, ignore_index: int | None = None, intensity="zscore",
                 target_spacing=None, **options):
        if options.get("weight_map"):
            raise UnetlabError("nifti: weight_map (the 2-D border weight map) is not "
                               "available for volumes")
        if options.get("normalize") not in (None, False):
            raise UnetlabError("nifti: use intensity ('zscore', 'none' or {'window': [lo, "
                               "hi]}) instead of normalize for volumes")
        super().__init__(transform=transform, **options)
        if root is None:
            raise UnetlabError("nifti dataset needs a root (the folder holding images/ and "
                               "labels/)")
        root = Path(root)
        if not root.is_dir():
            raise UnetlabError(f"{root}: data directory not found")
        base = root / split if (root / split / images).is_dir() else root
        self.intensity = check_intensity(intensity)
        self.target_spacing = (None if target_spacing is None
                               else check_spacing(target_spacing, "target_spacing"))
        cases = group_channels(list_nifti(base / images, what="image volumes"))
        label_dir = base / labels
        label_files = ({nifti_stem(f): f for f in list_nifti(label_dir, what="label volumes")}
                       if label_dir.is_dir() else {})
        missing = [chans[0].name for c, chans in cases.items()
                   if label_dir.is_dir() and c not in label_files]
        check_no_missing_masks(missing, label_dir)
        self.samples = [(case, chans, label_files.get(case)) for case, chans in cases.items()]
        self.names = [s[0] for s in self.samples]
        self.has_masks = bool(label_files)
        self.ignore_index = ignore_index
        declared = num_classes is not None or class_names is not None
        # read from this split's labels: a validation split is then given this count
        # (its few volumes may lack a class; training.builder._val_options)
        self.inferred_num_classes = not declared
        if num_classes is None:
            num_classes = (len(class_names) if class_names is not None
                           else self._count_classes())
        self.class_names = tuple(class_names or (f"class{i}" for i in range(num_classes)))
        if len(self.class_names) != num_classes:
            raise UnetlabError(f"nifti: {len(self.class_names)} class_names for "
                               f"{num_classes} classes")
        self.palette = (np.asarray(palette, dtype=np.uint8) if palette is not None
                        else default_palette(num_classes))
        if declared:  # (inferred classes hold every value found: _count_classes read them)
            for label_path, values, _ in self._label_values():
                self._check_labels(values, label_path)
        first = read_volume(self.samples[0][1][0])
        per_file = 1 if first.array.ndim == 3 else first.array.shape[3]
        self.in_channels = per_file * len(self.samples[0][1])
        self._spacings: dict[int, tuple] = {}

    @property
    def card_extensions(self) -> dict:
        """What prediction must repeat: the intensity mapping and the voxel spacing."""
        return {"medical": {"spacing": list(self.target_spacing) if self.target_spacing
                            else None, "intensity": self.intensity, "axes": "voxel"}}

    def voxel_spacing(self, index: int) -> tuple[float, float, float]:
        """Voxel sizes (header units, usually mm) of sample ``index`` as the model sees it."""
        if self.target_spacing is not None:
            return self.target_spacing
        if index not in self._spacings:
            self._spacings[index] = read_volume(self.samples[index][1][0]).spacing
        return self._spacings[index]

    def _label_values(self):
        """``(label file, values, voxel counts)`` of every case with a label volume, read
        one volume at a time (memory stays at one volume, whatever the split's size)."""
        for _, _, label_path in self.samples:
            if label_path is not None:
                yield (label_path, *_value_counts(read_volume(label_path, labels=True).array))

    def _count_classes(self) -> int:
        where: dict[int, list] = {}
        for label_path, values, counts in self._label_values():
            for v, n in zip(values.tolist(), counts.tolist()):
                if v != self.ignore_index:
                    where.setdefault(v, []).append((label_path, n))
        check_inferred_labels(where)
        top = max(where, default=0)
        log.info("nifti: no num_classes declared; %d classes from the label values", top + 1)
        return max(top + 1, 2)

    def _load_raw(self, index):
        name, channel_files, label_path = self.samples[index]
        ref = read_channels(channel_files)
        image = ref.array
        if image.shape[3] != self.in_channels:
            raise UnetlabError(f"{ref.path}: {image.shape[3]} channel(s), the first case has "
                               f"{self.in_channels}")
        self._spacings[index] = ref.spacing
        image = apply_intensity(image, self.intensity)
        mask = None
        if label_path is not None:
            lab = read_volume(label_path, labels=True)
            if lab.spatial_shape != ref.spatial_shape:
                raise UnetlabError(f"{label_path}: label shape {lab.spatial_shape} differs from "
                                   f"the image's {ref.spatial_shape} ({ref.path.name})")
            if not np.allclose(lab.affine, ref.affine, atol=1e-3):
                log.warning("%s: affine differs from %s; using the voxel grid as is",
                            label_path, ref.path.name)
            mask = lab.array
            self._check_labels(mask, label_path)
        if self.target_spacing is not None:
            shape = resampled_shape(ref.spatial_shape, ref.spacing, self.target_spacing,
                                    ref.path)
            image = resample(image, shape, order=1)
            mask = resample(mask, shape, order=0) if mask is not None else None
        return image, mask, f"{ref.path} / {label_path}"

    def _check_labels(self, mask: np.ndarray, path) -> None:
        values = np.unique(mask)
        bad = [int(v) for v in values if not (0 <= v < self.num_classes)
               and v != self.ignore_index]
        if bad:
            raise UnetlabError(f"{path}: label values {bad[:5]} outside 0..{self.num_classes - 1}"
                               + (f" (ignore_index {self.ignore_index})"
                                  if self.ignore_index is not None else ""))

    def _image_tensor(self, image) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            return image.float()
        array = np.ascontiguousarray(np.moveaxis(np.asarray(image, dtype=np.float32), -1, 0))
        return torch.from_numpy(array)


def _value_counts(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(array, return_counts=True)`` for integer labels, by a count when their
    range is small (sorting a CT-sized volume took seconds, at every dataset build)."""
    flat = array.reshape(-1)
    if flat.size and flat.dtype.kind in "iub":
        lo, hi = int(flat.min()), int(flat.max())
        if hi - lo < 1 << 16:
            counts = np.bincount((flat.astype(np.int64) - lo), minlength=hi - lo + 1)
            present = np.flatnonzero(counts)
            return present + lo, counts[present]
    return np.unique(flat, return_counts=True)


def check_inferred_labels(where: dict) -> None:
    """Classes read from the label values (none declared) must be the ids ``0..K-1``:
    a value above a missing one (0-2 then 7, or 0/255 masks) or a negative one would
    silently add classes the model learns from nothing: a one-line error naming each,
    its voxels and files, and how to declare the classes. Among several label volumes,
    the top values on fewer than 0.01% of the labelled voxels and in a single file may
    be a few stray voxels or a real, small class: a warning that says which and how to
    leave them out.

    ``where``: ``{value: [(label file, voxel count), ...]}`` over the split, without the
    ``ignore_index`` voxels.
    """
    total = sum(n for files in where.values() for _, n in files)
    several = len({f for files in where.values() for f, _ in files}) > 1
    missing = sorted(set(range(max(where, default=0) + 1)) - set(where))
    stray = sorted(v for v, files in where.items() if v < 0 or (missing and v > missing[0]))
    rare = sorted(v for v, files in where.items()
                  if v > 0 and v not in stray and several and len(files) == 1
                  and files[0][1] < RARE_LABEL_SHARE * total)
    top = max((v for v in where if v >= 0 and v not in stray), default=0)
    rare = [v for i, v in enumerate(rare) if all(w in rare for w in range(v, top + 1))]
    if rare and not stray:  # only those at the top: leaving them out leaves 0..K-1
        way = (f"declare data.options.num_classes={max(rare[0], 2)} and "
               f"data.options.ignore_index={rare[0]}") if len(rare) == 1 else \
            "fix those label files (ignore_index leaves out one value only)"
        log.warning("nifti: label value(s) %s each on a few voxels of one file only (%s): "
                    "classes the model can hardly learn, or stray voxels; if stray, %s",
                    rare, "; ".join(f"{v}: {where[v][0][1]:,} in {where[v][0][0]}"
                                    for v in rare), way)
    if not stray:
        return

    def describe(v):
        return describe_occurrences(v, where[v], "voxel")

    gap = ""
    if missing:
        shown = missing if len(missing) <= 3 else f"{missing[0]}..{missing[-1]}"
        gap = f"; no label volume holds {shown}"
    kept = max((v for v in where if v >= 0 and v not in stray), default=0) + 1
    keep_all = "" if min(where) < 0 else (
        f"keep every value as a class with data.options.num_classes={max(where) + 1} (the "
        "missing ones stay empty, as BraTS's 0, 1, 2, 4); ")
    raise UnetlabError(
        f"nifti: undeclared label values that would add classes: "
        f"{'; '.join(map(describe, stray[:5]))}"
        f"{f' (+{len(stray) - 5} more)' if len(stray) > 5 else ''}{gap}. "
        f"Fix the label volumes; or {keep_all}or, for one stray value, leave it out of "
        f"training and metrics with data.options.num_classes={max(kept, 2)} and "
        f"data.options.ignore_index={stray[-1]}")
