"""``geotiff``: GeoTIFF (or any GDAL raster) images with label rasters, read by rasterio.

Two layouts::

    ROOT/images/a.tif  ROOT/labels/a.tif        a folder of rasters (or ROOT/<split>/images, ...)
    scene: big.tif, scene_labels: big_labels.tif  one scene cut into windows on the fly

Splits: ``ROOT/<split>/`` when it exists; otherwise ``val`` is the last ``val_fraction``
(default 0.2) of the files by name, or, for one scene, its bottom ``val_fraction`` of rows
(a spatial hold-out: no validation window overlaps a training window); ``train`` is the
rest. Labels are class ids; the label raster's no-data value, ``ignore_values`` (default
255) and every pixel where the image is no-data become ``ignore_index`` (255), which
losses and metrics skip. Images: any band count and dtype; ``bands`` selects bands by
number (from 1) or by description (``["red", "nir"]``). Integer images are divided by
their dtype's maximum; ``normalize="auto"`` (default) then standardises each band with
its mean and standard deviation over the *training* rasters' valid pixels, which travel
to prediction in the model card (``normalize``, and ``card_extensions["geo"]``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import UnetlabError
from ..georaster import (
    LABEL_NODATA,
    RASTER_SUFFIXES,
    band_names,
    band_statistics,
    open_raster,
    read_window,
    require_rasterio,
    resolve_bands,
    row_chunks,
    unit_scale,
    window_of,
)
from .base import SegmentationDataset, check_no_missing_masks
from .palettes import default_palette

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
#: pixels per block when label rasters are scanned for their values
LABEL_BLOCK = 1 << 21


def _rasters(directory: Path, what: str) -> list[Path]:
    if not directory.is_dir():
        raise UnetlabError(f"{directory}: {what} directory not found")
    files = sorted(p for p in directory.iterdir()
                   if p.is_file() and p.suffix.lower() in RASTER_SUFFIXES)
    if not files:
        raise UnetlabError(f"{directory}: no {what} rasters ({', '.join(RASTER_SUFFIXES)})")
    return files


def _windows(height: int, width: int, size: int | None, rows: slice) -> list[tuple]:
    """Grid windows ``(rows, cols)`` of ``size`` covering ``rows`` x the full width; the
    last window on each axis is moved back to end at the border (no partial windows)."""
    if size is None:
        return [(rows, slice(0, width))]

    def starts(lo, hi):
        if hi - lo <= size:
            return [lo]
        out = list(range(lo, hi - size, size))
        return out + [hi - size]

    return [(slice(r, min(r + size, rows.stop)), slice(c, min(c + size, width)))
            for r in starts(rows.start, rows.stop) for c in starts(0, width)]


def _unique(values: np.ndarray) -> set[int]:
    """The distinct values of int64 class ids (a count when their range is small: much
    faster than sorting)."""
    if not values.size:
        return set()
    lo, hi = int(values.min()), int(values.max())
    if hi - lo < 1 << 16:
        return set((np.flatnonzero(np.bincount(values - lo, minlength=1)) + lo).tolist())
    return set(np.unique(values).tolist())


def _georeferenced(ds) -> bool:
    return ds.crs is not None or not ds.transform.is_identity


def _check_same_grid(src, lab, image, label) -> None:
    """A label raster must lie on its image's pixel grid: the same CRS and transform when
    both are georeferenced (a label raster without georeferencing is taken pixel for
    pixel). Otherwise windows would pair pixels of different places, silently."""
    if not (_georeferenced(src) and _georeferenced(lab)):
        return
    if src.crs and lab.crs and src.crs != lab.crs and (
            src.crs.to_epsg() is None or src.crs.to_epsg() != lab.crs.to_epsg()):
        raise UnetlabError(f"{image} / {label}: the labels are in another CRS "
                           f"({lab.crs or 'none'}; the image: {src.crs or 'none'}); "
                           "reproject them onto the image's grid")
    # where the labels' corners fall in the image's pixels: within a hundredth of a pixel
    def apply(t, x, y):
        return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f

    inverse = ~src.transform
    corners = [(0, 0), (src.width, 0), (0, src.height), (src.width, src.height)]
    if any(abs(u - x) > 0.01 or abs(v - y) > 0.01
           for x, y in corners for u, v in [apply(inverse, *apply(lab.transform, x, y))]):
        raise UnetlabError(f"{image} / {label}: the labels' grid differs from the image's "
                           f"(transform {tuple(round(v, 6) for v in lab.transform[:6])}, "
                           f"the image: {tuple(round(v, 6) for v in src.transform[:6])}); "
                           "resample them onto the image's grid")


class GeoTiffDataset(SegmentationDataset):
    """Image rasters + label rasters (see the module docstring).

    Args:
        root: the data folder (``scene`` / ``scene_labels`` are relative to it).
        split: ``train``, ``val`` or ``test``.
        images, labels: sub-folder names (default ``images``, ``labels``).
        label_suffix: a suffix on label stems to strip before pairing (e.g. ``"_labels"``).
        scene, scene_labels: one image raster and its label raster instead of folders.
        window: cut rasters into windows of this many pixels (default 512 for a scene,
            whole files for a folder); windows without any labelled pixel are skipped.
        val_fraction: the share held out as ``val`` when the data has no split folders.
        bands: band numbers (from 1) or descriptions; default all.
        class_names / num_classes: default from the label values found (0..max).
        palette: K x 3 colours; default the label raster's colour table, else a fixed one.
        ignore_values: raw label values that are not classes (default ``(255,)``).
        normalize: ``"auto"`` (per-band statistics of the training rasters), None,
            ``"imagenet"`` or ``{"mean": [...], "std": [...]}``.
    """

    ignore_index = LABEL_NODATA

    def __init__(self, root, split: str = "train", transform=None, *, images: str = "images",
                 labels: str = "labels", label_suffix: str = "", scene: str | None = None,
                 scene_labels: str | None = None, window: int | None = None,
                 val_fraction: float = 0.2, bands=None, class_names=None,
                 num_classes: int | None = None, palette=None, ignore_values=(LABEL_NODATA,),
                 normalize="auto", **options):
        require_rasterio()
        super().__init__(transform=transform, **options)
        if split not in SPLITS:
            raise UnetlabError(f"geotiff: unknown split {split!r}; choose from {SPLITS}")
        if not 0.0 < float(val_fraction) < 1.0:
            raise UnetlabError(f"geotiff: val_fraction must be in (0, 1), got {val_fraction}")
        if window is not None and int(window) < 16:
            raise UnetlabError(f"geotiff: window must be >= 16 pixels, got {window}")
        self.root = Path(root) if root is not None else None
        self.split = split
        self.ignore_values = tuple(int(v) for v in ignore_values)
        pairs, self.split_mode = self._pairs(images, labels, label_suffix, scene, scene_labels)
        window = int(window) if window is not None else (512 if scene is not None else None)
        with open_raster(pairs[0][1]) as src:
            self.bands = resolve_bands(src, bands, pairs[0][1])
            self.channel_names = band_names(src, self.bands)
            self.dtype = np.dtype(src.dtypes[self.bands[0] - 1])
            self.image_nodata = src.nodata
            self.crs = src.crs.to_string() if src.crs else None
            self.resolution = [float(v) for v in src.res]
        self.in_channels = len(self.bands)
        regions = {s: self._regions(pairs, s, float(val_fraction), window)
                   for s in ("train", split)}
        self.samples = self._keep_labelled(regions[split][0])
        if not self.samples:
            raise UnetlabError(f"geotiff: split {split!r} has no window with a labelled pixel")
        self.names = [s[0] for s in self.samples]
        train_samples, train_regions = regions["train"]
        found, by_file = self._label_values(pairs, train_samples)
        self._set_classes(class_names, num_classes, palette, found, pairs[0][2])
        self._check_label_values(by_file, declared=class_names is not None or
                                 num_classes is not None)
        self.normalize = self._normalization(normalize, train_regions)
        self._fill = self._fill_values()
        self.card_extensions = {"geo": {
            "bands": self.bands, "band_names": self.channel_names, "dtype": self.dtype.name,
            "nodata": self.image_nodata, "label_nodata": LABEL_NODATA, "crs": self.crs,
            "resolution": self.resolution}}

    # -- layout -------------------------------------------------------------------------
    def _pairs(self, images, labels, label_suffix, scene, scene_labels):
        """``([(name, image, label), ...], "split folders" | "fraction")``."""
        if scene is not None or scene_labels is not None:
            if scene is None or scene_labels is None:
                raise UnetlabError("geotiff: give both scene and scene_labels")
            image, label = (Path(p) if self.root is None else self.root / p
                            for p in (scene, scene_labels))
            for p in (image, label):
                if not p.is_file():
                    raise UnetlabError(f"geotiff: {p}: no such raster file")
            return [(image.stem, image, label)], "fraction"
        if self.root is None:
            raise UnetlabError("geotiff needs a root (the folder holding images/ and labels/) "
                               "or scene and scene_labels")
        if not self.root.is_dir():
            raise UnetlabError(f"{self.root}: data directory not found")
        by_split = (self.root / self.split / images).is_dir()
        if not by_split and self.split == "test":
            raise UnetlabError(f"geotiff: no {self.root / 'test' / images}; a test split "
                               "needs its own folder")
        base = self.root / self.split if by_split else self.root
        label_files = {}
        for p in _rasters(base / labels, "label"):
            stem = p.stem[: -len(label_suffix)] if label_suffix and \
                p.stem.endswith(label_suffix) else p.stem
            label_files.setdefault(stem, p)
        pairs, missing = [], []
        for img in _rasters(base / images, "image"):
            if img.stem in label_files:
                pairs.append((img.stem, img, label_files[img.stem]))
            else:
                missing.append(img.name)
        check_no_missing_masks(missing, base / labels)
        return pairs, ("split folders" if by_split else "fraction")

    def _regions(self, pairs, split: str, fraction: float, window):
        """``(samples, regions)`` of ``split``: windows ``(name, image, label, rows, cols)``
        and the non-overlapping ``(image, rows, cols)`` they cover (for statistics)."""
        if self.split_mode == "split folders" or split == "test":
            chosen = [(p, None) for p in pairs]
        elif len(pairs) > 1:  # hold out the last files by name
            n_val = max(1, round(len(pairs) * fraction))
            if n_val >= len(pairs):
                raise UnetlabError(f"geotiff: val_fraction={fraction} holds out all "
                                   f"{len(pairs)} rasters")
            chosen = [(p, None) for p in (pairs[-n_val:] if split == "val" else pairs[:-n_val])]
        else:  # one raster: hold out its bottom rows
            with open_raster(pairs[0][1]) as src:
                cut = src.height - max(1, round(src.height * fraction))
                rows = slice(cut, src.height) if split == "val" else slice(0, cut)
            chosen = [(pairs[0], rows)]
        samples, covered = [], []
        for (name, image, label), rows in chosen:
            with open_raster(image) as src, open_raster(label) as lab:
                if (lab.height, lab.width) != (src.height, src.width):
                    raise UnetlabError(
                        f"{image} / {label}: image is {src.height}x{src.width} but its labels "
                        f"are {lab.height}x{lab.width} (height x width)")
                _check_same_grid(src, lab, image, label)
                if src.count < max(getattr(self, "bands", [1])):
                    raise UnetlabError(f"{image}: has {src.count} band(s); the dataset "
                                       f"selects bands {self.bands}")
                height, width = src.height, src.width
            rows = rows or slice(0, height)
            covered.append((image, rows, slice(0, width)))
            wins = _windows(height, width, window, rows)
            for r, c in wins:
                tag = name if len(wins) == 1 else f"{name}_r{r.start}_c{c.start}"
                samples.append((tag, image, label, r, c))
        return samples, covered

    def _keep_labelled(self, samples):
        if len(samples) < 2:
            return samples
        kept = [s for s in samples if (self._read_labels(s) != self.ignore_index).any()]
        if len(kept) < len(samples):
            log.info("geotiff %s: %d of %d windows have no labelled pixel; skipped",
                     self.split, len(samples) - len(kept), len(samples))
        return kept

    # -- classes and statistics -----------------------------------------------------------
    def _label_values(self, pairs, train_samples) -> tuple[np.ndarray, dict]:
        """``(values in the training area, {label raster: its values})``, in one windowed
        pass over every label raster of ``pairs``, both areas: a bad value in the
        validation rows is found now, not at the first validation. Ignored pixels are
        left out; memory stays flat (blocks of about :data:`LABEL_BLOCK` pixels)."""
        train_rows: dict[Path, list[slice]] = {}
        for _, _, label, rows, _ in train_samples:
            train_rows.setdefault(label, []).append(rows)
        found: set[int] = set()
        by_file: dict[Path, set[int]] = {}
        for _, _, label in pairs:
            with open_raster(label) as lab:
                height, width = lab.height, lab.width
            trained = train_rows.get(label)
            area = (min(r.start for r in trained), max(r.stop for r in trained)) \
                if trained else (0, 0)
            cuts = sorted({0, height, *(min(max(v, 0), height) for v in area)})
            step = max(1, LABEL_BLOCK // max(width, 1))
            values = by_file.setdefault(label, set())
            for lo, hi in zip(cuts, cuts[1:]):
                for rows in row_chunks(lo, hi, step):
                    raw = self._read_labels((None, None, label, rows, slice(0, width)))
                    seen = _unique(raw[raw != self.ignore_index])
                    values |= seen
                    if area[0] <= lo and hi <= area[1]:
                        found |= seen
        return np.array(sorted(found), dtype=np.int64), by_file

    def _check_label_values(self, by_file: dict, declared: bool) -> None:
        """Every label value of every raster must be a class or ignored: one line naming
        the file, the values and the classes."""
        k = self.num_classes
        for label, values in by_file.items():
            bad = sorted(v for v in values if not 0 <= v < k)
            if bad:
                shown = str(bad[:10])[:-1] + (", ...]" if len(bad) > 10 else "]")
                raise UnetlabError(
                    f"geotiff: {label}: label values {shown} outside classes 0..{k - 1} "
                    f"({'declared' if declared else 'found in the training area'}; "
                    f"ignore_values {list(self.ignore_values)} and the raster's no-data are "
                    "ignored); declare class_names (or num_classes), or add the values to "
                    "ignore_values")

    def _set_classes(self, class_names, num_classes, palette, found, label_path) -> None:
        if class_names is not None:
            num_classes = len(class_names)
        elif num_classes is None:
            num_classes = int(found.max()) + 1 if found.size else 1
            log.info("geotiff: label values %s -> %d classes", found.tolist(), num_classes)
        self.class_names = tuple(class_names or (f"class{i}" for i in range(num_classes)))
        if palette is None:
            with open_raster(label_path) as lab:
                try:
                    table = lab.colormap(1)
                except ValueError:  # no colour table
                    table = None
            palette = ([table.get(i, (0, 0, 0))[:3] for i in range(num_classes)]
                       if table else default_palette(num_classes))
        self.palette = np.asarray(palette, dtype=np.uint8)
        if self.palette.shape != (num_classes, 3):
            raise UnetlabError(f"geotiff: palette must have {num_classes} colours of 3 values")

    def _normalization(self, normalize, train_regions):
        if normalize != "auto":
            return normalize
        stats = band_statistics(train_regions, self.bands)
        log.info("geotiff: band statistics over %d training pixels: mean %s, std %s",
                 stats["pixels"], np.round(stats["mean"], 4).tolist(),
                 np.round(stats["std"], 4).tolist())
        return {"name": "band_statistics", "mean": stats["mean"], "std": stats["std"]}

    def _fill_values(self) -> np.ndarray:
        """What no-data pixels read as (model input units): the band means, so that they
        are zero after normalisation (they carry ``ignore_index`` labels anyway)."""
        norm = self.normalize
        if isinstance(norm, dict) and "mean" in norm:
            mean = np.broadcast_to(np.asarray(norm["mean"], np.float32), (self.in_channels,))
            return mean.copy()
        return np.zeros(self.in_channels, dtype=np.float32)

    # -- reading ---------------------------------------------------------------------------
    def _read_labels(self, sample, valid: np.ndarray | None = None) -> np.ndarray:
        _, _, label, rows, cols = sample
        with open_raster(label) as lab:
            raw = lab.read(1, window=window_of(rows, cols))
            ignored = lab.read_masks(1, window=window_of(rows, cols)) == 0
        if np.issubdtype(raw.dtype, np.floating):  # class ids: no silent truncation
            bad = ~ignored & (~np.isfinite(raw) | (raw != np.round(raw)))
            if bad.any():
                raise UnetlabError(f"{label}: label raster has non-integer values (e.g. "
                                   f"{raw[bad].flat[0]}); labels must be class ids")
            raw = np.where(ignored, 0, raw)
        raw = raw.astype(np.int64)
        ignored |= np.isin(raw, self.ignore_values)
        if valid is not None:
            ignored |= ~valid
        raw[ignored] = self.ignore_index
        return raw

    def _load_raw(self, index: int):
        sample = self.samples[index]
        _, image, label, rows, cols = sample
        with open_raster(image) as src:
            data, valid = read_window(src, self.bands, window_of(rows, cols))
        unit = data.astype(np.float32) * np.float32(unit_scale(data.dtype))
        if not valid.all():
            unit[:, ~valid] = self._fill[:, None]
        mask = self._read_labels(sample, valid)
        bad = (mask != self.ignore_index) & ((mask < 0) | (mask >= self.num_classes))
        if bad.any():
            raise UnetlabError(f"{label}: label values {np.unique(mask[bad]).tolist()} "
                               f"outside classes 0..{self.num_classes - 1}")
        return np.ascontiguousarray(unit.transpose(1, 2, 0)), mask, f"{image} / {label}"
