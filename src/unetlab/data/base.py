"""The dataset base class every format shares: decoding, mask mapping, size checks,
in-memory caching, the optional U-Net border weight map, augmentation and tensors.

An item is a dict ``{"image": float32 (C, H, W) in [0, 1] (optionally normalised),
"mask": int64 (H, W), "weight": float32 (H, W) (only with ``weight_map=True``),
"name": str}``. Splits without labels (e.g. the ISBI test slices) have no ``"mask"``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import UnetlabError
from ..imageio import check_finite, read_image
from ..preprocess import Preprocessing, to_tensor, to_unit

log = logging.getLogger(__name__)

CACHE_LIMIT_BYTES = 1 << 30  # cache="auto" keeps decoded data in memory up to 1 GiB


def compact_labels(mask: np.ndarray) -> np.ndarray:
    """Store a class-id map in the smallest unsigned type that holds it (cache size)."""
    lo, hi = (int(mask.min()), int(mask.max())) if mask.size else (0, 0)
    if lo >= 0 and hi < 256:
        return mask.astype(np.uint8)
    if lo >= -(1 << 15) and hi < (1 << 15):
        return mask.astype(np.int16)
    return mask.astype(np.int32)


class SegmentationDataset(Dataset):
    """Base class: subclasses fill ``self.names`` and implement :meth:`_load_raw`.

    Options shared by every dataset:

    - ``transform``: a callable ``transform(image=, mask=, weight=) -> dict`` on numpy
      ``(H, W[, C])`` arrays (see :func:`unetlab.data.build_transforms`), or None.
    - ``cache``: ``True``/``False``/``"auto"`` (default: keep decoded images and masks in
      memory when the whole split fits in 1 GiB). With ``num_workers > 0`` call
      :meth:`preload` first (workers then share the cache) or use persistent workers.
    - ``normalize``: None (images in [0, 1]), ``"imagenet"`` or ``{"mean", "std"}``.
    - ``scale``: resolution factor applied on decoding (0.5 = half height and width;
      images by area/bilinear, masks by nearest; see :mod:`unetlab.data.resample`).
    - ``weight_map``: add the U-Net border weight map as ``"weight"`` (``w0``, ``sigma``,
      ``weight_class_weights``: the paper's w_c, e.g. ``"balanced"``), computed by
      :func:`unetlab.losses.border_weight_map` on the untransformed mask; the objects are
      the connected components of the classes in ``weight_map_objects`` (the cells, class
      0, for membrane data; every non-zero class otherwise).
    """

    weight_map_objects: tuple[int, ...] | None = None

    class_names: tuple[str, ...] = ()
    palette: np.ndarray = np.zeros((0, 3), dtype=np.uint8)
    ignore_index: int | None = None
    in_channels: int = 1
    has_masks: bool = True
    input_scaling: str = "dtype"   # see unetlab.preprocess
    channel_names: tuple[str, ...] | None = None
    card_extensions: dict | None = None  # merged into the model card by the trainer

    def __init__(self, *, transform=None, cache="auto", normalize=None, weight_map=False,
                 w0: float = 10.0, sigma: float = 5.0, weight_class_weights=None,
                 scale: float = 1.0):
        from .resample import check_scale

        self.scale = check_scale(scale)
        if self.scale != 1.0 and getattr(self, "spatial_dims", 2) != 2:
            raise UnetlabError(f"{type(self).__name__}: data.scale={self.scale} resizes 2-D "
                               "images only; resample volumes with target_spacing")
        if cache not in (True, False, "auto"):
            raise UnetlabError(f"cache={cache!r}: expected True, False or 'auto'")
        self.transform = transform
        self.cache = cache
        self.normalize = normalize
        self.weight_map = bool(weight_map)
        self.w0 = float(w0)
        self.sigma = float(sigma)
        self.weight_class_weights = weight_class_weights
        self.names: list[str] = []
        self._cache: dict[int, tuple] = {}
        self._prep: Preprocessing | None = None

    # -- to implement -------------------------------------------------------------
    def _load_raw(self, index: int) -> tuple[np.ndarray, np.ndarray | None, str]:
        """Decode sample ``index``: (image (H, W[, C]), class ids (H, W) or None,
        a description of the source for error messages)."""
        raise NotImplementedError

    # -- shared machinery ------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.names)

    def _use_cache(self, first_bytes: int) -> bool:
        if self.cache == "auto":
            self.cache = first_bytes * len(self) <= CACHE_LIMIT_BYTES
            log.info("%s: caching decoded samples in memory: %s", type(self).__name__,
                     self.cache)
        return bool(self.cache)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Decoded (image, mask, weight) before augmentation, cached per ``cache``."""
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        hit = self._cache.get(index)
        if hit is not None:
            return hit
        image, mask, source = self._load_raw(index)
        image = check_finite(to_unit(np.asarray(image), self.input_scaling), source)
        if mask is not None:
            if mask.shape[:2] != image.shape[:2]:
                raise UnetlabError(
                    f"{source}: image is {image.shape[0]}x{image.shape[1]} but its mask is "
                    f"{mask.shape[0]}x{mask.shape[1]} (height x width)" + (
                        "; the sides are swapped: a photo whose EXIF orientation turns it "
                        "in viewers is read as stored, so save it upright (e.g. PIL's "
                        "ImageOps.exif_transpose) or draw the mask on the stored pixels"
                        if mask.shape[:2] == image.shape[1::-1] else ""))
            mask = compact_labels(mask)
        if self.scale != 1.0:
            from .resample import resize_image, resize_labels

            image = resize_image(image, self.scale)
            mask = resize_labels(mask, self.scale) if mask is not None else None
        weight = None
        if self.weight_map and mask is not None:
            weight = self._border_weight(mask)
        item = (image, mask, weight)
        nbytes = sum(a.nbytes for a in item if a is not None)
        if self.cache is True or (self.cache == "auto" and self._use_cache(nbytes)):
            self._cache[index] = item
        return item

    def load_mask(self, index: int) -> np.ndarray | None:
        """The class-id map of sample ``index`` (no augmentation), or None."""
        return self.load(index)[1]

    def _border_weight(self, mask: np.ndarray) -> np.ndarray:
        try:
            from ..losses import border_weight_map
        except ImportError as exc:
            raise UnetlabError("weight_map=True needs unetlab.losses.border_weight_map "
                               f"({exc})") from None
        options = {}
        if self.weight_map_objects is not None:
            options["object_labels"] = list(self.weight_map_objects)
        weight = border_weight_map(mask.astype(np.int64), w0=self.w0, sigma=self.sigma,
                                   class_weights=self.weight_class_weights, **options)
        if isinstance(weight, torch.Tensor):
            weight = weight.numpy()
        return np.asarray(weight, dtype=np.float32)

    def preload(self, progress: bool = False) -> SegmentationDataset:
        """Decode every sample into the cache now (share it with forked workers)."""
        self.cache = True
        indices = range(len(self))
        if progress:
            from tqdm import tqdm

            indices = tqdm(indices, desc=f"decoding {type(self).__name__}", unit="img")
        for i in indices:
            self.load(i)
        return self

    def __getitem__(self, index: int) -> dict:
        image, mask, weight = self.load(index)
        if self.transform is not None:
            data = {"image": image}
            if mask is not None:
                data["mask"] = mask
            if weight is not None:
                data["weight"] = weight
            out = self.transform(**data)
            image, mask, weight = out["image"], out.get("mask"), out.get("weight")
        item = {"image": self._image_tensor(image), "name": self.names[index]}
        if mask is not None:
            item["mask"] = torch.from_numpy(np.array(mask, dtype=np.int64))
        if weight is not None:
            item["weight"] = torch.from_numpy(np.array(weight, dtype=np.float32))
        return item

    def _image_tensor(self, image: np.ndarray) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            channels = image.shape[0]
        else:
            channels = 1 if np.ndim(image) == 2 else np.shape(image)[-1]
        return to_tensor(image, self.preprocessing(channels))

    def preprocessing(self, channels: int | None = None) -> Preprocessing:
        """This dataset's :class:`~unetlab.preprocess.Preprocessing` (what the model card
        records): the scaling and the normalisation for ``channels`` channels."""
        channels = int(channels or self.in_channels)
        if self._prep is None or self._prep.channels != channels:
            self._prep = Preprocessing(channels=channels, scaling=self.input_scaling,
                                       normalize=self.normalize)
        return self._prep

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({len(self)} samples, {self.num_classes} classes, "
                f"in_channels={self.in_channels}, ignore_index={self.ignore_index})")


def check_split_and_root(dataset: str, split: str, splits, root, layout: str) -> Path:
    """One-line errors for an unknown split or a missing root; returns ``Path(root)``.

    ``layout`` says what the root must hold, e.g. "the folder holding train/".
    """
    if split not in splits:
        raise UnetlabError(f"{dataset}: unknown split {split!r}; choose from {tuple(splits)}")
    if root is None:
        raise UnetlabError(f"{dataset} needs a root ({layout})")
    return Path(root)


def list_images(directory, *, what: str = "images") -> list[Path]:
    """Image files in ``directory`` sorted by name; an error when it is missing or empty.
    Hidden files (``.name``, e.g. the ``._x.png`` metadata files macOS leaves on shared
    drives) are not images, as ``unetlab predict`` also skips them."""
    from ..imageio import IMAGE_SUFFIXES

    directory = Path(directory)
    if not directory.is_dir():
        raise UnetlabError(f"{directory}: {what} directory not found")
    files = sorted(p for p in directory.iterdir()
                   if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not p.name.startswith("."))
    if not files:
        raise UnetlabError(f"{directory}: no {what} found (looked for "
                           f"{', '.join(IMAGE_SUFFIXES)})")
    return files


def pair_by_stem(images: list[Path], masks: list[Path], *, mask_suffix: str = "",
                 where: Path | None = None) -> list[tuple[str, Path, Path]]:
    """Pair images with masks by file stem (the mask stem may end in ``mask_suffix``);
    an error listing the first few images that have no mask."""
    by_stem: dict[str, Path] = {}
    for m in masks:
        stem = m.stem
        if mask_suffix and stem.endswith(mask_suffix):
            stem = stem[: -len(mask_suffix)]
        if stem in by_stem:  # which one is the mask? neither silently
            raise UnetlabError(f"{by_stem[stem]} and {m.name}: two masks for the image "
                               f"{stem!r}; keep one")
        by_stem[stem] = m
    images_by_stem: dict[str, Path] = {}
    for img in images:
        if img.stem in images_by_stem:  # one mask would label both, under one name
            raise UnetlabError(f"{images_by_stem[img.stem]} and {img.name}: two images "
                               f"named {img.stem!r}; rename or remove one")
        images_by_stem[img.stem] = img
    pairs, missing = [], []
    for img in images:
        mask = by_stem.get(img.stem)
        if mask is None:
            missing.append(img.name)
        else:
            pairs.append((img.stem, img, mask))
    check_no_missing_masks(missing, where)
    return pairs


def describe_occurrences(value, files, unit: str) -> str:
    """``value (n unit(s) in a, b, c (+k more))``: where an unexpected label value or
    colour was found; ``files`` is ``[(path, count), ...]``."""
    shown = ", ".join(str(f) for f, _ in files[:3]) + \
        (f" (+{len(files) - 3} more)" if len(files) > 3 else "")
    return f"{value} ({sum(n for _, n in files):,} {unit}(s) in {shown})"


def check_no_missing_masks(missing: list[str], where=None) -> None:
    """One-line error listing the first few images that have no mask (if any)."""
    if missing:
        shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5
                                          else "")
        place = f" in {where}" if where is not None else ""
        raise UnetlabError(f"{len(missing)} image(s) without a mask{place}: {shown}")


class PairedFilesDataset(SegmentationDataset):
    """Images and masks as files: ``self.samples`` = [(name, image_path, mask_path|None)],
    ``self.mapping`` a :class:`~unetlab.data.mapping.MaskMapping`, ``self.image_mode`` a
    Pillow mode ("L", "RGB") or None to keep the file's channels."""

    image_mode: str | None = None
    mask_mode: str | None = None

    def _set_samples(self, samples) -> None:
        self.samples = list(samples)
        self.names = [s[0] for s in self.samples]
        self.has_masks = all(s[2] is not None for s in self.samples)

    def load_mask(self, index: int) -> np.ndarray | None:
        """Decode only the mask (class statistics need no images)."""
        if index in self._cache or self.samples[index][2] is None:
            return self.load(index)[1]
        mask_path = self.samples[index][2]
        return self.mapping(read_image(mask_path, mode=self.mask_mode), source=str(mask_path))

    def _load_raw(self, index):
        name, image_path, mask_path = self.samples[index]
        image = read_image(image_path, mode=self.image_mode)
        if mask_path is None:
            return image, None, str(image_path)
        raw = read_image(mask_path, mode=self.mask_mode)
        mask = self.mapping(raw, source=str(mask_path))
        return image, mask, f"{image_path} / {mask_path}"


class RGBPairedDataset(PairedFilesDataset):
    """Paired files whose images are read as RGB (CamVid, VOC, Cityscapes)."""

    in_channels = 3
    image_mode = "RGB"
