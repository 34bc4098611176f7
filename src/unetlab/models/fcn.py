"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell, CVPR 2015).

VGG16's convolutions, with its fully connected fc6/fc7 recast as 7x7 and 1x1
convolutions, give a coarse score map at 1/32 of the input. FCN-32s upsamples it 32x
in one learnable transposed convolution; FCN-16s and FCN-8s first add (sum, not
concatenate) score maps predicted from pool4 and pool3. Every transposed convolution
starts as exact bilinear interpolation. The input is padded to a multiple of 32 and the
output cropped back to the input size.

``width`` scales every channel count (1.0 is the paper's ~134 M-parameter network;
0.125 trains on a CPU).
"""

from __future__ import annotations

import torch
from torch import nn

from . import layers
from .blocks import check_input, conv_norm_act
from .geometry import Geometry
from .registry import register_model
from .segnet import VGG16_STAGES
from .unet import _pad_to_multiple


def bilinear_kernel(channels: int, kernel_size: int, spatial_dims: int = 2) -> torch.Tensor:
    """Weights ``(channels, channels, k, ..., k)`` of a transposed convolution that does
    bilinear (trilinear in 3-D) upsampling, channel by channel."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d
    for _ in range(spatial_dims - 1):
        filt = filt.unsqueeze(-1) * filt1d
    weight = torch.zeros((channels, channels) + (kernel_size,) * spatial_dims, dtype=torch.float64)
    for c in range(channels):
        weight[c, c] = filt
    return weight.float()


def _upscore(spatial_dims, channels, factor):
    up = layers.conv_transpose(spatial_dims)(
        channels, channels, 2 * factor, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        up.weight.copy_(bilinear_kernel(channels, 2 * factor, spatial_dims))
    return up


class FCN(nn.Module):
    """VGG16 backbone, convolutionalised fc6/fc7, skip scores fused by summation."""

    def __init__(self, in_channels, num_classes, spatial_dims=2, stride=32, width=1.0,
                 norm=None, dropout=0.5):
        super().__init__()
        layers.check_spatial_dims(spatial_dims)
        layers.check_choice("stride", stride, (32, 16, 8))
        if not width > 0:
            raise ValueError(f"width must be positive, got {width!r}")
        self.in_channels, self.num_classes = in_channels, num_classes
        self.spatial_dims = spatial_dims
        self.stride = stride
        conv = layers.conv(spatial_dims)
        w = [[max(1, round(c * width)) for c in stage] for stage in VGG16_STAGES]
        fc = max(1, round(4096 * width))
        self.stages = nn.ModuleList()
        prev = in_channels
        for stage in w:
            blocks = []
            for c in stage:
                blocks.append(conv_norm_act(spatial_dims, prev, c, norm=norm))
                prev = c
            blocks.append(layers.max_pool(spatial_dims)(2, stride=2))
            self.stages.append(nn.Sequential(*blocks))
        self.fc = nn.Sequential(
            conv(prev, fc, 7, padding=3), nn.ReLU(inplace=True),
            layers.dropout(spatial_dims, dropout),
            conv(fc, fc, 1), nn.ReLU(inplace=True), layers.dropout(spatial_dims, dropout),
        )
        self.score_fr = conv(fc, num_classes, 1)
        self.upscore_final = _upscore(spatial_dims, num_classes, stride)
        if stride <= 16:
            self.score_pool4 = _zero(conv(w[3][-1], num_classes, 1))
            self.upscore2 = _upscore(spatial_dims, num_classes, 2)
        if stride == 8:
            self.score_pool3 = _zero(conv(w[2][-1], num_classes, 1))
            self.upscore_pool4 = _upscore(spatial_dims, num_classes, 2)

    def geometry(self) -> Geometry:
        """Size rules of this network (read by the tiler, export and the model card):
        inputs are padded to a multiple of 32 (five poolings)."""
        return Geometry(spatial_dims=self.spatial_dims, divisor=32, levels=6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.spatial_dims)
        size = x.shape[2:]
        x = _pad_to_multiple(x, 32)
        pools = []
        for stage in self.stages:
            x = stage(x)
            pools.append(x)
        score = self.score_fr(self.fc(x))  # 1/32
        if self.stride <= 16:  # fuse pool4 by summation at 1/16
            score = self.upscore2(score) + self.score_pool4(pools[3])
        if self.stride == 8:  # and pool3 at 1/8
            score = self.upscore_pool4(score) + self.score_pool3(pools[2])
        out = self.upscore_final(score)
        return out[(slice(None), slice(None), *(slice(0, s) for s in size))]


def _zero(module):
    nn.init.zeros_(module.weight)
    nn.init.zeros_(module.bias)
    return module


def _fcn_builder(stride):
    def build(in_channels, num_classes, spatial_dims=2, width=1.0, norm=None, dropout=0.5):
        return FCN(in_channels, num_classes, spatial_dims, stride=stride, width=width,
                   norm=norm, dropout=dropout)

    build.__name__ = f"fcn{stride}s"
    build.__doc__ = f"FCN-{stride}s (Long et al. 2015): VGG16 backbone, {stride}x final upsampling."
    return build


for _stride in (32, 16, 8):
    register_model(f"fcn{_stride}s", _fcn_builder(_stride))
