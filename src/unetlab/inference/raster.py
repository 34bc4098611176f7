"""Streaming prediction of GeoTIFF / GDAL rasters: ``<stem>_labels.tif`` with the input's
CRS, transform and size, and optionally ``<stem>_probs.tif``.

Reads and writes are windowed: the model sees one band of rows at a time (as for plain
TIFFs, :mod:`unetlab.inference.predictor`), finished rows are written in whole tile rows
of the output, and GDAL's block cache is capped at :data:`~unetlab.georaster.GDAL_CACHE_MB`,
so peak memory grows with the scene's width only, not with its area.

The label raster is uint8 (uint16 over 255 classes), tiled 256 x 256, deflate-compressed,
with a colour table, class names as ``CLASS_<i>`` tags, and no-data 255 (65535) wherever
the input is no-data; the probability raster is float32, one band per class named after
it, no-data NaN.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import UnetlabError
from ..georaster import (
    GDAL_CACHE_MB,
    GDAL_SUFFIXES,
    band_names,
    bands_for_model,
    is_georeferenced_tiff,
    open_raster,
    read_window,
    require_rasterio,
    valid_mask,
    window_of,
)
from ..imageio import TIFF_SUFFIXES
from ..limits import check_pixels
from .tiling import iter_bands, plan_tiles

log = logging.getLogger(__name__)

BLOCK = 256


def is_raster(path, geo: dict | None = None) -> bool:
    """Whether ``path`` goes through rasterio: a GDAL-only format, or a TIFF that is
    georeferenced or is given to a model trained on rasters (``geo``: the card's
    ``extensions["geo"]``)."""
    suffix = Path(path).suffix.lower()
    if suffix in GDAL_SUFFIXES:
        return True
    if suffix in TIFF_SUFFIXES:
        if geo is not None:
            return True
        if not is_georeferenced_tiff(path):
            return False
        try:
            import rasterio  # noqa: F401
        except ImportError:  # still predictable as a plain TIFF, without georeferencing
            log.warning('%s: a GeoTIFF; its labels keep no CRS without rasterio '
                        '(pip install "unetlab[geo]")', path)
            return False
        return True
    return False


class _RasterSource:
    """A band-first ``(C, H, W)`` view of raster bands, read window by window; no-data
    pixels read as ``fill`` (the training band means: zero after normalisation).
    ``nodata``: a declared no-data value that replaces the bands' own (``--nodata``)."""

    def __init__(self, src, bands: list[int], fill: np.ndarray | None,
                 nodata: float | None = None):
        self.src, self.bands, self.fill, self.nodata = src, bands, fill, nodata
        self.shape = (len(bands), src.height, src.width)
        self.ndim = 3
        if nodata is not None:  # GDAL masks still count where they are not a no-data value
            from rasterio.enums import MaskFlags

            self.masked = [b for b in bands if not {MaskFlags.nodata, MaskFlags.all_valid}
                           & set(src.mask_flag_enums[b - 1])]

    def read(self, window) -> tuple[np.ndarray, np.ndarray]:
        """``(data, valid)`` as :func:`~unetlab.georaster.read_window` reads them."""
        if self.nodata is None:
            return read_window(self.src, self.bands, window)
        data, _ = read_window(self.src, self.bands, window)
        valid = np.all(~_equals(data, self.nodata), axis=0)
        if np.issubdtype(data.dtype, np.floating):
            valid &= np.all(np.isfinite(data), axis=0)
        if self.masked:
            valid &= np.all(self.src.read_masks(self.masked, window=window) != 0, axis=0)
        return data, valid

    def valid(self, rows: slice) -> np.ndarray:
        """No-data of whole rows, for the outputs (NaN/inf pixels are no-data too)."""
        window = window_of(rows, slice(0, self.src.width))
        if self.nodata is None and not np.issubdtype(np.dtype(self.src.dtypes[
                self.bands[0] - 1]), np.floating):
            return valid_mask(self.src, self.bands, window)  # the masks only: no pixel read
        return self.read(window)[1]

    def __getitem__(self, key):
        _, rows, cols = key
        data, valid = self.read(window_of(rows, cols))
        data = data.astype(np.float32)
        if self.fill is not None and not valid.all():
            data[:, ~valid] = self.fill[:, None]
        elif not valid.all():
            data[:, ~valid] = 0.0
        return data


class _RowWriter:
    """Collects finished rows and writes them in whole block rows (compressed tiles are
    written once, never re-read or re-compressed)."""

    def __init__(self, dst, width: int, bands: int, dtype):
        self.dst, self.width, self.bands, self.dtype = dst, width, bands, dtype
        self.buffer = np.zeros((bands, 0, width), dtype=dtype)
        self.row = 0  # first row of the buffer

    def add(self, values: np.ndarray, final: bool = False) -> None:
        self.buffer = np.concatenate([self.buffer, values], axis=1)
        n = self.buffer.shape[1] if final else self.buffer.shape[1] // BLOCK * BLOCK
        if n:
            rows = slice(self.row, self.row + n)
            self.dst.write(self.buffer[:, :n], window=window_of(rows, slice(0, self.width)))
            self.buffer = self.buffer[:, n:].copy()
            self.row += n


def _equals(data: np.ndarray, value: float) -> np.ndarray:
    return np.isnan(data) if np.isnan(value) else data == value


def _units(dtype: np.dtype, scaling: str) -> str:
    from ..preprocess import dtype_scale

    scale = dtype_scale(dtype, scaling)
    return "read as stored" if scale == 1.0 else f"read as value / {round(1.0 / scale):d}"


def check_dtype(path, dtype, trained, scaling: str = "dtype", *, any_dtype: bool = False,
                flag: str = "--any-dtype") -> None:
    """Bands of a dtype that maps to other input units than the training rasters'
    (``trained``, the card's ``extensions["geo"]["dtype"]``) give wrong labels without a
    word (float32 reflectance, read as stored, given to a model that learned uint16 counts
    divided by 65535): a one-line error, or with ``any_dtype`` a warning. The same units
    (float32 and float64, or any dtypes under ``scaling="none"``) pass."""
    from ..preprocess import dtype_scale

    dtype = np.dtype(dtype)
    if not trained or trained == dtype.name:
        return
    try:
        theirs = np.dtype(trained)
        same = dtype_scale(theirs, scaling) == dtype_scale(dtype, scaling)
    except (TypeError, ValueError, UnetlabError):  # not a dtype numpy knows: say so only
        log.warning("%s: bands are %s, the model was trained on %s rasters", path,
                    dtype.name, trained)
        return
    if same:
        return
    what = (f"{path}: bands are {dtype.name} ({_units(dtype, scaling)}) but the model was "
            f"trained on {theirs.name} rasters ({_units(theirs, scaling)}) and expects "
            f"{theirs.name} bands")
    if any_dtype:
        log.warning("%s; going on anyway (%s): the labels may be wrong", what, flag)
        return
    raise UnetlabError(f"{what}; convert the raster to {theirs.name} in the training's "
                       f"units, or pass {flag} to go on anyway")


def _input_nodata(src, bands: list[int], geo: dict | None, nodata, path) -> float | None:
    """The declared no-data value (``--nodata``), checked against the dtype; without it,
    a warning when the raster has no no-data at all but the training rasters had one (it
    is not applied unasked: the same value may be valid data here)."""
    dtype = np.dtype(src.dtypes[bands[0] - 1])
    if nodata is not None:
        nodata = float(nodata)
        if dtype.kind in "iu" and (not nodata.is_integer() or not
                                   np.iinfo(dtype).min <= nodata <= np.iinfo(dtype).max):
            raise UnetlabError(f"{path}: --nodata {nodata:g} is not a {dtype.name} value")
        return nodata
    try:
        trained = float((geo or {}).get("nodata"))
    except (TypeError, ValueError):  # none recorded
        return None
    if np.isnan(trained) and dtype.kind == "f":
        return None  # NaN pixels are no-data anyway
    from rasterio.enums import MaskFlags

    if all(set(src.mask_flag_enums[b - 1]) == {MaskFlags.all_valid} for b in bands):
        log.warning("%s: has no no-data value, the training rasters had no-data %s: pass "
                    "--nodata %s if it marks no-data here too", path, f"{trained:g}",
                    f"{trained:g}")
    return None


def _fill_values(preprocessing, dtype) -> np.ndarray | None:
    """Band means in the raster's units (no-data reads as the training mean)."""
    from ..preprocess import dtype_scale

    if preprocessing.normalize is None:
        return None
    mean = np.asarray(preprocessing.normalize["mean"], np.float32)
    return (mean / np.float32(dtype_scale(dtype, preprocessing.scaling))).astype(np.float32)


def _label_profile(src, num_classes: int) -> dict:
    dtype = "uint8" if num_classes <= 255 else "uint16"
    tiled = src.width >= BLOCK and src.height >= BLOCK
    profile = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype=dtype,
                   crs=src.crs, compress="deflate", nodata=np.iinfo(dtype).max,
                   BIGTIFF="IF_SAFER")
    gcps, gcp_crs = src.gcps
    if not src.transform.is_identity:
        profile["transform"] = src.transform
    elif gcps:  # georeferenced by ground control points (e.g. Sentinel-1 GRD): keep them
        profile.update(gcps=gcps, crs=gcp_crs or src.crs)
    if src.rpcs:  # rational polynomial coefficients (satellite L1 products)
        profile["rpcs"] = src.rpcs
    if tiled:
        profile.update(tiled=True, blockxsize=BLOCK, blockysize=BLOCK)
    return profile


def _check_new(paths, overwrite: bool, source: Path) -> None:
    for p in paths:
        if p.resolve() == source.resolve():
            raise UnetlabError(f"{p}: the output would replace the input raster")
        if p.exists() and not overwrite:
            raise UnetlabError(f"{p} exists; pass --overwrite to replace it")


def predict_raster(model, path, out_dir, *, tile_size, overlap: float = 0.25,
                   blend: str = "gaussian", tta=False, batch_size: int = 4,
                   probabilities: bool = False, palette=None, preprocessing=None,
                   margin: int = 0, device=None, geo: dict | None = None, class_names=None,
                   overwrite: bool = False, progress: bool = False,
                   stem: str | Path | None = None, nodata: float | None = None,
                   any_dtype: bool = False) -> dict:
    """Predict one raster into ``out_dir`` as ``<stem>_labels.tif`` (``stem`` relative to
    ``out_dir``; default the input's name without its extension); returns ``{"labels",
    "overlay" (None), "probabilities", "shape", "num_classes"}`` like :func:`predict_file`.

    ``preprocessing``: the card's :class:`~unetlab.preprocess.Preprocessing` (default:
    dtype scaling only). ``geo``: the card's ``extensions["geo"]`` (``bands`` selected at
    training); without it every band is read and their number must equal the model's
    input channels. ``nodata``: the input's no-data value, in place of the file's tag
    (``--nodata``). ``any_dtype``: predict bands whose dtype maps to other input units
    than the training rasters' with a warning, not an error (``--any-dtype``).
    """
    from ..preprocess import Preprocessing

    rasterio = require_rasterio()
    path, out_dir = Path(path), Path(out_dir)
    in_channels = int(getattr(model, "in_channels", 1))
    if int(getattr(model, "spatial_dims", 2)) != 2:
        raise UnetlabError(f"{path}: a raster needs a 2-D model")
    base = out_dir / (stem if stem is not None else path.stem)
    label_path = base.with_name(f"{base.name}_labels.tif")
    prob_path = base.with_name(f"{base.name}_probs.tif")
    _check_new([label_path] + ([prob_path] if probabilities else []), overwrite, path)
    label_path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), open_raster(path) as src:
        # streamed, but the outputs grow with the raster: the header's size is checked
        # like every other image's (a 500-byte VRT can declare 10^10 pixels)
        check_pixels(path, (src.height, src.width), src.height * src.width)
        bands = bands_for_model(src, geo, path)
        if len(bands) != in_channels:
            raise UnetlabError(f"{path}: {len(bands)} band(s) selected "
                               f"({', '.join(band_names(src, bands))}); the model expects "
                               f"{in_channels}")
        dtype = np.dtype(src.dtypes[bands[0] - 1])
        if preprocessing is None:
            preprocessing = Preprocessing(channels=in_channels)
        check_dtype(path, dtype, (geo or {}).get("dtype"), preprocessing.scaling,
                    any_dtype=any_dtype)
        nodata = _input_nodata(src, bands, geo, nodata, path)
        prep = preprocessing.band_function(dtype)
        source = _RasterSource(src, bands, _fill_values(preprocessing, dtype), nodata)
        plans = plan_tiles((src.height, src.width), tile_size, overlap, model=model,
                           margin=margin)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=int(np.prod([len(p.starts) for p in plans])), desc=path.name,
                       unit="tile", leave=False)
        out = {"labels": label_path, "overlay": None, "probabilities": None,
               "shape": [src.height, src.width], "num_classes": None}
        tmp = [p.with_name(f".{p.name}.tmp{os.getpid()}") for p in (label_path, prob_path)]
        try:
            _stream(model, src, source, plans, prep, tmp, out, palette, class_names,
                    probabilities, dict(blend=blend, tta=tta, batch_size=batch_size,
                                        margin=margin, device=device,
                                        progress=bar.update if bar is not None else None))
            os.replace(tmp[0], label_path)
            if probabilities:
                os.replace(tmp[1], prob_path)
                out["probabilities"] = prob_path
        finally:
            for t in tmp:
                t.unlink(missing_ok=True)
            if bar is not None:
                bar.close()
    return out


def _stream(model, src, source, plans, prep, tmp, out, palette, class_names,
            probabilities, options) -> None:
    label_dst = prob_dst = labels = probs = None
    try:
        for rows, values in iter_bands(model, source, plans, output="probabilities",
                                       preprocess=prep, **options):
            if label_dst is None:
                k = out["num_classes"] = int(values.shape[0])
                profile = _label_profile(src, k)
                label_dst = open_raster(tmp[0], "w", **profile)
                _describe_labels(label_dst, k, palette, class_names)
                labels = _RowWriter(label_dst, src.width, 1, profile["dtype"])
                if probabilities:
                    prob_dst = open_raster(tmp[1], "w", **{
                        **profile, "count": k, "dtype": "float32", "nodata": float("nan"),
                        "predictor": 3})
                    for i in range(k):
                        prob_dst.set_band_description(i + 1, _class_name(class_names, i))
                    probs = _RowWriter(prob_dst, src.width, k, np.float32)
            valid = source.valid(rows)
            lab = values.argmax(0).numpy().astype(labels.dtype)
            lab[~valid] = label_dst.nodata
            final = rows.stop == src.height
            labels.add(lab[None], final)
            if probs is not None:
                p = values.numpy().astype(np.float32, copy=False)
                p[:, ~valid] = np.nan
                probs.add(p, final)
    finally:
        for dst in (label_dst, prob_dst):
            if dst is not None:
                dst.close()


def _class_name(class_names, i: int) -> str:
    return class_names[i] if class_names is not None and i < len(class_names) else f"class{i}"


def _describe_labels(dst, k: int, palette, class_names) -> None:
    from .palette import default_palette

    pal = np.asarray(palette if palette is not None else default_palette(k), dtype=np.uint8)
    if dst.dtypes[0] == "uint8":
        dst.write_colormap(1, {i: (*map(int, pal[i]), 255) for i in range(min(k, len(pal)))})
    dst.set_band_description(1, "class")
    dst.update_tags(**{f"CLASS_{i}": _class_name(class_names, i) for i in range(k)})
