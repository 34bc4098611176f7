"""Layer look-ups by spatial dimension, so one model definition serves 2-D and 3-D.

``conv(spatial_dims)`` returns ``nn.Conv2d`` or ``nn.Conv3d`` and so on: models never
branch on ``if is3d``.
"""

from __future__ import annotations

import torch
from torch import nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
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
    """PyTorch's max-unpooling with one difference: traced (ONNX export) it scatters
    instead, since PyTorch's unpooling checks its output size with Python conditions
    that fail on a traced size (every SegNet export failed on them)."""
    return _MAX_UNPOOL[spatial_dims]


class _TraceableUnpool:
    """Mixin of the unpooling classes below (see :func:`max_unpool`)."""

    dims = 2

    def forward(self, x, indices, output_size=None):
        n = self.dims
        if not torch.jit.is_tracing() or x.dim() != n + 2:  # eager, or unbatched
            return super().forward(x, indices, output_size=output_size)
        if output_size is not None:
            size = tuple(output_size)
            if len(size) not in (n, n + 2):
                raise ValueError(f"output_size {size} must have {n} or {n + 2} entries")
            size = size[-n:]
        else:
            size = tuple((s - 1) * st - 2 * p + k for s, st, p, k in zip(
                x.shape[2:], _ntuple(self.stride, n), _ntuple(self.padding, n),
                _ntuple(self.kernel_size, n)))
        return scatter_unpool(x, indices, size)


class MaxUnpool1d(_TraceableUnpool, nn.MaxUnpool1d):
    dims = 1


class MaxUnpool2d(_TraceableUnpool, nn.MaxUnpool2d):
    dims = 2


class MaxUnpool3d(_TraceableUnpool, nn.MaxUnpool3d):
    dims = 3


_MAX_UNPOOL = {1: MaxUnpool1d, 2: MaxUnpool2d, 3: MaxUnpool3d}


def _ntuple(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, tuple | list) else (value,) * n


def scatter_unpool(x: torch.Tensor, indices: torch.Tensor, size) -> torch.Tensor:
    """Max-unpooling as a scatter: ``indices`` number the positions of each (sample,
    channel) plane of the ``size``-shaped output, as max-pooling returns them."""
    n, c = x.shape[:2]
    flat = x.new_zeros((n, c, *size)).flatten(2)
    return flat.scatter(2, indices.flatten(2), x.flatten(2)).view(n, c, *size)


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
