"""Streaming prediction of image files: any size, memory flat in the image size.

A TIFF is memory-mapped and re-opened for each band of tiles, so only one band of input
is ever resident; labels (and optional probabilities) go to TIFF memory maps written
band by band. Smaller images (PNG, JPEG) take the same path from an in-memory array.

Layouts: ``(H, W)`` and ``(H, W, C)`` images for a 2-D model, ``(Z, H, W)`` stacks
predicted slice by slice by a one-channel 2-D model (ISBI's TIFF volumes), and
``(D, H, W)`` / ``(D, H, W, C)`` volumes for a 3-D model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import UnetlabError
from ..imageio import (
    TIFF_SUFFIXES,
    check_finite,
    read_image,
    read_tiff_memmap,
    tiff_axes,
    write_image,
)
from ..models.geometry import geometry_of
from ..preprocess import Preprocessing
from .palette import overlay as make_overlay
from .tiling import as_channels_first, class_argmax, iter_bands, plan_tiles

log = logging.getLogger(__name__)

MAX_OVERLAY_PIXELS = 4096 * 4096


class _TiffSource:
    """A channels-first view of a TIFF that maps the file only while a box is read, so
    pages read for one band leave the resident set once it is copied."""

    def __init__(self, path, lead_index: tuple, channel_axis: int | None):
        self.path, self.lead, self.channel_axis = path, lead_index, channel_axis
        arr = read_tiff_memmap(path)
        self._array = None if isinstance(arr, np.memmap) else arr  # not mappable: in RAM
        view = self._view(arr)
        self.shape, self.dtype = view.shape, view.dtype
        self.ndim = len(self.shape)
        del arr, view

    def _view(self, arr):
        arr = arr[self.lead]  # the channel axis counts the leading axes indexed away
        return np.moveaxis(arr, self.channel_axis - len(self.lead), 0) \
            if self.channel_axis is not None else arr[None]

    def __getitem__(self, key):
        arr = self._array if self._array is not None else read_tiff_memmap(self.path)
        band = np.array(self._view(arr)[key])
        origin = [k.start if isinstance(k, slice) else 0 for k in key]
        return check_finite(band, self.path, origin)  # NaN pixels would give NaN logits


def _layout(shape, in_channels: int, spatial_dims: int, path,
            axes: str | None = None) -> tuple[tuple, int | None]:
    """``(leading shape iterated over, channel axis or None)`` of a file's array.

    ``axes``: the TIFF's axes as tifffile reports them (``S``: samples, i.e. bands), which
    tells a band-first ``(4, H, W)`` image from a stack of four slices."""
    nd = len(shape)
    if nd == spatial_dims:
        return (), None
    if axes is not None and len(axes) == nd and axes.count("S") == 1:
        s = axes.index("S")
        if nd == spatial_dims + 1 and s in (0, nd - 1):
            return (), s
        if nd == spatial_dims + 2 and s in (1, nd - 1):
            return shape[:1], s
    if nd == spatial_dims + 1 and in_channels > 4 and shape[0] == shape[-1] == in_channels:
        raise UnetlabError(f"{path}: shape {tuple(shape)} could hold its {in_channels} "
                           "bands first or last; write it with a samples axis, e.g. "
                           "tifffile.imwrite(path, hwc, photometric='minisblack', "
                           "planarconfig='contig')")
    if nd == spatial_dims + 1 and in_channels > 1 and shape[0] == in_channels \
            and shape[-1] != in_channels:
        return (), 0  # channels first (band-sequential)
    if nd == spatial_dims + 1 and (shape[-1] <= 4 or shape[-1] == in_channels):
        # channels last (also more than 4 bands: what tifffile.imwrite(path, (H, W, 5))
        # writes, read as the model's bands); the count is checked by the caller
        return (), nd - 1
    if nd == spatial_dims + 1 and in_channels == 1:
        return shape[:1], None  # a stack of 2-D slices (or of volumes)
    if nd == spatial_dims + 2 and (shape[-1] <= 4 or shape[-1] == in_channels):
        return shape[:1], nd - 1  # a stack of multi-channel images
    raise UnetlabError(f"{path}: cannot read an image of shape {tuple(shape)} for a "
                       f"{spatial_dims}-D model with {in_channels} channel(s)")


class _TiffWriter:
    """A TIFF created at full size, then written band by band through a memory map that
    is opened only for each write (dirty pages leave the resident set)."""

    def __init__(self, path: Path, shape, dtype):
        import tifffile

        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        out = tifffile.memmap(str(path), shape=tuple(shape), dtype=dtype,
                              photometric="minisblack")
        out.flush()
        del out

    def write(self, key, values: np.ndarray) -> None:
        import tifffile

        out = tifffile.memmap(str(self.path), mode="r+")
        out[key] = values
        out.flush()
        del out


def _image_mode(model) -> str | None:
    """The Pillow mode training converted the images to (``image_mode`` of a folder
    dataset, in the card's ``extensions["folder"]``), else None."""
    card = getattr(model, "unetlab_card", None) or {}
    mode = ((card.get("extensions") or {}).get("folder") or {}).get("image_mode")
    return str(mode) if mode in ("L", "RGB", "RGBA") else None


class _Input:
    """One input file opened for prediction: its layout, channels and label format."""

    def __init__(self, model, path, label_format: str | None = None):
        path = self.path = Path(path)
        in_channels = int(getattr(model, "in_channels", 1))
        spatial_dims = self.spatial_dims = geometry_of(model).spatial_dims
        self.is_tiff = path.suffix.lower() in TIFF_SUFFIXES
        self.array = axes = None
        self.mode = _image_mode(model)
        if self.is_tiff:
            probe = read_tiff_memmap(path)
            shape, self.dtype = probe.shape, probe.dtype
            del probe
            axes = tiff_axes(path)
        else:  # converted as training converted them (a folder's image_mode)
            self.array = read_image(path, mode=self.mode)
            shape, self.dtype = self.array.shape, self.array.dtype
        self.lead_shape, self.channel_axis = _layout(shape, in_channels, spatial_dims, path,
                                                     axes)
        lead_shape, channel_axis = self.lead_shape, self.channel_axis
        n_channels = shape[channel_axis] if channel_axis is not None else 1
        self.take = None
        if n_channels == in_channels + 1 and in_channels in (1, 3):  # drop alpha
            self.take = slice(0, in_channels)
        elif n_channels != in_channels:
            raise UnetlabError(f"{path}: image has {n_channels} channel(s), the model expects "
                               f"{in_channels}")
        self.spatial = tuple(s for i, s in enumerate(shape[len(lead_shape):], len(lead_shape))
                             if i != channel_axis)
        label_format = label_format or ("tif" if self.is_tiff or lead_shape or spatial_dims > 2
                                        else "png")
        if label_format not in ("png", "tif"):
            raise ValueError(f"label_format={label_format!r} is not valid; choose 'png' or "
                             "'tif'")
        if label_format == "png" and (lead_shape or spatial_dims > 2):
            raise ValueError(f"{path}: a stack or volume needs label_format='tif'")
        self.label_format = label_format

    def leads(self):
        """The indices of the slices (one ``()`` for a single image or volume)."""
        return np.ndindex(*self.lead_shape) if self.lead_shape else [()]

    def source(self, lead):
        """The channels-first image of one slice, read lazily from a TIFF."""
        if self.is_tiff:
            source = _TiffSource(self.path, lead, self.channel_axis)
        else:
            array = self.array
            source = as_channels_first(
                np.moveaxis(array, self.channel_axis, 0) if self.channel_axis is not None
                else array, self.spatial_dims)
        return _ChannelSlice(source, self.take) if self.take is not None else source

    def outputs(self, stem: Path, probabilities: bool) -> dict:
        """``{"labels", "overlay", "probabilities"}`` paths for the output ``stem``."""
        overlay = not self.lead_shape and self.spatial_dims == 2 and \
            int(np.prod(self.spatial)) <= MAX_OVERLAY_PIXELS
        return {"labels": stem.with_name(f"{stem.name}_labels.{self.label_format}"),
                "overlay": stem.with_name(f"{stem.name}_overlay.png") if overlay else None,
                "probabilities": stem.with_name(f"{stem.name}_probs.tif")
                if probabilities else None}


def _write_overlay(inp: _Input, labels, palette, path: Path) -> Path:
    image = np.asarray(read_image(inp.path, mode=None if inp.is_tiff else inp.mode))
    if image.ndim == 3 and image.shape[:2] != tuple(labels.shape[-2:]):
        image = np.moveaxis(image, 0, -1)  # a band-first TIFF read as stored: bands last
    if image.ndim == 3 and inp.take is not None:
        image = image[..., inp.take]
    return write_image(path, make_overlay(image, labels, palette))


def predict_file(model, path, out_dir, *, tile_size, overlap: float = 0.25,
                 blend: str = "gaussian", tta=False, batch_size: int = 4,
                 probabilities: bool = False, palette=None, normalize=None, margin: int = 0,
                 device=None, label_format: str | None = None, write_overlay: bool = True,
                 progress: bool = False, preprocessing=None,
                 stem: str | Path | None = None, geo: dict | None = None, class_names=None,
                 overwrite: bool = False, nodata: float | None = None,
                 any_dtype: bool = False) -> dict:
    """Predict one image file and write ``<stem>_labels.{png,tif}``, ``<stem>_overlay.png``
    (2-D images up to 16 Mpx) and, with ``probabilities=True``, ``<stem>_probs.tif``
    (float32, classes first). Returns ``{"labels", "overlay", "probabilities"}`` paths
    (None where not written), ``"shape"`` and ``"num_classes"``.

    ``stem``: the outputs' name without the suffixes, relative to ``out_dir`` (default:
    the input's file name without its extension; :mod:`.outputs` plans unique ones).
    ``model``: an ``nn.Module`` in eval mode or an :class:`InferenceModel`; it needs
    ``in_channels`` and ``spatial_dims`` attributes (every unetlab model has them).
    ``preprocessing``: a :class:`unetlab.preprocess.Preprocessing`; default: the model's
    card (``model.unetlab_card``, as :func:`unetlab.load_model` and
    ``optimize_for_inference`` leave it), else dtype scaling and ``normalize``.
    Existing outputs are refused unless ``overwrite`` (a user's own ``X_labels.png``).

    GeoTIFFs and other GDAL rasters (and any TIFF given to a model whose card has a
    ``geo`` extension, passed as ``geo``) go to :func:`unetlab.inference.raster.
    predict_raster`: a georeferenced label raster, windowed; ``class_names`` name its
    classes, ``overwrite`` lets it replace existing outputs, ``nodata`` declares the
    input's no-data value and ``any_dtype`` lets bands of other units than the training
    rasters' through with a warning (rasters only: ``nodata`` is ignored, with a warning,
    for other images).
    """
    path, out_dir = Path(path), Path(out_dir)
    from .raster import is_raster, predict_raster

    card = getattr(model, "unetlab_card", None)
    if preprocessing is None and normalize is None and card and "architecture" in card:
        # the images are prepared as the card says (a model from load_model, or its
        # optimize_for_inference copy): without it a normalised model saw raw units
        preprocessing = Preprocessing.from_card(card)

    if is_raster(path, geo):
        return predict_raster(
            model, path, out_dir, tile_size=tile_size, overlap=overlap, blend=blend, tta=tta,
            batch_size=batch_size, probabilities=probabilities, palette=palette,
            preprocessing=preprocessing or Preprocessing(
                channels=int(getattr(model, "in_channels", 1)), normalize=normalize),
            margin=margin, device=device, geo=geo, class_names=class_names,
            overwrite=overwrite, progress=progress, stem=stem, nodata=nodata,
            any_dtype=any_dtype)
    if nodata is not None:
        log.warning("%s: not a raster: --nodata applies to rasters only", path)
    inp = _Input(model, path, label_format)
    lead_shape, spatial = inp.lead_shape, inp.spatial
    prep = _band_preprocess(model, inp, preprocessing, normalize)
    plans = plan_tiles(spatial, tile_size, overlap, model=model, margin=margin)
    n_tiles = int(np.prod([len(p.starts) for p in plans])) * int(np.prod(lead_shape or (1,)))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_tiles, desc=path.name, unit="tile", leave=False)
    out = {"labels": None, "overlay": None, "probabilities": None, "shape": list(spatial)}
    paths = inp.outputs(out_dir / (stem if stem is not None else path.stem), probabilities)
    if not overwrite:
        there = [p for k, p in paths.items() if p is not None and Path(p).exists()
                 and (k != "overlay" or write_overlay)]
        if there:
            raise UnetlabError(f"{there[0]} exists; pass overwrite=True to replace it")
    label_path = paths["labels"]
    labels_mem = label_writer = prob_writer = None
    label_dtype = np.uint8
    try:
        for lead in inp.leads():
            bands = iter_bands(model, inp.source(lead), plans, blend=blend, tta=tta,
                               batch_size=batch_size,
                               output="probabilities", margin=margin, device=device,
                               progress=bar.update if bar is not None else None,
                               preprocess=prep)
            for rows, values in bands:
                k = values.shape[0]
                if out.get("num_classes") is None:
                    out["num_classes"] = k
                    label_dtype = _label_dtype(k)
                    if inp.label_format == "tif":
                        label_writer = _TiffWriter(label_path, (*lead_shape, *spatial),
                                                   label_dtype)
                    else:
                        labels_mem = np.zeros(spatial, dtype=label_dtype)
                    if probabilities:
                        prob_writer = _TiffWriter(paths["probabilities"],
                                                  (*lead_shape, k, *spatial), np.float32)
                lab = class_argmax(values).astype(label_dtype, copy=False)
                if label_writer is not None:
                    label_writer.write((*lead, rows), lab)
                else:
                    labels_mem[rows] = lab
                if prob_writer is not None:
                    prob_writer.write((*lead, slice(None), rows), values.numpy())
    finally:
        if bar is not None:
            bar.close()
    from .palette import default_palette

    pal = palette if palette is not None else default_palette(out.get("num_classes") or 1)
    if labels_mem is not None:
        write_image(label_path, labels_mem, palette=pal)
    out["labels"] = label_path
    if prob_writer is not None:
        out["probabilities"] = prob_writer.path
    if write_overlay and paths["overlay"] is not None:
        import tifffile

        labels = labels_mem if labels_mem is not None else tifffile.imread(str(label_path))
        out["overlay"] = _write_overlay(inp, labels, pal, paths["overlay"])
    elif write_overlay:
        log.info("%s: no overlay for a stack, a volume or an image over %d pixels", path,
                 MAX_OVERLAY_PIXELS)
    return out


def _band_preprocess(model, inp: _Input, preprocessing=None, normalize=None):
    """The in-place map of each input band: the card's ``preprocessing`` if given, else
    dtype scaling and ``normalize``."""
    if preprocessing is None:
        preprocessing = Preprocessing(channels=int(getattr(model, "in_channels", 1)),
                                      normalize=normalize)
    return preprocessing.band_function(inp.dtype)


def _label_dtype(num_classes: int):
    return np.uint8 if num_classes <= 256 else np.uint16


class _ChannelSlice:
    """Keep the first channels of a channels-first source (drops an alpha channel)."""

    def __init__(self, source, take: slice):
        self.source, self.take = source, take
        self.shape = (take.stop - take.start, *source.shape[1:])
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        return np.asarray(self.source[(self.take, *key[1:])])
