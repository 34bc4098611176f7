"""Augmentation presets built on albumentations: image, mask and weight map move
together; masks and weight maps are always resampled by nearest neighbour, and borders
are reflected, so augmentation never creates a label value that was not in the mask.

Presets (``build_transforms(preset, tile_size=None, **options)``):

===========  =================================================================
``none``     nothing (only the crop to ``tile_size`` when one is given)
``flips``    flips and 90-degree rotations only: no intensity change (multispectral
             rasters whose values fill a small part of their dtype's range)
``light``    flips, small rotation/scale, brightness/contrast
``paper``    the U-Net paper: shift, rotation, flips, grey-value variation and the
             3x3-grid elastic deformation (10 px std, bicubic displacement field)
``strong``   ``paper`` plus 90-degree rotations, larger scale range, gamma, blur, noise
``upright``  scenes with a top and a bottom (sky above road): left-right flips,
             scale 0.75-1.25, small rotations, brightness/contrast; no vertical flips
===========  =================================================================

Every preset parameter can be overridden by keyword (or from a YAML/dict with
:func:`transforms_from_config`): ``hflip``, ``vflip``, ``rot90`` (probabilities),
``rotate`` (max degrees), ``scale`` ((lo, hi)), ``shift`` (fraction), ``affine_p``,
``elastic_p``, ``elastic_sigma``, ``elastic_grid``, ``brightness``, ``contrast``,
``color_p``, ``gamma_p``, ``noise_std`` (fraction of the range), ``noise_p``,
``blur_p``; ``extra``: a list of ``{"name": <albumentations class>, **kwargs}`` appended.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import cv2

from ..errors import UnetlabError, read_yaml

_BASE = dict(hflip=0.0, vflip=0.0, rot90=0.0, rotate=0.0, scale=(1.0, 1.0), shift=0.0,
             affine_p=0.0, elastic_p=0.0, elastic_sigma=10.0, elastic_grid=3,
             brightness=0.0, contrast=0.0, color_p=0.0, gamma_p=0.0, noise_std=0.0,
             noise_p=0.0, blur_p=0.0, extra=())

PRESETS: dict[str, dict] = {
    "none": {},
    "flips": dict(hflip=0.5, vflip=0.5, rot90=0.5),
    "light": dict(hflip=0.5, vflip=0.5, rotate=15.0, scale=(0.9, 1.1), shift=0.05,
                  affine_p=0.5, brightness=0.1, contrast=0.1, color_p=0.5),
    "paper": dict(hflip=0.5, vflip=0.5, rotate=180.0, scale=(1.0, 1.0), shift=0.1,
                  affine_p=0.7, elastic_p=0.8, elastic_sigma=10.0, elastic_grid=3,
                  brightness=0.1, contrast=0.15, color_p=0.7),
    "strong": dict(hflip=0.5, vflip=0.5, rot90=0.5, rotate=180.0, scale=(0.75, 1.25),
                   shift=0.1, affine_p=0.8, elastic_p=0.8, elastic_sigma=10.0,
                   elastic_grid=3, brightness=0.2, contrast=0.2, color_p=0.8, gamma_p=0.3,
                   noise_std=0.05, noise_p=0.3, blur_p=0.2),
    "upright": dict(hflip=0.5, rotate=10.0, scale=(0.75, 1.25), shift=0.05, affine_p=0.7,
                    brightness=0.2, contrast=0.2, color_p=0.7),
}


def list_presets() -> tuple[str, ...]:
    return tuple(PRESETS)


def symmetries(preset: str, **options) -> tuple[str, ...]:
    """The exact geometric maps a 2-D preset shows the model: ``"hflip"`` (left-right),
    ``"vflip"`` (top-bottom), ``"rot90"`` (90-degree turns, or rotations of at least 90
    degrees). Test-time augmentation averages over these only: a view the training never
    showed (a road scene upside down) is a different image to the model."""
    if preset not in PRESETS:
        raise UnetlabError(f"unknown augmentation preset {preset!r}; choose from "
                           f"{', '.join(PRESETS)}")
    p = {**_BASE, **PRESETS[preset], **options}
    out = [name for name in ("hflip", "vflip") if p[name] > 0]
    rotate = p["rotate"]
    widest = max(abs(float(r)) for r in rotate) if isinstance(rotate, list | tuple) \
        else abs(float(rotate))
    if p["rot90"] > 0 or (widest >= 90 and p["affine_p"] > 0):
        out.append("rot90")
    return tuple(out)


class SegmentationTransform:
    """A callable ``transform(image=, mask=None, weight=None) -> dict`` wrapping an
    albumentations pipeline; ``weight`` is moved as a mask (nearest neighbour).

    In a DataLoader worker the pipeline reseeds itself on first use from
    ``torch.initial_seed()`` (different in every worker and every epoch, reproducible
    under ``torch.manual_seed``), so workers never repeat each other's augmentations.
    """

    def __init__(self, transforms: list, *, seed: int | None = None, params: dict | None = None):
        import albumentations as A

        self.params = dict(params or {})
        self.seed = seed
        self.compose = A.Compose(transforms, additional_targets={"weight": "mask"}, seed=seed)
        self._pid = os.getpid()

    def _reseed_in_worker(self) -> None:
        pid = os.getpid()
        if pid == self._pid:
            return
        self._pid = pid
        import torch

        if torch.utils.data.get_worker_info() is not None:
            import numpy as np

            mixed = np.random.SeedSequence([torch.initial_seed() % (1 << 63),
                                            0 if self.seed is None else int(self.seed)])
            self.compose.set_random_seed(int(mixed.generate_state(1)[0]))

    def __call__(self, *, image, mask=None, weight=None) -> dict:
        self._reseed_in_worker()
        data = {"image": image}
        if mask is not None:
            data["mask"] = mask
        if weight is not None:
            data["weight"] = weight
        out = self.compose(**data)
        return {k: out[k] for k in data}

    def set_seed(self, seed: int) -> None:
        """Reseed explicitly (overrides the automatic per-worker seed)."""
        self._pid = os.getpid()
        self.compose.set_random_seed(seed)

    def __repr__(self) -> str:
        names = ", ".join(type(t).__name__ for t in self.compose.transforms)
        return f"SegmentationTransform([{names}])"


def _pair(value, name: str) -> tuple[float, float]:
    if isinstance(value, int | float):
        return (1.0 - float(value), 1.0 + float(value)) if name == "scale" else (
            -float(value), float(value))
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise UnetlabError(f"transform option {name}={value!r}: expected a number or "
                           "(low, high)") from None
    return lo, hi


def _tile(tile_size) -> tuple[int, int] | None:
    if tile_size is None:
        return None
    if isinstance(tile_size, int):
        tile_size = (tile_size, tile_size)
    try:
        h, w = (int(v) for v in tile_size)
    except (TypeError, ValueError):
        raise UnetlabError(f"tile_size={tile_size!r}: expected an int or (height, width)") \
            from None
    if h < 1 or w < 1:
        raise UnetlabError(f"tile_size={tile_size!r}: must be positive")
    return h, w


def build_transforms(preset: str = "light", tile_size=None, *, seed: int | None = None,
                     **options) -> SegmentationTransform:
    """An augmentation pipeline: a preset (``none``, ``light``, ``paper``, ``strong``),
    a random crop to ``tile_size`` (padded by reflection when the image is smaller), and
    any preset parameter overridden by keyword (see the module docstring)."""
    import albumentations as A

    from .elastic import GridElastic

    if preset not in PRESETS:
        raise UnetlabError(f"unknown augmentation preset {preset!r}; choose from "
                           f"{', '.join(PRESETS)}")
    unknown = sorted(set(options) - set(_BASE))
    if unknown:
        raise UnetlabError(f"unknown transform option(s) {', '.join(unknown)}; valid: "
                           f"{', '.join(sorted(_BASE))}")
    p = {**_BASE, **PRESETS[preset], **options}
    reflect = cv2.BORDER_REFLECT_101
    ops = []
    if p["hflip"] > 0:
        ops.append(A.HorizontalFlip(p=p["hflip"]))
    if p["vflip"] > 0:
        ops.append(A.VerticalFlip(p=p["vflip"]))
    if p["rot90"] > 0:
        ops.append(A.RandomRotate90(p=p["rot90"]))
    if p["affine_p"] > 0:
        shift = float(p["shift"])
        ops.append(A.Affine(scale=_pair(p["scale"], "scale"), rotate=_pair(p["rotate"], "rotate"),
                            translate_percent=(-shift, shift), interpolation=cv2.INTER_LINEAR,
                            mask_interpolation=cv2.INTER_NEAREST, border_mode=reflect,
                            p=p["affine_p"]))
    if p["elastic_p"] > 0:
        ops.append(GridElastic(grid=p["elastic_grid"], sigma=p["elastic_sigma"],
                               p=p["elastic_p"]))
    tile = _tile(tile_size)
    if tile is not None:
        ops.append(A.PadIfNeeded(min_height=tile[0], min_width=tile[1], border_mode=reflect))
        ops.append(A.RandomCrop(height=tile[0], width=tile[1]))
    if p["color_p"] > 0:
        ops.append(A.RandomBrightnessContrast(brightness_limit=p["brightness"],
                                              contrast_limit=p["contrast"], p=p["color_p"]))
    if p["gamma_p"] > 0:
        ops.append(A.RandomGamma(gamma_limit=(80, 120), p=p["gamma_p"]))
    if p["blur_p"] > 0:
        ops.append(A.GaussianBlur(blur_limit=(3, 5), p=p["blur_p"]))
    if p["noise_p"] > 0:
        ops.append(A.GaussNoise(std_range=(0.0, float(p["noise_std"])), p=p["noise_p"]))
    for spec in p["extra"] or ():
        ops.append(_extra(spec))
    return SegmentationTransform(ops, seed=seed, params={"preset": preset, "tile_size": tile,
                                                         **p})


def _extra(spec):
    import albumentations as A

    if not isinstance(spec, dict) or "name" not in spec:
        raise UnetlabError(f"extra transform {spec!r}: expected {{'name': ..., **kwargs}}")
    kwargs = dict(spec)
    name = kwargs.pop("name")
    cls = getattr(A, str(name), None)
    if not isinstance(cls, type):
        raise UnetlabError(f"extra transform {name!r}: not an albumentations transform")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        message = " ".join(str(exc).split())[:300]
        raise UnetlabError(f"extra transform {name}: {message}") from None


def transforms_from_config(config) -> SegmentationTransform:
    """Build from a dict or a YAML file: ``{"preset": "paper", "tile_size": 256,
    "elastic_sigma": 8, ...}`` (same keys as :func:`build_transforms`)."""
    if isinstance(config, str | Path):
        config = read_yaml(config, "transform config")
    if not isinstance(config, dict):
        raise UnetlabError(f"transform config must be a mapping, got {type(config).__name__}")
    config = dict(config)
    preset = config.pop("preset", "light")
    tile_size = config.pop("tile_size", None)
    return build_transforms(preset, tile_size, **config)


@contextlib.contextmanager
def augmentation_threads(n: int = 1):
    """OpenCV (the augmentation's warps) limited to ``n`` threads within the block.

    Between training steps OpenCV's own thread pool competed with torch's for the cores:
    on 2 cores `paper` added 74 and 104 ms to a step (batch 4) with OpenCV's default
    threads, 40 and 7 ms with one (``benchmarks/bench_augment_in_training.py
    --cv2-threads``). Warps give the same pixels either way. The setting is the
    process's: other OpenCV work in the process during the block gets one thread too."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(n)
    try:
        yield
    finally:
        cv2.setNumThreads(before)
