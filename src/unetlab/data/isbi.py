"""``isbi2012``: the ISBI 2012 EM membrane challenge (the U-Net paper's data).

Two layouts are read:

- PNG slices: ``ROOT/train/image/NN.png``, ``ROOT/train/label/NN.png``,
  ``ROOT/test/image/NN.png`` (as in ../shared/data/isbi2012);
- the original multi-page TIFF stacks: ``ROOT/train-volume.tif``,
  ``ROOT/train-labels.tif`` and optionally ``ROOT/test-volume.tif``.

Labels are 255 = cell interior, 0 = membrane; the dataset maps them to class 1 = membrane
(the foreground), 0 = cell. Any other label value is an error naming the file.

Splits: ``"all"`` = every labelled slice; ``"val"`` = the held-out slices ``val_slices``
(default 20..24); ``"train"`` = the labelled slices not in ``val_slices`` (only the
first ``train_slices`` of them when that option is given: a few-data experiment);
``"test"`` = the unlabelled challenge slices: items have no ``"mask"`` key
(``has_masks`` is False).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UnetlabError
from ..imageio import read_image
from .base import PairedFilesDataset, check_split_and_root, list_images, pair_by_stem
from .mapping import MaskMapping

SPLITS = ("train", "val", "all", "test")
DEFAULT_VAL_SLICES = (20, 21, 22, 23, 24)


class Isbi2012Dataset(PairedFilesDataset):
    """ISBI 2012 membranes; see the module docstring for layouts and splits."""

    class_names = ("cell", "membrane")
    palette = np.array([[255, 255, 255], [0, 0, 0]], dtype=np.uint8)
    ignore_index = None
    in_channels = 1
    weight_map_objects = (0,)  # the cells; membranes separate them
    image_mode = "L"
    mask_mode = "L"

    def __init__(self, root, split: str = "train", transform=None, *,
                 val_slices=DEFAULT_VAL_SLICES, train_slices: int | None = None, **options):
        super().__init__(transform=transform, **options)
        root = check_split_and_root("isbi2012", split, SPLITS, root,
                                    "the folder holding train/ or train-volume.tif")
        if not root.is_dir():
            raise UnetlabError(f"{root}: isbi2012 directory not found")
        self.root, self.split = root, split
        self.val_slices = tuple(int(i) for i in val_slices)
        if train_slices is not None and (isinstance(train_slices, bool)
                                         or not isinstance(train_slices, int)
                                         or train_slices < 1):
            raise UnetlabError(f"isbi2012 option train_slices must be an integer >= 1, "
                               f"got {train_slices!r}")
        self.train_slices = train_slices
        self.mapping = MaskMapping({0: 1, 255: 0})
        self._stack = None
        if split == "test":
            self._init_test(root)
        elif (root / "train" / "image").is_dir():
            pairs = pair_by_stem(list_images(root / "train" / "image"),
                                 list_images(root / "train" / "label", what="labels"),
                                 where=root / "train" / "label")
            self._set_samples(self._select(pairs))
        elif (root / "train-volume.tif").is_file():
            self._init_stack(root / "train-volume.tif", root / "train-labels.tif")
        else:
            raise UnetlabError(f"{root}: no ISBI 2012 data (expected train/image/*.png or "
                               "train-volume.tif)")
        if not self.names:
            raise UnetlabError(f"{root}: split {split!r} is empty (val_slices="
                               f"{self.val_slices})")

    def _select(self, items: list) -> list:
        if self.split == "all":
            return items
        held = set(self.val_slices)
        if held and max(held) >= len(items):
            raise UnetlabError(f"val_slices {sorted(held)} out of range for "
                               f"{len(items)} labelled slices")
        keep = (lambda i: i in held) if self.split == "val" else (lambda i: i not in held)
        kept = [it for i, it in enumerate(items) if keep(i)]
        if self.split == "train" and self.train_slices is not None:
            if self.train_slices > len(kept):
                raise UnetlabError(f"isbi2012 option train_slices={self.train_slices} but "
                                   f"only {len(kept)} training slices exist")
            kept = kept[:self.train_slices]  # the first N (a few-data experiment)
        return kept

    def _init_test(self, root: Path) -> None:
        if (root / "test" / "image").is_dir():
            files = list_images(root / "test" / "image")
            self._set_samples((f.stem, f, None) for f in files)
        elif (root / "test-volume.tif").is_file():
            self._init_stack(root / "test-volume.tif", None)
        else:
            raise UnetlabError(f"{root}: no ISBI 2012 test images (expected test/image/*.png "
                               "or test-volume.tif)")
        self.has_masks = False

    def _init_stack(self, volume: Path, labels: Path | None) -> None:
        images = _read_stack(volume)
        masks = None
        if labels is not None:
            masks = _read_stack(labels)
            if masks.shape != images.shape:
                raise UnetlabError(f"{labels}: label stack shape {masks.shape} does not match "
                                   f"image stack {volume} shape {images.shape}")
        indices = list(range(len(images)))
        if labels is not None:
            indices = self._select(indices)
        self._stack = (volume, images, labels, masks)
        self.samples = [(f"{volume.stem}_{i:02d}", volume, labels) for i in indices]
        self._stack_index = indices
        self.names = [s[0] for s in self.samples]
        self.has_masks = labels is not None

    def _load_raw(self, index):
        if self._stack is None:
            return super()._load_raw(index)
        volume, images, labels, masks = self._stack
        k = self._stack_index[index]
        image = np.asarray(images[k])
        if masks is None:
            return image, None, f"{volume}[{k}]"
        mask = self.mapping(np.asarray(masks[k]), source=f"{labels}[slice {k}]")
        return image, mask, f"{volume}[{k}] / {labels}[{k}]"


def _read_stack(path: Path) -> np.ndarray:
    """A multi-page TIFF as (slices, H, W) grey."""
    if not path.is_file():
        raise UnetlabError(f"{path}: no such TIFF stack")
    stack = read_image(path)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim == 4 and stack.shape[-1] in (3, 4):
        stack = stack[..., :3].mean(-1).astype(stack.dtype)
    if stack.ndim != 3:
        raise UnetlabError(f"{path}: expected a stack of grey slices, got shape {stack.shape}")
    return stack
