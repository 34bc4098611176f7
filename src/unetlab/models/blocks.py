"""Building blocks shared by the U-Net family, each named after the paper's figure.

``DoubleConv`` (two 3x3 convolutions, the U-Net's basic unit), ``ResidualUnit``
(pre-activation residual unit of Res-UNet), ``AttentionGate`` (additive attention of
Attention U-Net), ``Upsample`` (transposed convolution, interpolation or max-unpooling)
and ``center_crop`` (the paper's cropping of skip maps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import layers

PADDINGS = ("same", "valid")
UPSAMPLES = ("transpose", "bilinear", "nearest", "unpool")


def check_input(x: torch.Tensor, in_channels: int, spatial_dims: int) -> None:
    """ValueError unless ``x`` is a floating-point ``(N, in_channels, *spatial)`` tensor
    with ``spatial_dims`` axes (TypeError for a non-tensor)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor (N, C, ...), got {type(x).__name__} "
                        "(torch.from_numpy(array).float())")
    if not x.is_floating_point():
        raise ValueError(f"expected a floating-point input, got {x.dtype}: scale it first "
                         "(x.float() / 255 for 8-bit images, or as the model card says)")
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            f"expected a {spatial_dims + 2}-D input (N, C, {', '.join('HWD'[:spatial_dims])}),"
            f" got shape {tuple(x.shape)}"
        )
    if x.shape[1] != in_channels:
        raise ValueError(
            f"expected {in_channels} input channels, got {x.shape[1]} (shape {tuple(x.shape)})"
        )


def center_crop(x: torch.Tensor, size) -> torch.Tensor:
    """Crop the trailing spatial axes of ``x`` to ``size`` around the centre.

    ``x`` itself when it already has that size (same padding: every skip map), so that
    an exported graph carries no Slice there: in OpenVINO's int8 graph such a no-op
    Slice cost reorders and float FakeQuantize steps on every skip path (U-Net
    64..1024 at 256x256 on an AMX CPU: 71 ms with them, 40 ms without).

    Traced, whether the sizes match is decided at the traced size. In this package's
    models the answer does not depend on the size (same padding: they always match;
    valid padding: the skip map is always larger, or always equal with unpooling); a
    model of your own whose sizes match only at some sizes must be traced at one where
    they do not."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    slices = [slice(None), slice(None)]
    for have, want in zip(x.shape[2:], size):
        if want > have:
            raise ValueError(f"cannot crop size {have} to larger {want}")
        start = (have - want) // 2
        slices.append(slice(start, start + want))
    return x[tuple(slices)]


def pad_to(x: torch.Tensor, size) -> torch.Tensor:
    """Zero-pad the trailing spatial axes of ``x`` up to ``size`` (split evenly)."""
    pads = []
    for have, want in reversed(list(zip(x.shape[2:], size))):
        extra = max(want - have, 0)
        pads += [extra // 2, extra - extra // 2]
    return F.pad(x, pads) if any(pads) else x


def conv_norm_act(spatial_dims, in_ch, out_ch, *, kernel=3, padding=1, norm=None, stride=1):
    """Convolution, optional normalisation, ReLU."""
    return nn.Sequential(
        layers.conv(spatial_dims)(
            in_ch, out_ch, kernel, stride=stride, padding=padding, bias=norm is None
        ),
        layers.norm(norm, spatial_dims, out_ch),
        nn.ReLU(inplace=True),
    )


class DoubleConv(nn.Sequential):
    """(3x3 conv -> [norm] -> ReLU) x 2: one box of the U-Net figure."""

    def __init__(self, spatial_dims, in_ch, out_ch, *, norm=None, padding="same", stride=1):
        pad = 1 if padding == "same" else 0
        super().__init__(
            conv_norm_act(spatial_dims, in_ch, out_ch, padding=pad, norm=norm, stride=stride),
            conv_norm_act(spatial_dims, out_ch, out_ch, padding=pad, norm=norm),
        )


class ResidualUnit(nn.Module):
    """Pre-activation residual unit (Zhang et al. 2018): [norm-ReLU-conv] x 2 + shortcut.

    The shortcut is a 1x1 projection (with norm) where channels or stride change.
    ``preactivate=False`` omits the leading norm-ReLU, as in the network's first unit.
    """

    def __init__(self, spatial_dims, in_ch, out_ch, *, norm="batch", padding="same",
                 stride=1, preactivate=True):
        super().__init__()
        conv = layers.conv(spatial_dims)
        pad = 1 if padding == "same" else 0
        pre = [layers.norm(norm, spatial_dims, in_ch), nn.ReLU()] if preactivate else []
        self.body = nn.Sequential(
            *pre,
            conv(in_ch, out_ch, 3, stride=stride, padding=pad, bias=norm is None),
            layers.norm(norm, spatial_dims, out_ch),
            nn.ReLU(),
            conv(out_ch, out_ch, 3, padding=pad),
        )
        if in_ch != out_ch or stride != 1:
            self.shortcut = nn.Sequential(
                conv(in_ch, out_ch, 1, stride=stride, bias=norm is None),
                layers.norm(norm, spatial_dims, out_ch),
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = self.body(x)
        short = self.shortcut(x)
        if short.shape[2:] != out.shape[2:]:  # valid padding shrinks the body
            short = center_crop(short, out.shape[2:])
        return out + short


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018).

    ``alpha = sigmoid(psi(relu(W_x x + up(W_g g))))`` with the gating signal ``g`` from
    the coarser level; the skip map ``x`` is returned multiplied by ``alpha``. The last
    coefficients (values in [0, 1], shape ``(N, 1, *spatial)``) are kept in
    ``last_attention`` for plots.
    """

    def __init__(self, spatial_dims, skip_ch, gate_ch, inter_ch=None):
        super().__init__()
        conv = layers.conv(spatial_dims)
        inter_ch = inter_ch or max(skip_ch // 2, 1)
        self.theta_x = conv(skip_ch, inter_ch, 1, bias=False)
        self.phi_g = conv(gate_ch, inter_ch, 1)
        self.psi = conv(inter_ch, 1, 1)
        self.mode = layers.interpolation_mode("bilinear", spatial_dims)
        self.last_attention: torch.Tensor | None = None

    def forward(self, x, g):
        g = F.interpolate(self.phi_g(g), size=x.shape[2:], mode=self.mode, align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(self.theta_x(x) + g)))
        self.last_attention = alpha.detach()
        return x * alpha


class Upsample(nn.Module):
    """Double the spatial size and halve the channels.

    ``"transpose"``: a learnable 2x2 stride-2 transposed convolution (U-Net paper).
    ``"bilinear"``/``"nearest"``: fixed interpolation then a 1x1 convolution (the course's
    FlexibleUNet). ``"unpool"``: a 1x1 convolution then max-unpooling with the indices
    saved by the encoder's pooling (SegNet's idea inside a U-Net).
    """

    def __init__(self, spatial_dims, in_ch, out_ch, mode="transpose"):
        super().__init__()
        layers.check_choice("upsample", mode, UPSAMPLES)
        self.mode = mode
        if mode == "transpose":
            self.op = layers.conv_transpose(spatial_dims)(in_ch, out_ch, 2, stride=2)
        else:
            self.op = layers.conv(spatial_dims)(in_ch, out_ch, 1)
        if mode == "unpool":
            self.unpool = layers.max_unpool(spatial_dims)(2, stride=2)
        self.interp = layers.interpolation_mode(mode, spatial_dims) if mode in (
            "bilinear", "nearest") else None

    def forward(self, x, indices=None, output_size=None):
        if self.mode == "transpose":
            return self.op(x)
        if self.mode == "unpool":
            if indices is None:
                raise ValueError('upsample="unpool" needs the pooling indices of the encoder')
            return self.unpool(self.op(x), indices, output_size=output_size)
        kwargs = {} if self.interp == "nearest" else {"align_corners": False}
        return self.op(F.interpolate(x, scale_factor=2, mode=self.interp, **kwargs))
