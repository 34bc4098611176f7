"""THE one path from a decoded image to what the model sees.

Datasets (training, validation, ``evaluate``, ``compare``), the streaming predictor
(``predict``) and export all use these functions, and the model card records the
choices, so a model gets the same input wherever it runs:

1. **Scaling** (``scaling="dtype"``, the default): integer images are divided by their
   type's maximum (uint8 by 255, uint16 by 65535, int16 by 32767, ...), booleans become
   0/1, floating-point images are kept as they are. ``scaling="none"`` keeps raw values.
2. **Normalisation** (optional): ``(x - mean) / std`` per channel, with ``mean``/``std``
   named (``"imagenet"``) or given (e.g. computed on the training set).

A one-channel model with ``"imagenet"`` uses the mean of the three means and stds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .errors import UnetlabError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SCALINGS = ("dtype", "none")


def dtype_scale(dtype, scaling: str = "dtype") -> float:
    """The factor that maps values of ``dtype`` to [0, 1] (1.0 for floats or
    ``scaling="none"``)."""
    dtype = np.dtype(dtype)
    if scaling == "none" or dtype.kind == "f":
        return 1.0
    if dtype == np.bool_:
        return 1.0
    if dtype.kind in "iu":
        return 1.0 / float(np.iinfo(dtype).max)
    raise UnetlabError(f"images of type {dtype} are not supported (integers or floats)")


def to_unit(image: np.ndarray, scaling: str = "dtype") -> np.ndarray:
    """Step 1 for the data pipeline: uint8 stays uint8 (cheaper to augment; it is scaled
    by :func:`to_tensor`), booleans become uint8 0/255, other types float32 scaled."""
    image = np.asarray(image)
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * np.uint8(255)
    if image.dtype == np.uint8 and scaling == "dtype":
        return image
    factor = dtype_scale(image.dtype, scaling)
    out = image.astype(np.float32)
    if factor != 1.0:
        out *= np.float32(factor)
    return out


def resolve_normalize(normalize, channels: int) -> dict | None:
    """``None``/``False``, ``"imagenet"``, ``{"mean": [...], "std": [...]}`` (a ``"name"``
    key is kept) or ``(mean, std)`` -> ``{"name", "mean", "std"}`` with one value per
    channel, or None. One-line UnetlabError for anything else."""
    if normalize is None or normalize is False:
        return None
    name = "custom"
    if normalize == "imagenet":
        name, mean, std = "imagenet", IMAGENET_MEAN, IMAGENET_STD
        if channels == 1:
            mean, std = (float(np.mean(mean)),), (float(np.mean(std)),)
    elif isinstance(normalize, dict) and {"mean", "std"} <= set(normalize):
        mean, std = normalize["mean"], normalize["std"]
        name = str(normalize.get("name") or "custom")
    elif isinstance(normalize, list | tuple) and len(normalize) == 2:
        mean, std = normalize
    else:
        raise UnetlabError(f"normalize={normalize!r}: expected None, 'imagenet', "
                           "{'mean': [...], 'std': [...]} or (mean, std)")
    try:
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        std = np.asarray(std, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise UnetlabError(f"normalize: mean and std must be numbers, got {normalize!r}") from None
    for what, values in (("mean", mean), ("std", std)):
        if values.size not in (1, channels):
            raise UnetlabError(f"normalize: {what} has {values.size} values but the images "
                               f"have {channels} channel(s)")
        if not np.isfinite(values).all():
            raise UnetlabError(f"normalize: {what} must be finite, got {values.tolist()}")
    mean = np.broadcast_to(mean, (channels,))
    std = np.broadcast_to(std, (channels,))
    if (std <= 0).any():
        raise UnetlabError(f"normalize: std must be positive, got {std.tolist()}")
    return {"name": name, "mean": [float(v) for v in mean], "std": [float(v) for v in std]}


@dataclass(frozen=True)
class Preprocessing:
    """Scaling and normalisation of a model's input (see the module docstring).

    ``normalize`` is resolved (:func:`resolve_normalize`) for ``channels`` channels.
    """

    channels: int = 1
    scaling: str = "dtype"
    normalize: dict | None = None

    def __post_init__(self):
        if self.scaling not in SCALINGS:
            raise UnetlabError(f"scaling={self.scaling!r}: choose from {SCALINGS}")
        object.__setattr__(self, "normalize", resolve_normalize(self.normalize, self.channels))

    @classmethod
    def from_card(cls, card: dict) -> Preprocessing:
        inp = card.get("input") or {}
        return cls(channels=int(card["architecture"]["in_channels"]),
                   scaling=inp.get("scaling", "dtype"), normalize=inp.get("normalize"))

    def _stats(self, ndim: int):
        shape = (-1,) + (1,) * (ndim - 1)
        mean = np.asarray(self.normalize["mean"], dtype=np.float32).reshape(shape)
        std = np.asarray(self.normalize["std"], dtype=np.float32).reshape(shape)
        return mean, std

    def __call__(self, array: np.ndarray) -> np.ndarray:
        """``(C, *spatial)`` array of any dtype -> a new float32 array, scaled and
        normalised."""
        array = np.asarray(array)
        out = array.astype(np.float32)  # always a copy: the caller's data is untouched
        return self.apply_inplace(out, array.dtype)

    def apply_inplace(self, band: np.ndarray, source_dtype) -> np.ndarray:
        """Scale (by ``source_dtype``, the type the file stored) and normalise a float32
        ``(C, *spatial)`` band in place; returns it. The streaming predictor's path."""
        if band.shape[0] != self.channels:
            raise UnetlabError(f"the image has {band.shape[0]} channel(s), the model "
                               f"expects {self.channels}")
        factor = dtype_scale(source_dtype, self.scaling)
        if factor != 1.0:
            band *= np.float32(factor)
        if self.normalize is not None:
            mean, std = self._stats(band.ndim)
            band -= mean
            band /= std
        return band

    def band_function(self, source_dtype):
        """``f(band)`` applying :meth:`apply_inplace` for images stored as
        ``source_dtype`` (what ``iter_bands(preprocess=...)`` takes)."""
        return lambda band: self.apply_inplace(band, source_dtype)

    def normalize_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """Step 2 on a ``(C, *spatial)`` tensor already in unit range (datasets)."""
        if self.normalize is None:
            return tensor
        mean, std = self._stats(tensor.dim())
        return (tensor - torch.from_numpy(mean)) / torch.from_numpy(std)

    def to_card(self) -> dict:
        return {"scaling": self.scaling, "normalize": self.normalize}


def to_tensor(image, prep: Preprocessing | None = None) -> torch.Tensor:
    """A ``(H, W[, C])`` array from :func:`to_unit` (possibly augmented) -> a float32
    ``(C, H, W)`` tensor in unit range, then normalised by ``prep``. Single-threaded
    numpy (torch's intra-op threads would compete with the model in the main process)."""
    if isinstance(image, torch.Tensor):  # a transform that already made tensors
        tensor = image.float()
    else:
        image = np.asarray(image)
        if image.ndim == 2:
            image = image[:, :, None]
        chw = image.transpose(2, 0, 1)
        array = np.empty(chw.shape, dtype=np.float32)  # a copy: a cache stays intact
        if image.dtype == np.uint8:
            np.multiply(chw, np.float32(1.0 / 255.0), out=array, casting="unsafe")
        else:
            array[...] = chw
        tensor = torch.from_numpy(array)
    return prep.normalize_tensor(tensor) if prep is not None else tensor
