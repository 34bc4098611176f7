"""A model trained at a resolution scale, used at the image's own resolution.

``ScaledModel(model, 0.5)`` takes native-resolution tiles, shows the model the tiles
at half size (area averaging) and returns logits upsampled (bilinear) to the tiles'
size, so the tiled predictor, the label maps and the overlays stay at the input's
resolution. The model card's ``input.scale`` says which scale a model needs.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from ..data.resample import upsample_logits
from ..models.geometry import Geometry, geometry_of

_COPIED = ("in_channels", "num_classes", "spatial_dims", "device", "unetlab_card")


class ScaledModel:
    """A callable with ``model``'s contract that works at ``scale`` inside."""

    def __init__(self, model, scale: float):
        if not 0.0 < float(scale) <= 4.0:
            raise ValueError(f"scale must be in (0, 4], got {scale}")
        self.model, self.scale = model, float(scale)
        for name in _COPIED:
            if hasattr(model, name):
                setattr(self, name, getattr(model, name))
        geo = geometry_of(model)
        if geo.padding != "same":
            raise ValueError("a resolution scale needs a same-padding model")
        self._geometry = Geometry(spatial_dims=geo.spatial_dims,
                                  divisor=_native_multiple(geo.divisor, self.scale),
                                  padding="same", levels=geo.levels)

    def geometry(self) -> Geometry:
        """The wrapped model's geometry in native pixels (divisor grown by 1 / scale)."""
        return self._geometry

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return self.model(x)
        size = tuple(max(1, round(s * self.scale)) for s in x.shape[2:])
        mode = "area" if self.scale < 1.0 else "bilinear"
        kwargs = {} if mode == "area" else {"align_corners": False}
        small = torch.nn.functional.interpolate(x, size=size, mode=mode, **kwargs)
        logits = self.model(small)
        return torch.stack([upsample_logits(y, x.shape[2:]) for y in logits]).to(logits.dtype)

    def parameters(self):
        params = getattr(self.model, "parameters", None)
        return params() if callable(params) else iter(())


def _native_multiple(align: int, scale: float) -> int:
    """The smallest native tile multiple whose scaled size is a whole multiple of
    ``align`` (e.g. 32 for align 16 at scale 0.5), if it is at most 4x ``align / scale``;
    otherwise (a scale such as 0.37, exact for align 16 only at 1,600 px) ``align``
    itself: the scaled tile is rounded and the model pads it to its pooling multiple, as
    for any input size.

    Closed form (no search, so no scale makes it slow): for ``scale = p / q`` in lowest
    terms, ``m * p / q`` is a multiple of ``align`` first at ``m = align * q / gcd(p, align)``.
    """
    if not math.isfinite(align / scale):
        return align
    most = 4 * math.ceil(align / scale)
    frac = Fraction(scale).limit_denominator(most)
    if frac.numerator == 0:
        return align
    m = align * frac.denominator // math.gcd(frac.numerator, align)
    scaled = m * scale
    if m <= most and abs(scaled - round(scaled)) < 1e-6 and round(scaled) % align == 0 \
            and round(scaled):
        return m
    return align
