"""Datasets, augmentation and class statistics.

    ds = unetlab.data.build_dataset("isbi2012", "../shared/data/isbi2012", split="train",
                                    transform=unetlab.data.build_transforms("paper", 256))
    ds[0]  # {"image": float32 (1, 256, 256), "mask": int64 (256, 256), "name": "00"}

Every dataset exposes ``num_classes``, ``class_names``, ``palette`` (K x 3 uint8),
``ignore_index`` and ``in_channels``. ``membranes`` and ``shapes`` are synthetic and
need no root.
"""

from __future__ import annotations

import importlib

_DATASETS = {
    "folder": ("folder", "FolderDataset"),
    "isbi2012": ("isbi", "Isbi2012Dataset"),
    "camvid": ("camvid", "CamVidDataset"),
    "voc": ("voc", "VocDataset"),
    "cityscapes": ("cityscapes", "CityscapesDataset"),
    "geotiff": ("geotiff", "GeoTiffDataset"),
    "nifti": ("nifti", "NiftiDataset"),
    "membranes": ("synthetic", "MembranesDataset"),
    "shapes": ("synthetic", "ShapesDataset"),
}
SYNTHETIC = ("membranes", "shapes")

__all__ = ["augment_symmetries", "build_dataset", "build_transforms", "class_statistics",
           "dataset_class",
           "list_datasets", "list_presets", "transforms_from_config"]


def list_datasets() -> list[str]:
    """Names accepted by :func:`build_dataset`."""
    return list(_DATASETS)


def dataset_class(name: str):
    """The dataset class registered under ``name``."""
    if name not in _DATASETS:
        import difflib

        close = difflib.get_close_matches(str(name), _DATASETS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        from ..errors import UnetlabError

        raise UnetlabError(f"unknown dataset {name!r}{hint}; choose from "
                           f"{', '.join(_DATASETS)}")
    module, cls = _DATASETS[name]
    return getattr(importlib.import_module(f".{module}", __name__), cls)


def build_dataset(name: str, root=None, split: str = "train", *, transform=None, **options):
    """A dataset by name: ``folder``, ``isbi2012``, ``camvid``, ``voc``, ``cityscapes``,
    ``geotiff`` (rasters), ``nifti`` (3-D volumes; these need ``root``) or the synthetic
    ``membranes``, ``shapes``. ``options`` go to the dataset class (e.g. ``val_slices``,
    ``weight_map``, ``cache``, ``normalize``, ``num_images``, ``size``, ``seed``); an
    unknown option is a one-line error naming the valid ones."""
    cls = dataset_class(name)
    valid = _accepted_options(cls)
    unknown = sorted(set(options) - valid)
    if unknown:
        from ..errors import UnetlabError

        raise UnetlabError(f"dataset {name!r}: unknown option(s) {', '.join(unknown)}; "
                           f"valid: {', '.join(sorted(valid))}")
    return cls(root, split, transform, **options)


def _accepted_options(cls) -> set[str]:
    import inspect

    from .base import SegmentationDataset

    names: set[str] = set()
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        for p in inspect.signature(klass.__init__).parameters.values():
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD):
                names.add(p.name)
        if klass is SegmentationDataset:
            break
    return names - {"self", "root", "split", "transform"}


def augment_symmetries(preset: str, *, spatial_dims: int = 2, **options) -> tuple[str, ...]:
    """The flips and rotations an augmentation preset shows the model (2-D: ``"hflip"``,
    ``"vflip"``, ``"rot90"``; 3-D: ``"flips"``, along every axis): what test-time
    augmentation may average over."""
    if spatial_dims == 3:
        from ..errors import UnetlabError
        from .volume_transforms import VOLUME_PRESETS

        if preset not in VOLUME_PRESETS:
            raise UnetlabError(f"unknown volume augmentation preset {preset!r}; choose from "
                               f"{', '.join(VOLUME_PRESETS)}")
        flip = options.get("flip_p", VOLUME_PRESETS[preset]["flip_p"])
        return ("flips",) if flip > 0 else ()
    from .transforms import symmetries

    return symmetries(preset, **options)


def build_transforms(preset: str = "light", tile_size=None, *, spatial_dims: int = 2,
                     **options):
    """Augmentation pipeline; see :mod:`unetlab.data.transforms` (2-D) and
    :mod:`unetlab.data.volume_transforms` (``spatial_dims=3``)."""
    if spatial_dims == 3:
        from .volume_transforms import build_volume_transforms

        return build_volume_transforms(preset, tile_size, **options)
    from .transforms import build_transforms as _build

    return _build(preset, tile_size, **options)


def transforms_from_config(config):
    """Augmentation pipeline from a dict or YAML file; see :mod:`unetlab.data.transforms`."""
    from .transforms import transforms_from_config as _from

    return _from(config)


def list_presets() -> tuple[str, ...]:
    from .transforms import list_presets as _list

    return _list()


def class_statistics(dataset, *, progress: bool = False) -> dict:
    """Class frequencies and weights; see :mod:`unetlab.data.stats`."""
    from .stats import class_statistics as _stats

    return _stats(dataset, progress=progress)
