"""Class statistics of a dataset's masks and the class weights derived from them.

Definitions (``ignore_index`` pixels count nowhere):

- ``class_frequencies[c]`` = pixels of class c / all labelled pixels.
- SegNet's median-frequency balancing (Badrinarayanan et al. 2017, after Eigen & Fergus
  2015): ``freq(c)`` = pixels of class c / pixels of the images in which c is present;
  ``weight(c) = median_c(freq) / freq(c)``.
- inverse frequency: ``weight(c) = N / (K * n_c)`` (N labelled pixels, K classes present,
  n_c pixels of c), so the pixel-weighted mean weight is 1.

A class that never occurs gets weight 0 and is left out of the median.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


class ClassStatistics:
    """Streaming pixel counts over masks: ``update(mask)`` per image, then ``compute()``."""

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.pixels = np.zeros(self.num_classes, dtype=np.int64)
        self.present_image_pixels = np.zeros(self.num_classes, dtype=np.int64)
        self.images_with_class = np.zeros(self.num_classes, dtype=np.int64)
        self.ignored_pixels = 0
        self.images = 0
        self.sizes: Counter = Counter()

    def update(self, mask) -> None:
        mask = np.asarray(mask)
        self.images += 1
        self.sizes[tuple(int(s) for s in mask.shape)] += 1  # (H, W), or a volume's 3 axes
        flat = mask.reshape(-1).astype(np.int64, copy=False)
        if self.ignore_index is not None:
            keep = flat != self.ignore_index
            self.ignored_pixels += int(flat.size - keep.sum())
            flat = flat[keep]
        if flat.size and (flat.min() < 0 or flat.max() >= self.num_classes):
            bad = np.unique(flat[(flat < 0) | (flat >= self.num_classes)])
            raise ValueError(f"mask values {bad[:10].tolist()} outside 0..{self.num_classes - 1}")
        counts = np.bincount(flat, minlength=self.num_classes)
        present = counts > 0
        self.pixels += counts
        self.present_image_pixels[present] += flat.size
        self.images_with_class[present] += 1

    def compute(self) -> dict:
        """Frequencies, SegNet median-frequency and inverse-frequency weights, sizes (height
        and width of images; ``shape`` of volumes, in their array's axis order)."""
        total = int(self.pixels.sum())
        present = self.pixels > 0
        frequencies = self.pixels / total if total else np.zeros(self.num_classes)
        freq = np.zeros(self.num_classes)
        freq[present] = self.pixels[present] / self.present_image_pixels[present]
        median_w = np.zeros(self.num_classes)
        inverse_w = np.zeros(self.num_classes)
        if present.any():
            median_w[present] = np.median(freq[present]) / freq[present]
            inverse_w[present] = total / (present.sum() * self.pixels[present])
        return {
            "num_images": self.images,
            "image_sizes": [{"height": shape[0], "width": shape[1], "count": n}
                            if len(shape) == 2 else {"shape": list(shape), "count": n}
                            for shape, n in sorted(self.sizes.items())],
            "pixel_counts": self.pixels.tolist(),
            "ignored_pixels": self.ignored_pixels,
            "images_with_class": self.images_with_class.tolist(),
            "class_frequencies": frequencies.tolist(),
            "median_frequency_freq": freq.tolist(),
            "class_weights": {"median_frequency": median_w.tolist(),
                              "inverse_frequency": inverse_w.tolist()},
        }


def class_statistics(dataset, *, progress: bool = False) -> dict:
    """:class:`ClassStatistics` over every mask of ``dataset`` (no augmentation), with
    its ``class_names`` and ``ignore_index``."""
    if not getattr(dataset, "has_masks", True):
        raise ValueError(f"{type(dataset).__name__}: this split has no masks to count")
    stats = ClassStatistics(dataset.num_classes, dataset.ignore_index)
    indices = range(len(dataset))
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="counting pixels", unit="mask")
    load_mask = getattr(dataset, "load_mask", None)
    for i in indices:
        mask = load_mask(i) if load_mask is not None else dataset[i]["mask"].numpy()
        stats.update(mask)
    result = stats.compute()
    return {"class_names": list(dataset.class_names), "ignore_index": dataset.ignore_index,
            **result}


def median_frequency_weights(masks, num_classes: int, ignore_index: int | None = None):
    """SegNet median-frequency weights for an iterable of masks (numpy array)."""
    stats = ClassStatistics(num_classes, ignore_index)
    for mask in masks:
        stats.update(mask)
    return np.asarray(stats.compute()["class_weights"]["median_frequency"])
