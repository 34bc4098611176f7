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
from ..imageio import TIFF_SUFFIXES, check_finite, read_image, read_tiff_memmap, write_image
from ..models.geometry import geometry_of
from ..preprocess import Preprocessing
from .palette import overlay as make_overlay
from .tiling import as_channels_first, iter_bands, plan_tiles

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
        arr = arr[self.lead]
        return np.moveaxis(arr, self.channel_axis, 0) if self.channel_axis is not None \
            else arr[None]

    def __getitem__(self, key):
        arr = self._array if self._array is not None else read_tiff_memmap(self.path)
        band = np.array(self._view(arr)[key])
        origin = [k.start if isinstance(k, slice) else 0 for k in key]
        return check_finite(band, self.path, origin)  # NaN pixels would give NaN logits


def _layout(shape, in_channels: int, spatial_dims: int, path) -> tuple[tuple, int | None]:
    """``(leading shape iterated over, channel axis or None)`` of a file's array."""
    nd = len(shape)
    if nd == spatial_dims:
        return (), None
    if nd == spatial_dims + 1 and shape[-1] <= 4:
        return (), nd - 1  # channels last; the count is checked by the caller
    if nd == spatial_dims + 1 and in_channels == 1:
        return shape[:1], None  # a stack of 2-D slices (or of volumes)
    if nd == spatial_dims + 2 and shape[-1] <= 4:
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


def predict_file(model, path, out_dir, *, tile_size, overlap: float = 0.25,
                 blend: str = "gaussian", tta=False, batch_size: int = 4,
                 probabilities: bool = False, palette=None, normalize=None, margin: int = 0,
                 device=None, label_format: str | None = None, write_overlay: bool = True,
                 progress: bool = False, preprocessing=None) -> dict:
    """Predict one image file and write ``<stem>_labels.{png,tif}``, ``<stem>_overlay.png``
    (2-D images up to 16 Mpx) and, with ``probabilities=True``, ``<stem>_probs.tif``
    (float32, classes first). Returns ``{"labels", "overlay", "probabilities"}`` paths
    (None where not written), ``"shape"`` and ``"num_classes"``.

    ``model``: an ``nn.Module`` in eval mode or an :class:`InferenceModel`; it needs an
    ``in_channels`` attribute and ``geometry()`` (every unetlab model has them).
    ``preprocessing``: a :class:`unetlab.preprocess.Preprocessing` (from the model card:
    ``Preprocessing.from_card(card)``); without it, dtype scaling and ``normalize``.
    """
    path, out_dir = Path(path), Path(out_dir)
    in_channels = int(getattr(model, "in_channels", 1))
    spatial_dims = geometry_of(model).spatial_dims
    is_tiff = path.suffix.lower() in TIFF_SUFFIXES
    if is_tiff:
        probe = read_tiff_memmap(path)
        shape, dtype = probe.shape, probe.dtype
        del probe
    else:
        array = read_image(path)
        shape, dtype = array.shape, array.dtype
    lead_shape, channel_axis = _layout(shape, in_channels, spatial_dims, path)
    n_channels = shape[channel_axis] if channel_axis is not None else 1
    take = None
    if n_channels == in_channels + 1 and in_channels in (1, 3):  # drop alpha
        take = slice(0, in_channels)
    elif n_channels != in_channels:
        raise UnetlabError(f"{path}: image has {n_channels} channel(s), the model expects "
                           f"{in_channels}")
    spatial = tuple(s for i, s in enumerate(shape[len(lead_shape):], len(lead_shape))
                    if i != channel_axis)
    label_format = label_format or ("tif" if is_tiff or lead_shape or spatial_dims > 2
                                    else "png")
    if label_format not in ("png", "tif"):
        raise ValueError(f"label_format={label_format!r} is not valid; choose 'png' or 'tif'")
    if label_format == "png" and (lead_shape or spatial_dims > 2):
        raise ValueError(f"{path}: a stack or volume needs label_format='tif'")

    if preprocessing is None:
        preprocessing = Preprocessing(channels=in_channels, normalize=normalize)
    prep = preprocessing.band_function(dtype)
    plans = plan_tiles(spatial, tile_size, overlap, model=model, margin=margin)
    n_tiles = int(np.prod([len(p.starts) for p in plans])) * int(np.prod(lead_shape or (1,)))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_tiles, desc=path.name, unit="tile", leave=False)
    out = {"labels": None, "overlay": None, "probabilities": None, "shape": list(spatial)}
    stem = path.stem
    label_path = out_dir / f"{stem}_labels.{label_format}"
    labels_mem = label_writer = prob_writer = None
    label_dtype = np.uint8
    try:
        for lead in np.ndindex(*lead_shape) if lead_shape else [()]:
            if is_tiff:
                source = _TiffSource(path, lead, channel_axis)
            else:
                source = as_channels_first(
                    np.moveaxis(array, channel_axis, 0) if channel_axis is not None else array,
                    spatial_dims)
            if take is not None:
                source = _ChannelSlice(source, take)
            bands = iter_bands(model, source, plans, blend=blend, tta=tta,
                               batch_size=batch_size,
                               output="probabilities", margin=margin, device=device,
                               progress=bar.update if bar is not None else None,
                               preprocess=prep)
            for rows, values in bands:
                k = values.shape[0]
                if out.get("num_classes") is None:
                    out["num_classes"] = k
                    label_dtype = np.uint8 if k <= 256 else np.uint16
                    if label_format == "tif":
                        label_writer = _TiffWriter(label_path, (*lead_shape, *spatial),
                                                   label_dtype)
                    else:
                        labels_mem = np.zeros(spatial, dtype=label_dtype)
                    if probabilities:
                        prob_writer = _TiffWriter(out_dir / f"{stem}_probs.tif",
                                                  (*lead_shape, k, *spatial), np.float32)
                lab = values.argmax(0).numpy().astype(label_dtype)
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
    if write_overlay and not lead_shape and spatial_dims == 2 and \
            int(np.prod(spatial)) <= MAX_OVERLAY_PIXELS:
        import tifffile

        labels = labels_mem if labels_mem is not None else tifffile.imread(str(label_path))
        image = np.asarray(read_image(path))
        if image.ndim == 3 and take is not None:
            image = image[..., take]
        out["overlay"] = write_image(out_dir / f"{stem}_overlay.png",
                                     make_overlay(image, labels, pal))
    elif write_overlay:
        log.info("%s: no overlay for a stack, a volume or an image over %d pixels", path,
                 MAX_OVERLAY_PIXELS)
    return out


class _ChannelSlice:
    """Keep the first channels of a channels-first source (drops an alpha channel)."""

    def __init__(self, source, take: slice):
        self.source, self.take = source, take
        self.shape = (take.stop - take.start, *source.shape[1:])
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        return np.asarray(self.source[(self.take, *key[1:])])
