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
from .base import PairedFilesDataset, describe_occurrences, list_images, pair_by_stem
from .mapping import MaskMapping, _encode_rgb, _parse_key
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
            with neither ``mapping`` nor ``num_classes`` nor ``class_names``, grey masks
            must hold class ids ``0..K-1`` or one binary pair ``0/X`` (e.g. 0/255 -> 0/1,
            the same X in every mask); any other value (one stray pixel of 7, 0/65535
            masks mixed with 0/255 ones) is an error listing the values and the files.
            Colour masks without a mapping are numbered in sorted colour order.
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
        # False when ROOT/<split> is absent and the images of ROOT itself are used: the
        # trainer then holds out part of the training images instead (data/splits.py)
        self.split_found = base != root
        image_files = list_images(base / images, what="images")
        mask_files = list_images(base / masks, what="masks")
        self._set_samples(pair_by_stem(image_files, mask_files, mask_suffix=mask_suffix,
                                       where=base / masks))
        if ignore_values and ignore_index is None:
            ignore_index = 255
        # the mapping read from these masks when none is declared; the trainer gives it to
        # the validation split, whose masks may lack a class (data/splits.py, builder)
        self.inferred_mapping = None
        if mapping is None and num_classes is None and class_names is None:
            mapping = self.inferred_mapping = self._infer_mapping(ignore_values)
        if num_classes is None:
            num_classes = (len(class_names) if class_names is not None
                           else len(set(dict(mapping).values())))
        self.mapping = MaskMapping(mapping, num_classes=num_classes,
                                   ignore_values=ignore_values, ignore_index=ignore_index)
        self.class_names = tuple(class_names or (f"class{i}" for i in range(num_classes)))
        if len(self.class_names) != num_classes:
            raise UnetlabError(f"{len(self.class_names)} class_names for {num_classes} classes")
        self.palette = (np.asarray(palette, dtype=np.uint8) if palette is not None
                        else self._mask_colours(num_classes, ignore_index))
        if self.mapping.rgb:  # colours: palette masks as their palette's colours
            self.mask_mode = "colour"
        self.ignore_index = ignore_index
        # the mask values -> classes this model learns travel in its card, so `unetlab
        # evaluate` on other masks (which may lack a class) numbers the classes alike
        ignored = {_parse_key(v) for v in (ignore_values or ())}
        self.card_extensions = {"folder": {
            "mapping": {_key_text(k): int(v) for k, v in self.mapping.table.items()
                        if k not in ignored},
            "ignore_values": [_key_text(k) for k in sorted(ignored, key=str)],
            "ignore_index": ignore_index,
            # how the images were converted: predict and evaluate convert theirs alike (a
            # model trained with image_mode=RGB on mixed grey and RGB files refused the grey)
            "image_mode": image_mode}}
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

    def _load_raw(self, index):
        image, mask, source = super()._load_raw(index)
        if self.image_mode is None:
            channels = 1 if image.ndim == 2 else int(image.shape[-1])
            if image.ndim not in (2, 3) or channels != self.in_channels:
                raise UnetlabError(
                    f"{self.samples[index][1]}: image of shape {tuple(image.shape)} has "
                    f"{channels} channel(s), but this folder's images have {self.in_channels} "
                    f"(like the first, {self.samples[0][1].name}); convert it, or set "
                    "image_mode to 'L' or 'RGB' to convert every image")
        return image, mask, source

    def _mask_colours(self, num_classes: int, ignore_index) -> np.ndarray:
        """The palette when none is given: colour masks give each class the colour it has
        in the masks (the first, when several map to it), so predictions look like the
        user's own labels; other classes (and grey masks) the default colours."""
        colours = default_palette(num_classes).copy()
        if self.mapping.rgb:
            done = set()
            for key, cls in self.mapping.table.items():
                if cls != ignore_index and 0 <= cls < num_classes and cls not in done:
                    colours[cls] = key
                    done.add(cls)
        return colours

    def _infer_mapping(self, ignore_values) -> dict:
        ignored = {_parse_key(v) for v in ignore_values}
        values: set = set()
        grey: dict[int, list] = {}  # value -> [(file, pixels), ...]
        colours: dict[tuple, list] = {}  # the same for colour masks
        rgb = False
        flat = []  # masks read as one channel: grey, palette indices, greys stored as RGB
        for _, _, mask_path in self.samples:
            raw = read_image(mask_path)
            if raw.ndim == 3 and raw.shape[-1] >= 3 and raw.dtype != np.uint8:
                raw = read_image(mask_path, mode="colour")  # 16-bit colours, as training
            if raw.ndim == 3 and raw.shape[-1] >= 3 and not (
                    np.array_equal(raw[..., 0], raw[..., 1])
                    and np.array_equal(raw[..., 0], raw[..., 2])):
                rgb = True
                for colour, n in _colour_counts(raw):
                    colours.setdefault(colour, []).append((mask_path, n))
                    values.add(colour)
            else:
                flat.append(mask_path)
                raw = raw[..., 0] if raw.ndim == 3 else raw
                found, counts = np.unique(raw, return_counts=True)
                for v, c in zip(found.tolist(), counts.tolist()):
                    grey.setdefault(v, []).append((mask_path, c))
                values |= set(found.tolist())
        if rgb:
            # among colour masks the others are read as colours too: a palette PNG as its
            # palette's colours (Pillow's mode RGB, as the dataset then reads every mask),
            # a grey one as (v, v, v)
            grey = {}
            values = {v for v in values if isinstance(v, tuple)}  # the colour masks' own
            for mask_path in flat:
                raw = read_image(mask_path, mode="colour")
                if raw.ndim == 2 and raw.size and (raw.min() < 0 or raw.max() > 255 or (
                        raw.dtype.kind == "f" and not np.array_equal(raw, np.round(raw)))):
                    raise UnetlabError(f"{mask_path}: a one-channel mask with values from "
                                       f"{raw.min()} to {raw.max()} among colour masks; save "
                                       "every mask as RGB colours, or declare the classes")
                if raw.ndim == 3 and raw.shape[-1] >= 3:
                    for colour, n in _colour_counts(raw):
                        if colour[0] == colour[1] == colour[2] and colour not in colours:
                            grey.setdefault(colour[0], []).append((mask_path, n))
                        colours.setdefault(colour, []).append((mask_path, n))
                        values.add(colour)
                else:  # a one-channel TIFF
                    found, counts = np.unique(raw, return_counts=True)
                    for v, c in zip(found.tolist(), counts.tolist()):
                        grey.setdefault(v, []).append((mask_path, c))
                        colours.setdefault((v, v, v), []).append((mask_path, c))
                        values.add((v, v, v))
            # a grey mask among colour ones (an empty mask saved as grey, say) is read as
            # the colours (v, v, v); a grey value no colour mask has (palette indices, a
            # class map) would silently become a class of its own
            colour_masks = {c for c, files in colours.items()
                            if any(f not in flat for f, _ in files)}
            stray = sorted(v for v in grey if (v, v, v) not in colour_masks
                           and v not in ignored and (v, v, v) not in ignored)
            if stray:
                shown = "; ".join(
                    f"{v} in {', '.join(str(f) for f, _ in grey[v][:3])}"
                    + (f" (+{len(grey[v]) - 3} more)" if len(grey[v]) > 3 else "")
                    for v in stray[:5])
                raise UnetlabError(
                    f"grey or palette masks among colour masks hold values no colour mask "
                    f"has: {shown}; save every mask as RGB colours, or declare the classes "
                    "(mapping: {'#rrggbb': class, ...})")
            values = {v if isinstance(v, tuple) else (v, v, v) for v in values}
            check_rare_colours({v: f for v, f in colours.items() if v not in ignored})
        else:
            check_undeclared_values({v: f for v, f in grey.items() if v not in ignored})
        found = sorted(values - ignored)
        log.info("folder dataset: no mapping declared; mask values %s -> classes 0..%d",
                 found, len(found) - 1)
        return {v: i for i, v in enumerate(found)}


def _colour_counts(raw: np.ndarray) -> list[tuple[tuple, int]]:
    """``[((r, g, b), pixels), ...]`` of a colour mask."""
    codes, counts = np.unique(_encode_rgb(raw), return_counts=True)
    return [(((c >> 16) & 255, (c >> 8) & 255, c & 255), n)
            for c, n in zip(codes.tolist(), counts.tolist())]


def _key_text(key) -> str | int:
    """A mapping key as the card's JSON holds it: '#rrggbb' for a colour, else the int."""
    if isinstance(key, tuple):
        return "#" + "".join(f"{int(v):02x}" for v in key)
    return int(key)


RARE_COLOUR_SHARE = 1e-4  # an undeclared colour on fewer pixels is taken for a stray one
MAX_UNDECLARED_COLOURS = 64


def check_rare_colours(where: dict) -> None:
    """Undeclared colour masks: a colour on fewer than 0.01% of the mask pixels (an
    anti-aliased edge, a stray pixel) or more than 64 colours is a one-line error listing
    them and their files, instead of silently becoming classes (a declared ``mapping``
    takes the masks as they are).

    ``where``: ``{(r, g, b): [(mask file, pixel count), ...]}`` over the whole split.
    """
    total = sum(n for files in where.values() for _, n in files)

    def describe(colour):
        return describe_occurrences(list(colour), where[colour], "pixel")

    declare = "declare the classes (mapping: {'#rrggbb': class, ...})"
    if len(where) > MAX_UNDECLARED_COLOURS:
        raise UnetlabError(f"{len(where)} different colours in the masks (anti-aliased or "
                           f"photographic masks?), e.g. {'; '.join(map(describe, list(where)[:3]))}"
                           f"; {declare}")
    rare = sorted(c for c, files in where.items()
                  if sum(n for _, n in files) < RARE_COLOUR_SHARE * total)
    if rare:
        raise UnetlabError(f"undeclared mask colours on fewer than {RARE_COLOUR_SHARE:.2%} of "
                           f"the pixels: {'; '.join(map(describe, rare[:5]))}"
                           f"{f' (+{len(rare) - 5} more)' if len(rare) > 5 else ''}; fix the "
                           f"masks, or {declare}")


def check_undeclared_values(where: dict) -> None:
    """Undeclared grey mask values must be class ids ``0..K-1`` or one binary pair
    ``0/X``; otherwise a one-line error listing the unexpected values and their files.

    ``where``: ``{value: [(mask file, pixel count), ...]}`` over the whole split.
    """
    values = sorted(where)
    if not values or values == list(range(len(values))) or \
            (len(values) == 2 and values[0] == 0):
        return
    run = 0
    while run in where:
        run += 1
    if run >= 2:
        expected = set(range(run))
    else:  # a binary mask: 0 and the non-zero value found in the most files
        nonzero = [v for v in values if v != 0]
        expected = {0, max(nonzero, key=lambda v: (len(where[v]), -v))}
    parts = []
    for v in values:
        if v in expected:
            continue
        files = where[v]
        pixels = sum(c for _, c in files)
        shown = ", ".join(str(f) for f, _ in files[:3]) + \
            (f" (+{len(files) - 3} more)" if len(files) > 3 else "")
        parts.append(f"{v} ({pixels:,} pixel(s) in {shown})")
    if not parts:  # e.g. only the value 1: a subset of a binary 0/1 mask
        return
    raise UnetlabError(
        f"undeclared mask values: {'; '.join(parts[:5])}"
        f"{f' (+{len(parts) - 5} more values)' if len(parts) > 5 else ''}; the others are "
        f"{sorted(expected)}. Fix the masks, or declare the classes (mapping, num_classes "
        "or class_names; --option mapping={0: 0, 255: 1} on the command line)"
        + ("; if 255 marks no-data or unlabelled pixels, --option ignore_values=[255] "
           "leaves them out of training and metrics" if 255 in where and 255 not in expected
           else ""))
