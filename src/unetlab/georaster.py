"""GeoTIFF and other GDAL rasters through rasterio: opening, band selection, windowed
reads with the no-data mask, and per-band statistics.

Shared by the ``geotiff`` dataset (:mod:`unetlab.data.geotiff`) and raster prediction
(:mod:`unetlab.inference.raster`). rasterio is the optional extra ``unetlab[geo]``; when
it is missing every entry point raises one :class:`UnetlabError` naming the extra.

Conventions: bands are numbered from 1 as in GDAL and rasterio; arrays are band-first
``(C, H, W)`` as rasterio reads them, whatever the file's interleaving (a TIFF written
pixel-interleaved ``(H, W, C)`` and one written band-sequential ``(C, H, W)`` read the
same). A pixel is *no-data* when any selected band is masked by GDAL (the band's no-data
value, an internal mask or alpha band) or is not finite.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np

from .errors import UnetlabError

log = logging.getLogger(__name__)

#: suffixes read only through GDAL (TIFFs go through GDAL when georeferenced)
GDAL_SUFFIXES = (".vrt", ".jp2", ".img", ".nc", ".hdf", ".hdf5", ".h5", ".ers", ".dem")
RASTER_SUFFIXES = (".tif", ".tiff", *GDAL_SUFFIXES)
#: GeoTIFF tags: ModelPixelScale, ModelTiepoint, ModelTransformation, GeoKeyDirectory
GEOTIFF_TAGS = (33550, 33922, 34264, 34735)
LABEL_NODATA = 255
#: GDAL's block cache during streaming prediction, MB (keeps memory flat in scene size)
GDAL_CACHE_MB = 64


def require_rasterio():
    """The ``rasterio`` module, or a one-line error naming the extra that installs it."""
    from ._extras import require

    return require("rasterio", "geo", "GeoTIFF / GDAL rasters need rasterio")


def open_raster(path, mode: str = "r", **profile):
    """``rasterio.open`` with a one-line error naming the file."""
    rasterio = require_rasterio()
    path = Path(path)
    if mode == "r" and not path.is_file():
        raise UnetlabError(f"{path}: no such raster file")
    try:
        with warnings.catch_warnings():  # a plain TIFF read pixel for pixel: not a problem
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            return rasterio.open(path, mode, **profile)
    except rasterio.errors.RasterioError as exc:
        raise UnetlabError(f"{path}: unreadable raster ({' '.join(str(exc).split())})") \
            from None


def is_georeferenced_tiff(path) -> bool:
    """Whether a TIFF carries GeoTIFF tags (checked with tifffile: no rasterio needed)."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            tags = tif.pages[0].tags
            return any(code in tags for code in GEOTIFF_TAGS)
    except Exception:  # not a TIFF tifffile can parse: let the regular reader report it
        return False


def resolve_bands(src, bands, path) -> list[int]:
    """1-based band indexes from ``bands``: None (all), ints (1-based) or band
    descriptions (e.g. ``["red", "nir"]``, case-insensitive)."""
    if bands is None:
        return list(range(1, src.count + 1))
    if isinstance(bands, int | str):
        bands = [bands]
    names = [(d or "").lower() for d in src.descriptions]
    out = []
    for b in bands:
        if isinstance(b, str) and not b.isdigit():
            if b.lower() not in names:
                shown = ", ".join(n or "''" for n in names)
                raise UnetlabError(f"{path}: no band named {b!r}; its bands: {shown}")
            out.append(names.index(b.lower()) + 1)
            continue
        i = int(b)
        if not 1 <= i <= src.count:
            raise UnetlabError(f"{path}: band {i} does not exist (bands are numbered 1.."
                               f"{src.count})")
        out.append(i)
    if not out:
        raise UnetlabError(f"{path}: bands={bands!r} selects no band")
    return out


def bands_for_model(src, geo: dict | None, path) -> list[int]:
    """The 1-based bands of ``src`` to feed a model whose card's ``extensions["geo"]`` is
    ``geo``: by the names it was trained on (``band_names``) when both it and ``src``
    have band descriptions, so a file with the same bands in another order is read
    right (by position it gave wrong labels without a word); else by position (None:
    every band), with a warning when the names cannot be checked."""
    geo = geo or {}
    positions, names = geo.get("bands"), [str(n) for n in geo.get("band_names") or []]
    described = [(d or "").strip().lower() for d in src.descriptions]
    wanted = [n.strip().lower() for n in names]
    real = bool(names) and all(n and not re.fullmatch(r"band\d+", n) for n in names) \
        and len(set(wanted)) == len(wanted)  # repeated names say nothing about order
    unique = all(described.count(w) <= 1 for w in wanted)
    if real and unique and any(described) and \
            (all(described) or all(w in described for w in wanted)):
        missing = [n for n in names if n.strip().lower() not in described]
        if missing:
            shown = ", ".join(d or "''" for d in described)
            raise UnetlabError(f"{path}: no band named {missing[0]!r} (the model was trained "
                               f"on bands {', '.join(names)}); its bands: {shown}")
        picked = [described.index(n.strip().lower()) + 1 for n in names]
        if positions is not None and picked != [int(b) for b in positions]:
            log.warning("%s: bands %s are at positions %s here (%s in training): read by "
                        "name", path, ", ".join(names), picked, list(positions))
        return picked
    if real:
        log.warning("%s: its bands are not named so that they can be matched (no or repeated "
                    "descriptions), so positions %s are read as the model's %s unchecked",
                    path, positions, ", ".join(names))
    return resolve_bands(src, positions, path)


def band_names(src, bands: list[int]) -> list[str]:
    """The selected bands' descriptions, ``band<i>`` where a band has none."""
    return [src.descriptions[b - 1] or f"band{b}" for b in bands]


def window_of(rows: slice, cols: slice):
    from rasterio.windows import Window

    return Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)


def valid_mask(src, bands: list[int], window=None, data: np.ndarray | None = None) -> np.ndarray:
    """``(h, w)`` bool: True where every selected band holds data (see module doc)."""
    masks = src.read_masks(bands, window=window)
    valid = np.all(masks != 0, axis=0)
    if data is not None and np.issubdtype(data.dtype, np.floating):
        valid &= np.all(np.isfinite(data), axis=0)
    return valid


def read_window(src, bands: list[int], window=None) -> tuple[np.ndarray, np.ndarray]:
    """``(data (C, h, w) in the file's dtype, valid (h, w) bool)`` of one window; a file
    whose pixels cannot be decoded (truncated, damaged) is a one-line error naming it."""
    rasterio = require_rasterio()
    try:
        data = src.read(bands, window=window)
        return data, valid_mask(src, bands, window, data)
    except rasterio.errors.RasterioIOError as exc:
        cause = exc.__cause__ or exc
        raise UnetlabError(f"{src.name}: unreadable or truncated raster "
                           f"({' '.join(str(cause).split())})") from None


def unit_scale(dtype) -> float:
    """The factor that maps a dtype to the model's input units: integers are divided by
    their maximum (as :func:`unetlab.data.base.image_to_unit` does), floats kept."""
    from .preprocess import dtype_scale

    return dtype_scale(dtype)


def row_chunks(start: int, stop: int, step: int):
    for lo in range(start, stop, step):
        yield slice(lo, min(lo + step, stop))


def band_statistics(regions, bands: list[int], *, chunk_rows: int = 512) -> dict:
    """Per-band mean and standard deviation of valid pixels, in model input units
    (integers divided by their dtype's maximum), over ``regions``: an iterable of
    ``(path, rows, cols)`` (slices; None for the whole raster). Returns
    ``{"mean": [...], "std": [...], "pixels": n}``; no-data pixels are left out."""
    total = np.zeros(len(bands))
    total_sq = np.zeros(len(bands))
    count = 0
    for path, rows, cols in regions:
        with open_raster(path) as src:
            rows = rows or slice(0, src.height)
            cols = cols or slice(0, src.width)
            scale = unit_scale(src.dtypes[bands[0] - 1])
            for chunk in row_chunks(rows.start, rows.stop, chunk_rows):
                data, valid = read_window(src, bands, window_of(chunk, cols))
                values = data[:, valid].astype(np.float64) * scale
                total += values.sum(1)
                total_sq += np.square(values).sum(1)
                count += values.shape[1]
    if count == 0:
        raise UnetlabError("no valid (non-no-data) pixels to compute band statistics from")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    std = np.where(std > 1e-12, std, 1.0)  # a constant band: leave its scale alone
    return {"mean": mean.astype(np.float32).tolist(), "std": std.astype(np.float32).tolist(),
            "pixels": int(count)}
