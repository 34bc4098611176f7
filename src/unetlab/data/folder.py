"""``folder``: images and masks in two directories, paired by file stem.

Layout (``images`` and ``masks`` are options)::

    ROOT/images/a.png   ROOT/masks/a.png        (or ROOT/<split>/images, ROOT/<split>/masks)

Masks may be grey, palette (indices are the raw values) or RGB (declare colours).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..errors import UnetlabError
from ..imageio import read_image
from .base import PairedFilesDataset, list_images, pair_by_stem
from .mapping import MaskMapping
from .palettes import default_palette

log = logging.getLogger(__name__)


class FolderDataset(PairedFilesDataset):
    """Images + masks paired by stem.

    Args:
        root: the data folder.
        split: when ``ROOT/<split>/<images>`` exists it is used, else ``ROOT/<images>``.
        images, masks: sub-directory names (default ``images``, ``masks``).
        mapping: ``{raw mask value or colour: class id}``; colours as ``(r, g, b)`` or
            ``"#rrggbb"``. Without it the raw values are class ids ``0..num_classes-1``;
            with neither ``mapping`` nor ``num_classes`` nor ``class_names``, the values
            found in the masks are numbered in sorted order (e.g. 0/255 -> 0/1).
        ignore_values: raw values mapped to ``ignore_index`` (default 255 when declared).
        class_names, palette: optional metadata (default ``class0..``, a fixed palette).
        image_mode: ``"L"``, ``"RGB"`` or None (keep the file's channels).
        mask_suffix: a suffix on mask stems to strip before pairing (e.g. ``"_mask"``).
    """

    def __init__(self, root, split: str = "train", transform=None, *, images: str = "images",
                 masks: str = "masks", mapping=None, num_classes: int | None = None,
                 ignore_values=(), ignore_index: int | None = None, class_names=None,
                 palette=None, image_mode: str | None = None, mask_suffix: str = "",
                 **options):
        super().__init__(transform=transform, **options)
        if root is None:
            raise UnetlabError("folder dataset needs a root (the data path)")
        root = Path(root)
        if not root.is_dir():
            raise UnetlabError(f"{root}: data directory not found")
        base = root / split if (root / split / images).is_dir() else root
        image_files = list_images(base / images, what="images")
        mask_files = list_images(base / masks, what="masks")
        self._set_samples(pair_by_stem(image_files, mask_files, mask_suffix=mask_suffix,
                                       where=base / masks))
        if ignore_values and ignore_index is None:
            ignore_index = 255
        if mapping is None and num_classes is None and class_names is None:
            mapping = self._infer_mapping(ignore_values)
        if num_classes is None:
            num_classes = (len(class_names) if class_names is not None
                           else len(set(dict(mapping).values())))
        self.mapping = MaskMapping(mapping, num_classes=num_classes,
                                   ignore_values=ignore_values, ignore_index=ignore_index)
        self.class_names = tuple(class_names or (f"class{i}" for i in range(num_classes)))
        if len(self.class_names) != num_classes:
            raise UnetlabError(f"{len(self.class_names)} class_names for {num_classes} classes")
        self.palette = (np.asarray(palette, dtype=np.uint8) if palette is not None
                        else default_palette(num_classes))
        self.ignore_index = ignore_index
        self.image_mode = image_mode
        modes = {"L": 1, "RGB": 3, "RGBA": 4}
        if image_mode is not None and image_mode not in modes:
            raise UnetlabError(f"image_mode={image_mode!r}: choose from None, "
                               f"{', '.join(modes)}")
        if image_mode is None:
            first = read_image(self.samples[0][1])
            self.in_channels = 1 if first.ndim == 2 else int(first.shape[-1])
        else:
            self.in_channels = modes[image_mode]

    def _infer_mapping(self, ignore_values) -> dict:
        from .mapping import _encode_rgb, _parse_key

        ignored = {_parse_key(v) for v in ignore_values}
        values: set = set()
        rgb = False
        for _, _, mask_path in self.samples:
            raw = read_image(mask_path)
            if raw.ndim == 3 and raw.shape[-1] >= 3 and not (
                    np.array_equal(raw[..., 0], raw[..., 1])
                    and np.array_equal(raw[..., 0], raw[..., 2])):
                rgb = True
                codes = np.unique(_encode_rgb(raw))
                values |= {((c >> 16) & 255, (c >> 8) & 255, c & 255) for c in codes.tolist()}
            else:
                raw = raw[..., 0] if raw.ndim == 3 else raw
                values |= set(np.unique(raw).tolist())
        if rgb:
            values = {v if isinstance(v, tuple) else (v, v, v) for v in values}
        found = sorted(values - ignored)
        log.info("folder dataset: no mapping declared; mask values %s -> classes 0..%d",
                 found, len(found) - 1)
        return {v: i for i, v in enumerate(found)}
