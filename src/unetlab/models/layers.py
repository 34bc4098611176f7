"""Layer look-ups by spatial dimension, so one model definition serves 2-D and 3-D.

``conv(spatial_dims)`` returns ``nn.Conv2d`` or ``nn.Conv3d`` and so on: models never
branch on ``if is3d``.
"""

from __future__ import annotations

from torch import nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_MAX_UNPOOL = {1: nn.MaxUnpool1d, 2: nn.MaxUnpool2d, 3: nn.MaxUnpool3d}
_BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_DROPOUT = {1: nn.Dropout1d, 2: nn.Dropout2d, 3: nn.Dropout3d}

NORMS = (None, "batch", "instance", "group")
INTERPOLATION = {"bilinear": {1: "linear", 2: "bilinear", 3: "trilinear"}, "nearest": {}}


def check_choice(name: str, value, valid) -> None:
    """Raise ValueError naming the valid options when ``value`` is not one of them."""
    if value not in valid:
        raise ValueError(f"{name}={value!r} is not valid; choose one of {list(valid)}")


def check_spatial_dims(spatial_dims: int, supported=(2, 3)) -> None:
    check_choice("spatial_dims", spatial_dims, supported)


def conv(spatial_dims: int) -> type[nn.Module]:
    return _CONV[spatial_dims]


def conv_transpose(spatial_dims: int) -> type[nn.Module]:
    return _CONV_T[spatial_dims]


def max_pool(spatial_dims: int) -> type[nn.Module]:
    return _MAX_POOL[spatial_dims]


def max_unpool(spatial_dims: int) -> type[nn.Module]:
    return _MAX_UNPOOL[spatial_dims]


def dropout(spatial_dims: int, p: float) -> nn.Module:
    """Channel dropout (whole feature maps), or identity when ``p == 0``."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout={p!r} must be in [0, 1)")
    return _DROPOUT[spatial_dims](p) if p > 0 else nn.Identity()


def norm(kind: str | None, spatial_dims: int, channels: int, groups: int = 8) -> nn.Module:
    """Normalisation layer by name: None (identity), "batch", "instance" or "group"."""
    check_choice("norm", kind, NORMS)
    if kind is None:
        return nn.Identity()
    if kind == "batch":
        return _BATCH_NORM[spatial_dims](channels)
    if kind == "instance":
        return _INSTANCE_NORM[spatial_dims](channels, affine=True)
    g = groups
    while channels % g:  # largest divisor of channels not above `groups`
        g -= 1
    return nn.GroupNorm(g, channels)


def interpolation_mode(kind: str, spatial_dims: int) -> str:
    """torch interpolate mode for "bilinear" (linear in any dimension) or "nearest"."""
    return INTERPOLATION[kind].get(spatial_dims, kind)
