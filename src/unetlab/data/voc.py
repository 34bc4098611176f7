"""``voc``: PASCAL VOC 2012 segmentation.

``ROOT`` is ``VOCdevkit/VOC2012`` (or a folder holding ``VOCdevkit/VOC2012`` or
``VOC2012``): ``JPEGImages/<id>.jpg``, palette PNGs ``SegmentationClass/<id>.png`` (the
palette indices are the class ids; 255 = the void border, ignored) and
``ImageSets/Segmentation/{train,val,trainval}.txt``. 21 classes.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UnetlabError
from .base import RGBPairedDataset, check_no_missing_masks, check_split_and_root
from .mapping import MaskMapping
from .palettes import voc_palette

CLASS_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")
SPLITS = ("train", "val", "trainval")


class VocDataset(RGBPairedDataset):
    """PASCAL VOC 2012, 21 classes, 255 = ignore."""

    class_names = CLASS_NAMES
    palette = voc_palette(21)
    ignore_index = 255

    def __init__(self, root, split: str = "train", transform=None, **options):
        super().__init__(transform=transform, **options)
        root = _find_root(check_split_and_root("voc", split, SPLITS, root, "VOCdevkit/VOC2012"))
        listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise UnetlabError(f"{listing}: split list not found")
        ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        if not ids:
            raise UnetlabError(f"{listing}: empty split list")
        samples, missing = [], []
        for i in ids:
            image = root / "JPEGImages" / f"{i}.jpg"
            mask = root / "SegmentationClass" / f"{i}.png"
            if not image.is_file():
                raise UnetlabError(f"{image}: listed in {listing} but not found")
            if not mask.is_file():
                missing.append(mask.name)
            samples.append((i, image, mask))
        check_no_missing_masks(missing, root / 'SegmentationClass')
        self.root, self.split = root, split
        self._set_samples(samples)
        self.mapping = MaskMapping(None, num_classes=21, ignore_values=(255,), ignore_index=255)


def _find_root(root: Path) -> Path:
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise UnetlabError(f"{root}: no VOC 2012 data (expected JPEGImages/ under it, "
                       "VOC2012/ or VOCdevkit/VOC2012/)")
