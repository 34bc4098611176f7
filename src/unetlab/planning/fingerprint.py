"""The dataset fingerprint: what the planner reads before it chooses anything.

Image count, sizes, channels, per-channel intensity statistics, class frequencies and
class weights, ignored pixels, and the geometry of the labels: the typical object size
(equivalent diameter of connected components, pixel-weighted median) and the thinnest
structure (local thickness = twice the distance to the class border on the skeleton,
median weighted by thickness so that one-pixel spurs do not dominate),
plus how strongly the classes are laid out top-to-bottom (sky above road: no vertical
flips). Masks are read without augmentation; the geometry uses an evenly spaced sample.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..data.stats import ClassStatistics

log = logging.getLogger(__name__)

MAX_ITEMS = 200          # images read for sizes, intensities and class frequencies
MAX_GEOMETRY_ITEMS = 12  # masks measured for object size and thickness
MIN_CLASS_FREQUENCY = 0.002  # classes rarer than this do not set the thinnest structure


@dataclass
class Fingerprint:
    """Measured properties of one training split (all sizes in native pixels)."""

    dataset: str
    num_images: int
    sampled_images: int
    image_height: int            # median height
    image_width: int             # median width
    min_side: int
    channels: int
    intensity_mean: list = field(default_factory=list)   # per channel, in [0, 1] units
    intensity_std: list = field(default_factory=list)
    num_classes: int = 0
    class_names: list = field(default_factory=list)
    ignore_index: int | None = None
    ignored_fraction: float = 0.0
    class_frequencies: list = field(default_factory=list)
    median_frequency_weights: list = field(default_factory=list)
    imbalance: float = 1.0       # most / least frequent present class
    object_size: float = 0.0     # pixel-weighted median equivalent diameter of components
    class_object_size: list = field(default_factory=list)
    thinnest_structure: float = 0.0   # median local thickness of the thinnest class
    thinnest_class: str | None = None
    class_thickness: list = field(default_factory=list)
    vertical_layout: float = 0.0  # 0: classes anywhere; 1: each class in one half
    has_own_val: bool = False
    # classes seen only in the items a fallback hold-out validates on (no own val split):
    # training never sees them
    held_out_only: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Fingerprint:
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in names})


def _sample(n: int, limit: int) -> list[int]:
    if n <= limit:
        return list(range(n))
    return sorted({int(round(i * (n - 1) / (limit - 1))) for i in range(limit)})


def _as_float(image: np.ndarray) -> np.ndarray:
    """``dataset.load`` gives images in training units already (integers divided by
    their type's maximum, uint8 kept as uint8): uint8 is scaled here, the rest as is."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32, copy=False)


def class_geometry(mask: np.ndarray, num_classes: int, ignore_index=None):
    """Per class of one mask: component equivalent diameters (with their pixel counts)
    and local thicknesses on the skeleton."""
    from scipy import ndimage
    from skimage.morphology import skeletonize

    diameters = [[] for _ in range(num_classes)]
    thickness = [[] for _ in range(num_classes)]
    for c in np.unique(mask):
        c = int(c)
        if c == ignore_index or not 0 <= c < num_classes:
            continue
        region = mask == c
        labels, n = ndimage.label(region, structure=np.ones((3, 3)))
        areas = np.bincount(labels.ravel())[1:]
        diameters[c] += [(math.sqrt(4.0 * a / math.pi), int(a)) for a in areas]
        if region.all():
            continue
        distance = ndimage.distance_transform_edt(region)
        skeleton = skeletonize(region)
        values = 2.0 * distance[skeleton]
        if values.size:
            thickness[c].append(values)
    return diameters, thickness


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    if values.size == 0:
        return 0.0
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2.0)])


def compute_fingerprint(dataset, *, name: str = "", has_own_val: bool = False,
                        max_items: int = MAX_ITEMS,
                        max_geometry_items: int = MAX_GEOMETRY_ITEMS) -> Fingerprint:
    """Measure ``dataset`` (a :class:`~unetlab.data.base.SegmentationDataset`, read with
    ``load`` so without augmentation and at its stored resolution)."""
    from ..errors import UnetlabError

    if int(getattr(dataset, "spatial_dims", 2)) != 2:
        raise UnetlabError(f"dataset {name!r} holds 3-D volumes; planning measures 2-D "
                           "images only: train volumes from a config (configs/"
                           "nifti_synthetic3d.yaml, docs/medical.md)")
    n = len(dataset)
    if n == 0:
        raise UnetlabError(f"dataset {name!r} is empty: nothing to plan for")
    k = int(dataset.num_classes)
    ignore = getattr(dataset, "ignore_index", None)
    stats = ClassStatistics(k, ignore)
    heights, widths = [], []
    sums = sq = None
    pixels = 0
    top = np.zeros(k)
    indices = _sample(n, max_items)
    geometry_items = set(_sample(len(indices), max_geometry_items))
    diam_all = [[] for _ in range(k)]
    thick_all = [[] for _ in range(k)]
    seen_in = [set() for _ in range(k)]  # sampled items holding each class
    for j, i in enumerate(indices):
        image, mask, _ = dataset.load(i)
        if mask is None:
            raise UnetlabError(f"dataset {name!r}: item {i} has no mask; planning needs "
                               "a labelled split")
        image = _as_float(image)
        flat = image.reshape(image.shape[0] * image.shape[1], -1).astype(np.float64)
        sums = flat.sum(0) if sums is None else sums + flat.sum(0)
        sq = (flat ** 2).sum(0) if sq is None else sq + (flat ** 2).sum(0)
        pixels += flat.shape[0]
        heights.append(mask.shape[0])
        widths.append(mask.shape[1])
        try:
            stats.update(mask)
        except ValueError as exc:
            raise UnetlabError(f"dataset {name!r} item {i}: {exc}") from None
        for c in np.unique(mask):
            if 0 <= c < k and c != ignore:
                seen_in[int(c)].add(i)
        half = mask.shape[0] // 2
        upper = np.bincount(mask[:half].ravel().astype(np.int64), minlength=k + 256)[:k]
        top += upper
        if j in geometry_items:
            d, t = class_geometry(mask, k, ignore)
            for c in range(k):
                diam_all[c] += d[c]
                thick_all[c] += t[c]
    result = stats.compute()
    freq = np.asarray(result["class_frequencies"])
    counts = np.asarray(result["pixel_counts"], dtype=np.float64)
    present = counts > 0
    mean = sums / max(pixels, 1)
    std = np.sqrt(np.maximum(sq / max(pixels, 1) - mean ** 2, 0.0))
    total_px = counts.sum() + result["ignored_pixels"]

    class_size, class_thick = [], []
    all_d, all_w = [], []
    for c in range(k):
        if diam_all[c]:
            d = np.array([x for x, _ in diam_all[c]])
            w = np.array([a for _, a in diam_all[c]], dtype=np.float64)
            class_size.append(round(_weighted_median(d, w), 2))
            all_d.append(d)
            all_w.append(w)
        else:
            class_size.append(None)
        if thick_all[c]:  # weighted by thickness: a skeleton pixel stands for that width
            t = np.concatenate(thick_all[c])
            class_thick.append(round(_weighted_median(t, t), 2))
        else:
            class_thick.append(None)
    object_size = _weighted_median(np.concatenate(all_d), np.concatenate(all_w)) \
        if all_d else float(min(heights))
    candidates = [(t, c) for c, t in enumerate(class_thick)
                  if t is not None and freq[c] >= MIN_CLASS_FREQUENCY]
    thin, thin_c = min(candidates) if candidates else (float(min(heights)), None)
    share_top = np.divide(top, counts, out=np.full(k, 0.5), where=counts > 0)
    layout = float(np.sum(freq * np.abs(2.0 * share_top - 1.0)))
    return Fingerprint(
        dataset=name, num_images=n, sampled_images=len(indices),
        image_height=int(np.median(heights)), image_width=int(np.median(widths)),
        min_side=int(min(min(heights), min(widths))), channels=int(mean.size),
        # significant digits, not decimals: 12-bit data in 32-bit files has a std of 1e-6
        intensity_mean=[float(f"{float(v):.6g}") for v in mean],
        intensity_std=[float(f"{float(v):.6g}") for v in std],
        num_classes=k, class_names=list(getattr(dataset, "class_names", ())),
        ignore_index=ignore,
        ignored_fraction=round(float(result["ignored_pixels"] / max(total_px, 1)), 4),
        class_frequencies=[round(float(v), 5) for v in freq],
        median_frequency_weights=[round(float(v), 4)
                                  for v in result["class_weights"]["median_frequency"]],
        imbalance=round(float(freq[present].max() / freq[present].min()), 2)
        if present.any() else 1.0,
        object_size=round(float(object_size), 2), class_object_size=class_size,
        thinnest_structure=round(float(thin), 2),
        thinnest_class=(list(dataset.class_names)[thin_c] if thin_c is not None
                        and len(dataset.class_names) > thin_c else
                        (str(thin_c) if thin_c is not None else None)),
        class_thickness=class_thick, vertical_layout=round(layout, 3),
        has_own_val=bool(has_own_val),
        held_out_only=[] if has_own_val else _held_out_only(seen_in, n, dataset))


def _held_out_only(seen_in: list, n: int, dataset) -> list:
    """Names of the classes found only in the items the fallback hold-out takes
    (:func:`unetlab.data.splits.holdout_indices`, the last fifth by name)."""
    from ..data.splits import DEFAULT_VAL_FRACTION, holdout_indices

    if n < 2:
        return []
    held = set(holdout_indices(n, DEFAULT_VAL_FRACTION)[1])
    names = list(getattr(dataset, "class_names", ()))
    return [names[c] if c < len(names) else str(c)
            for c, items in enumerate(seen_in) if items and items <= held]


def format_fingerprint(fp: Fingerprint) -> str:
    """A few lines for ``unetlab stats`` / ``unetlab plan``."""
    mean = ", ".join(f"{v:.3f}" for v in fp.intensity_mean)
    std = ", ".join(f"{v:.3f}" for v in fp.intensity_std)
    return "\n".join([
        f"fingerprint: {fp.num_images} images ({fp.sampled_images} read), median size "
        f"{fp.image_height}x{fp.image_width}, {fp.channels} channel(s)",
        f"  intensity mean [{mean}], std [{std}] (integers / type max; floats as stored)",
        f"  {fp.num_classes} classes, imbalance {fp.imbalance:.1f}x, ignored "
        f"{fp.ignored_fraction:.2%} (ignore_index={fp.ignore_index})",
        f"  typical object size {fp.object_size:.1f} px, thinnest structure "
        f"{fp.thinnest_structure:.1f} px ({fp.thinnest_class}), vertical layout "
        f"{fp.vertical_layout:.2f}",
    ])
