"""Every figure of the docs, made by the project's own code.

One function per figure, each ``name(path) -> Path`` writing a small PNG (matplotlib,
Agg backend). Regenerate them all with one command::

    python -m unetlab.figures --out docs/figures            # all (about a minute on a CPU)
    python -m unetlab.figures --out docs/figures --only checkerboard zero_insertion

The arrays behind the pictures come from plain functions in the same modules
(``upsampling.transposed_conv_as_convolution``, ``upsampling.max_unpool_example``,
``upsampling.overlap_counts``, ``upsampling.upsampling_methods``,
``data.elastic_example``, ``architecture.unet_feature_shapes``,
``architecture.overlap_tile_layout``, ``attention.train_tiny_attention_unet``,
``geo.train_tiny_geo_unet``), which
the tests check and the notebooks reuse.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

log = logging.getLogger(__name__)

#: figure name -> (module, function); the PNG is written as ``<name>.png``.
FIGURES = {
    "semantic_segmentation": ("data", "semantic_segmentation"),
    "u_shape": ("architecture", "u_shape"),
    "zero_insertion": ("upsampling", "zero_insertion"),
    "max_unpooling": ("upsampling", "max_unpooling"),
    "checkerboard": ("upsampling", "checkerboard"),
    "upsampling_comparison": ("upsampling", "upsampling_comparison"),
    "overlap_tile": ("architecture", "overlap_tile"),
    "elastic_deformation": ("data", "elastic_deformation"),
    "attention_maps": ("attention", "attention_maps"),
    "remote_sensing": ("geo", "remote_sensing"),
}

__all__ = ["FIGURES", "figure_function", "list_figures", "make_figures"]


def list_figures() -> list[str]:
    """Names accepted by :func:`make_figures`."""
    return list(FIGURES)


def figure_function(name: str):
    """The function that draws figure ``name``."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose from {', '.join(FIGURES)}")
    module, function = FIGURES[name]
    return getattr(importlib.import_module(f".{module}", __name__), function)


def make_figures(out_dir, names=None) -> list[Path]:
    """Write the figures ``names`` (default: all) as ``out_dir/<name>.png``."""
    names = list(FIGURES) if names is None else list(names)
    functions = [(name, figure_function(name)) for name in names]  # validate all first
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, function in functions:
        path = function(out_dir / f"{name}.png")
        log.info("wrote %s (%d bytes)", path, path.stat().st_size)
        written.append(path)
    return written
