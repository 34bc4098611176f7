"""One image predicted by several processes: each computes a band of rows.

Rank 0 creates the full-size outputs first (:func:`create_outputs`): the labels as an
uncompressed TIFF (or, for a PNG result, a temporary ``.npy`` memory map), probabilities
as a float32 TIFF. Every rank then predicts its rows of every slice
(:func:`predict_rows`, with the tiles that overlap its band from above for context) and
writes them in place through a memory map. Rank 0 finishes (:func:`finish_outputs`): the
PNG and the overlay. The rows are bit-identical to a one-process run's
(:func:`unetlab.inference.tiling.iter_bands` with ``rows``), so are the files.

The processes must see the same output folder (one machine, or a shared file system).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .palette import default_palette
from .predictor import (
    _band_preprocess,
    _Input,
    _label_dtype,
    _TiffWriter,
    _write_overlay,
    write_image,
)
from .tiling import class_argmax, iter_bands, plan_tiles, split_rows


def _partial(label_path: Path) -> Path:
    return label_path.with_name(f".{label_path.name}.partial.npy")


def create_outputs(model, path, stem: Path, *, probabilities: bool = False) -> dict:
    """Create the full-size output files of ``path`` for the ranks to fill; returns the
    output paths (as :func:`finish_outputs` will)."""
    inp = _Input(model, path)
    k = int(model.num_classes)
    paths = inp.outputs(Path(stem), probabilities)
    full = (*inp.lead_shape, *inp.spatial)
    if inp.label_format == "tif":
        _TiffWriter(paths["labels"], full, _label_dtype(k))
    else:
        target = _partial(paths["labels"])
        target.parent.mkdir(parents=True, exist_ok=True)
        mem = np.lib.format.open_memmap(target, mode="w+", dtype=_label_dtype(k), shape=full)
        mem.flush()
        del mem
    if probabilities:
        _TiffWriter(paths["probabilities"], (*inp.lead_shape, k, *inp.spatial), np.float32)
    return paths


def predict_rows(model, path, stem: Path, part: int, parts: int, *, tile_size,
                 overlap: float = 0.25, blend: str = "gaussian", tta=False,
                 batch_size: int = 4, probabilities: bool = False, normalize=None,
                 preprocessing=None, margin: int = 0, device=None) -> tuple[int, int]:
    """Predict band ``part`` of ``parts`` (rows along the first spatial axis, every slice)
    into the files :func:`create_outputs` made. Returns the ``(start, stop)`` rows."""
    import tifffile

    inp = _Input(model, path)
    paths = inp.outputs(Path(stem), probabilities)
    plans = plan_tiles(inp.spatial, tile_size, overlap, model=model, margin=margin)
    rows = split_rows(plans[0], parts)[part]
    if rows[0] >= rows[1]:
        return rows
    prep = _band_preprocess(model, inp, preprocessing, normalize)
    tif = inp.label_format == "tif"
    for lead in inp.leads():
        bands = iter_bands(model, inp.source(lead), plans, blend=blend, tta=tta,
                           batch_size=batch_size, output="probabilities", margin=margin,
                           device=device, preprocess=prep, rows=rows)
        for band, values in bands:
            labels = tifffile.memmap(str(paths["labels"]), mode="r+") if tif else \
                np.load(_partial(paths["labels"]), mmap_mode="r+")
            labels[(*lead, band)] = class_argmax(values).astype(labels.dtype, copy=False)
            labels.flush()
            del labels
            if probabilities:
                probs = tifffile.memmap(str(paths["probabilities"]), mode="r+")
                probs[(*lead, slice(None), band)] = values.numpy()
                probs.flush()
                del probs
    return rows


def finish_outputs(model, path, stem: Path, *, probabilities: bool = False, palette=None,
                   write_overlay: bool = True) -> dict:
    """After every rank wrote its rows: write the PNG and the overlay. Returns the same
    dict as :func:`unetlab.inference.predict_file`."""
    import tifffile

    inp = _Input(model, path)
    k = int(model.num_classes)
    paths = inp.outputs(Path(stem), probabilities)
    pal = palette if palette is not None else default_palette(k)
    if inp.label_format == "tif":
        labels = tifffile.memmap(str(paths["labels"]), mode="r")
    else:
        partial = _partial(paths["labels"])
        labels = np.load(partial)
        write_image(paths["labels"], labels, palette=pal)
        partial.unlink()
    overlay = None
    if write_overlay and paths["overlay"] is not None:
        overlay = _write_overlay(inp, np.asarray(labels), pal, paths["overlay"])
    del labels
    return {"labels": paths["labels"], "overlay": overlay,
            "probabilities": paths["probabilities"], "shape": list(inp.spatial),
            "num_classes": k}


def discard_partial(stem: Path, label_format: str = "png") -> None:
    """Remove the temporary label map a failed band prediction left."""
    _partial(Path(stem).with_name(f"{Path(stem).name}_labels.{label_format}")).unlink(
        missing_ok=True)
