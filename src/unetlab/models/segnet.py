"""SegNet (Badrinarayanan, Kendall & Cipolla, TPAMI 2017) and SegNet-Basic.

The encoder is VGG16's 13 convolutions with batch norm; each max-pooling remembers the
argmax positions, and the mirrored decoder puts values back at exactly those positions
(max-unpooling), leaving zeros elsewhere, before its convolutions densify the map. No
feature maps are carried across, only indices: that is where the memory saving is.
"""

from __future__ import annotations

import torch
from torch import nn

from . import layers
from .blocks import check_input, conv_norm_act
from .geometry import Geometry
from .registry import register_model
from .unet import _pad_to_multiple

# (input widths of each stage's convolutions, as in VGG16)
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class SegNet(nn.Module):
    """Encoder stages of convolutions + indexed max-pooling; decoder stages that unpool
    with those indices, then convolve.

    ``stages`` lists the widths of each encoder stage; the decoder mirrors them, its
    last convolution of each stage narrowing to the width of the stage above.
    """

    def __init__(self, in_channels, num_classes, spatial_dims=2, stages=VGG16_STAGES,
                 kernel_size=3, norm="batch", decoder_relu=True, classifier_kernel=3,
                 classifier_is_last_conv=True):
        super().__init__()
        layers.check_spatial_dims(spatial_dims)
        self.in_channels, self.num_classes = in_channels, num_classes
        self.spatial_dims = spatial_dims
        pad = kernel_size // 2
        self.pool = layers.max_pool(spatial_dims)(2, stride=2, return_indices=True)
        self.unpool = layers.max_unpool(spatial_dims)(2, stride=2)
        self.encoder = nn.ModuleList()
        prev = in_channels
        for widths in stages:
            convs = []
            for w in widths:
                convs.append(conv_norm_act(spatial_dims, prev, w, kernel=kernel_size,
                                           padding=pad, norm=norm))
                prev = w
            self.encoder.append(nn.Sequential(*convs))

        self.decoder = nn.ModuleList()
        for i in reversed(range(len(stages))):
            widths = list(stages[i])
            if i > 0:
                target = widths[:-1] + [stages[i - 1][-1]]
            else:  # the classifier stands in for the top stage's last convolution
                target = widths[:-1] if classifier_is_last_conv else widths
            convs, prev = [], widths[-1]
            for w in target:
                if decoder_relu:
                    convs.append(conv_norm_act(spatial_dims, prev, w, kernel=kernel_size,
                                               padding=pad, norm=norm))
                else:  # SegNet-Basic: convolution + batch norm, no ReLU in the decoder
                    convs.append(nn.Sequential(
                        layers.conv(spatial_dims)(prev, w, kernel_size, padding=pad),
                        layers.norm(norm, spatial_dims, w)))
                prev = w
            self.decoder.append(nn.Sequential(*convs))
        self.classifier = layers.conv(spatial_dims)(
            prev, num_classes, classifier_kernel, padding=classifier_kernel // 2)
        self.size_multiple = 2 ** len(stages)

    def geometry(self) -> Geometry:
        """Size rules of this network (read by the tiler, export and the model card)."""
        return Geometry(spatial_dims=self.spatial_dims, divisor=self.size_multiple,
                        levels=len(self.encoder) + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.spatial_dims)
        size = x.shape[2:]
        x = _pad_to_multiple(x, self.size_multiple)
        indices, sizes = [], []
        for stage in self.encoder:
            x = stage(x)
            sizes.append(x.shape[2:])
            x, idx = self.pool(x)
            indices.append(idx)
        for stage in self.decoder:
            x = self.unpool(x, indices.pop(), output_size=sizes.pop())
            x = stage(x)
        x = self.classifier(x)
        return x[(slice(None), slice(None), *(slice(0, s) for s in size))]


@register_model("segnet")
def segnet(in_channels, num_classes, spatial_dims=2, norm="batch", width=1.0):
    """SegNet: VGG16-BN encoder (13 convolutions), mirrored decoder, indexed unpooling.
    ``width`` scales every channel count (1.0 is the paper's network; 0.25 gives
    16..128 channels for a CPU comparison), as FCN's ``width`` does."""
    if not isinstance(width, (int, float)) or isinstance(width, bool) or not 0 < width <= 4:
        raise ValueError(f"segnet width is a multiplier of VGG16's channels in (0, 4] (1.0 = "
                         f"the paper), got {width!r}; segnet_basic's width is a channel count")
    stages = tuple(tuple(max(1, round(c * width)) for c in stage) for stage in VGG16_STAGES)
    return SegNet(in_channels, num_classes, spatial_dims, stages=stages, norm=norm)


@register_model("segnet_basic")
def segnet_basic(in_channels, num_classes, spatial_dims=2, width=64, kernel_size=7,
                 norm="batch"):
    """SegNet-Basic: 4 encoder + 4 decoder layers of ``width`` 7x7 filters, 1x1 classifier."""
    return SegNet(in_channels, num_classes, spatial_dims, stages=((width,),) * 4,
                  kernel_size=kernel_size, norm=norm, decoder_relu=False, classifier_kernel=1,
                  classifier_is_last_conv=False)
