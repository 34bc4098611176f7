"""``cityscapes``: ``ROOT/leftImg8bit/<split>/<city>/<x>_leftImg8bit.png`` with fine labels
``ROOT/gtFine/<split>/<city>/<x>_gtFine_labelIds.png``; the 34 label ids are mapped to
the 19 train ids, everything else (void, rare classes) to 255 = ignore.
"""

from __future__ import annotations

import numpy as np

from ..errors import UnetlabError
from .base import RGBPairedDataset, check_no_missing_masks, check_split_and_root
from .mapping import MaskMapping

CLASS_NAMES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic light",
               "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
               "truck", "bus", "train", "motorcycle", "bicycle")
PALETTE = np.array([[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156],
                    [190, 153, 153], [153, 153, 153], [250, 170, 30], [220, 220, 0],
                    [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
                    [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100],
                    [0, 0, 230], [119, 11, 32]], dtype=np.uint8)
# label id -> train id (cityscapesScripts labels.py); ids not listed are ignored
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
             24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
SPLITS = ("train", "val", "test")


class CityscapesDataset(RGBPairedDataset):
    """Cityscapes fine annotations, 19 classes, 255 = ignore."""

    class_names = CLASS_NAMES
    palette = PALETTE
    ignore_index = 255

    def __init__(self, root, split: str = "train", transform=None, **options):
        super().__init__(transform=transform, **options)
        root = check_split_and_root(
            "cityscapes", split, SPLITS, root, "holding leftImg8bit/ and gtFine/")
        image_dir = root / "leftImg8bit" / split
        if not image_dir.is_dir():
            raise UnetlabError(f"{image_dir}: cityscapes images directory not found")
        images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
        if not images:
            raise UnetlabError(f"{image_dir}: no *_leftImg8bit.png images found")
        samples, missing = [], []
        for image in images:
            stem = image.name[: -len("_leftImg8bit.png")]
            mask = root / "gtFine" / split / image.parent.name / f"{stem}_gtFine_labelIds.png"
            if not mask.is_file():
                missing.append(image.name)
            samples.append((stem, image, mask))
        check_no_missing_masks(missing, root / 'gtFine')
        self.root, self.split = root, split
        self._set_samples(samples)
        table = {label: TRAIN_IDS.get(label, 255) for label in range(34)}
        self.mapping = MaskMapping(table, num_classes=19, ignore_index=255)
