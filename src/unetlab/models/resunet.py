"""Res-UNet (Zhang, Liu & Wang, "Road extraction by deep residual U-Net", 2018).

A U-Net whose boxes are pre-activation residual units (norm-ReLU-conv, twice, plus a
shortcut) and whose encoder halves the size with stride-2 convolutions instead of
max-pooling. Published configuration: widths 64-128-256 and a 512 bridge.
"""

from __future__ import annotations

from .registry import register_model
from .unet import UNet


@register_model("resunet")
def resunet(in_channels, num_classes, spatial_dims=2, channels=(64, 128, 256, 512),
            padding="same", upsample="nearest", norm="batch", dropout=0.0, attention=False):
    """Res-UNet: ``UNet(block="residual", downsample="stride")``."""
    return UNet(in_channels, num_classes, spatial_dims, channels=channels, padding=padding,
                upsample=upsample, norm=norm, dropout=dropout, block="residual",
                downsample="stride", attention=attention)
