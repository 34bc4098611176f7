"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015) and the variants built from it.

Read alongside the paper's Figure 1::

    572² in ─ DoubleConv(64) ──────────────────────── concat ─ DoubleConv(64) ─ 1x1 ─ 388² out
                 └ maxpool ─ DoubleConv(128) ──── concat ─ DoubleConv(128) ┘ up
                      └ maxpool ─ DoubleConv(256) ─ concat ─ DoubleConv(256) ┘ up
                           └ maxpool ─ DoubleConv(512) ─ concat ─ DoubleConv(512) ┘ up
                                └ maxpool ─ DoubleConv(1024) ┘ up  (dropout: end of encoder)

One class covers the family through explicit options, not subclasses:

- ``padding="valid"``: the paper (unpadded 3x3 convolutions, skip maps centre-cropped);
  ``"same"``: output size = input size for any input (the input is mirror-padded to a
  multiple of 2**(levels-1) inside ``forward`` and the logits cropped back).
- ``upsample``: ``"transpose"`` (paper), ``"bilinear"`` / ``"nearest"`` (interpolation +
  1x1 conv), ``"unpool"`` (max-unpooling with the encoder's indices, as in SegNet).
- ``block="double_conv" | "residual"`` and ``downsample="maxpool" | "stride"``: Res-UNet.
- ``attention=True``: Attention U-Net's gates on the skip connections.
- ``skip_fusion="concat" | "sum" | "none"``: U-Net's concatenation, FCN-style summation,
  or no skip connections at all (the decoder sees only the upsampled map: an ablation).
"""

from __future__ import annotations

import contextlib
import operator

import torch
import torch.nn.functional as F
from torch import nn

from . import layers
from .blocks import (
    PADDINGS,
    AttentionGate,
    DoubleConv,
    ResidualUnit,
    Upsample,
    center_crop,
    check_input,
)
from .geometry import Geometry, valid_margin
from .registry import register_model

BLOCKS = ("double_conv", "residual")
DOWNSAMPLES = ("maxpool", "stride")
FUSIONS = ("concat", "sum", "none")


def _block(kind, spatial_dims, in_ch, out_ch, *, norm, padding, stride=1, first=False):
    if kind == "double_conv":
        return DoubleConv(spatial_dims, in_ch, out_ch, norm=norm, padding=padding, stride=stride)
    return ResidualUnit(spatial_dims, in_ch, out_ch, norm=norm, padding=padding,
                        stride=stride, preactivate=not first)


class UpLevel(nn.Module):
    """One step of the expanding path: upsample, [gate the skip], fuse, convolve."""

    def __init__(self, spatial_dims, in_ch, skip_ch, *, upsample, block, norm, padding,
                 attention, skip_fusion):
        super().__init__()
        self.up = Upsample(spatial_dims, in_ch, skip_ch, upsample)
        use_gate = attention and skip_fusion != "none"
        self.gate = AttentionGate(spatial_dims, skip_ch, in_ch) if use_gate else None
        self.skip_fusion = skip_fusion
        fused = 2 * skip_ch if skip_fusion == "concat" else skip_ch
        self.conv = _block(block, spatial_dims, fused, skip_ch, norm=norm, padding=padding)

    def forward(self, x, skip, indices=None):
        up = self.up(x, indices, output_size=skip.shape[2:])
        if self.skip_fusion == "none":
            return self.conv(up)
        if self.gate is not None:
            skip = self.gate(skip, x)
        skip = center_crop(skip, up.shape[2:])  # valid padding: the paper's cropping
        fused = torch.cat([skip, up], dim=1) if self.skip_fusion == "concat" else skip + up
        return self.conv(fused)


class UNet(nn.Module):
    """The U-Net family; see the module docstring for the options."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        spatial_dims: int = 2,
        channels=(64, 128, 256, 512, 1024),
        padding: str = "same",
        upsample: str = "transpose",
        norm: str | None = "batch",
        dropout: float = 0.0,
        block: str = "double_conv",
        downsample: str = "maxpool",
        attention: bool = False,
        skip_fusion: str = "concat",
    ):
        super().__init__()
        layers.check_spatial_dims(spatial_dims)
        layers.check_choice("padding", padding, PADDINGS)
        layers.check_choice("block", block, BLOCKS)
        layers.check_choice("downsample", downsample, DOWNSAMPLES)
        layers.check_choice("skip_fusion", skip_fusion, FUSIONS)
        layers.check_choice("norm", norm, layers.NORMS)
        if isinstance(channels, str):
            raise ValueError(f"channels must be a list of integer widths, got {channels!r}")
        channels = tuple(channels)
        try:
            if any(isinstance(c, bool) for c in channels):
                raise TypeError
            channels = tuple(operator.index(c) for c in channels)  # ints, numpy/torch ints
        except TypeError:
            raise ValueError(f"channels must be a list of integer widths, got {channels!r}") \
                from None
        if len(channels) < 2 or min(channels) < 1:
            raise ValueError(f"channels needs at least two positive widths, got {channels}")
        if upsample == "unpool" and downsample != "maxpool":
            raise ValueError('upsample="unpool" needs downsample="maxpool" (it reuses its indices)')
        self.in_channels, self.num_classes = in_channels, num_classes
        self.spatial_dims, self.padding = spatial_dims, padding
        self.levels = len(channels)
        self.keep_indices = upsample == "unpool"

        # Contracting path: a block per level, halving the size between levels.
        pool = layers.max_pool(spatial_dims)
        self.pool = pool(2, stride=2, return_indices=self.keep_indices)
        self.use_pool = downsample == "maxpool"
        self.encoder = nn.ModuleList()
        prev = in_channels
        for i, ch in enumerate(channels):
            stride = 2 if (i > 0 and not self.use_pool) else 1
            self.encoder.append(_block(block, spatial_dims, prev, ch, norm=norm,
                                       padding=padding, stride=stride, first=i == 0))
            prev = ch
        self.dropout = layers.dropout(spatial_dims, dropout)  # end of the contracting path

        # Expanding path: from the bottleneck back up to the first level.
        self.decoder = nn.ModuleList(
            UpLevel(spatial_dims, channels[i + 1], channels[i], upsample=upsample, block=block,
                    norm=norm, padding=padding, attention=attention, skip_fusion=skip_fusion)
            for i in reversed(range(self.levels - 1))
        )
        self.head = layers.conv(spatial_dims)(channels[0], num_classes, 1)

    @property
    def size_multiple(self) -> int:
        return 2 ** (self.levels - 1)

    def geometry(self) -> Geometry:
        """Size rules of this network (read by the tiler, export and the model card)."""
        valid = self.padding == "valid"
        return Geometry(spatial_dims=self.spatial_dims, divisor=self.size_multiple,
                        padding=self.padding, levels=self.levels,
                        margin=valid_margin(self.levels) if valid else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, self.spatial_dims)
        size = x.shape[2:]
        if self.padding == "same":
            x = _pad_to_multiple(x, self.size_multiple)
        else:
            _check_valid_size(size, self.levels)

        skips, indices = [], []
        for i, enc in enumerate(self.encoder):
            if i > 0 and self.use_pool:
                x = self.pool(x)
                if self.keep_indices:
                    x, idx = x
                    indices.append(idx)
            x = enc(x)
            skips.append(x)
        x = self.dropout(skips.pop())

        for up in self.decoder:
            x = up(x, skips.pop(), indices.pop() if indices else None)
        logits = self.head(x)
        if self.padding == "same":
            logits = logits[(slice(None), slice(None), *(slice(0, s) for s in size))]
        return logits

    def attention_maps(self) -> list[torch.Tensor]:
        """Attention coefficients of the last forward pass, finest level first."""
        gates = [up.gate for up in reversed(self.decoder) if up.gate is not None]
        return [g.last_attention for g in gates if g.last_attention is not None]


_PAD_WHEN_TRACED = False


@contextlib.contextmanager
def padding_in_graph():
    """Within this block a traced same-padding model records its padding to the pooling
    multiple, so that the exported graph takes any size as the model does (the amounts
    are computed from the input's shape at run time; mirror padding, chosen when traced).
    Outside it the graph expects a multiple and the caller pads, as unetlab's runners
    do: OpenVINO's int8 leaves the first convolution unquantized after a Pad."""
    global _PAD_WHEN_TRACED
    before, _PAD_WHEN_TRACED = _PAD_WHEN_TRACED, True
    try:
        yield
    finally:
        _PAD_WHEN_TRACED = before


def _pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the end of each spatial axis up to a multiple (mirror where possible)."""
    size = x.shape[2:]
    pads = []
    for s in reversed(size):
        pads += [0, (-s) % multiple]
    if not (_PAD_WHEN_TRACED and torch.jit.is_tracing()) and not any(pads):
        return x
    mode = "reflect" if all(p < s for p, s in zip(pads[1::2], reversed(size))) else "replicate"
    return F.pad(x, pads, mode=mode)


# ---- valid-padding geometry (the paper's overlap-tile arithmetic) --------------------

def valid_output_size(input_size: int, levels: int = 5) -> int:
    """Output size of a valid-padding U-Net for one spatial axis; ValueError if invalid.

    Each level's two 3x3 convolutions remove 4 pixels; pooling needs even sizes.
    ``valid_output_size(572) == 388``.
    """
    try:
        return _valid_output(input_size, levels)
    except ValueError:
        raise ValueError(_valid_msg(input_size, levels)) from None


def _valid_output(input_size: int, levels: int) -> int:
    s = input_size
    for _ in range(levels - 1):
        s -= 4
        if s <= 0 or s % 2:
            raise ValueError
        s //= 2
    s -= 4
    if s <= 0:
        raise ValueError
    for _ in range(levels - 1):
        s = 2 * s - 4
    if s <= 0:
        raise ValueError
    return s


def valid_input_size(output_size: int, levels: int = 5) -> int:
    """Smallest valid input size whose output is at least ``output_size`` pixels."""
    s = 1
    while not (_is_valid(s, levels) and _valid_output(s, levels) >= output_size):
        s += 1
    return s


def _valid_msg(size, levels):
    below = next((s for s in range(size - 1, 0, -1) if _is_valid(s, levels)), None)
    above = next(s for s in range(size + 1, size + 2**levels * 8) if _is_valid(s, levels))
    near = f"{below} or {above}" if below else str(above)
    return (f"input size {size} is not valid for a {levels}-level valid-padding U-Net"
            f" (nearest valid sizes: {near}); see unetlab.models.valid_input_size")


def _is_valid(size, levels):
    try:
        _valid_output(size, levels)
        return True
    except ValueError:
        return False


def _check_valid_size(size, levels):
    for s in size:
        valid_output_size(int(s), levels)


@register_model("unet")
def unet(in_channels, num_classes, spatial_dims=2, channels=(64, 128, 256, 512, 1024),
         padding="same", upsample="transpose", norm="batch", dropout=0.0,
         block="double_conv", downsample="maxpool", attention=False, skip_fusion="concat"):
    """U-Net (2015); defaults are the practical variant (same padding, batch norm)."""
    return UNet(in_channels, num_classes, spatial_dims, channels=channels, padding=padding,
                upsample=upsample, norm=norm, dropout=dropout, block=block,
                downsample=downsample, attention=attention, skip_fusion=skip_fusion)


@register_model("attention_unet")
def attention_unet(in_channels, num_classes, spatial_dims=2,
                   channels=(64, 128, 256, 512, 1024), padding="same", upsample="transpose",
                   norm="batch", dropout=0.0):
    """Attention U-Net (Oktay et al. 2018): U-Net with additive gates on every skip."""
    return UNet(in_channels, num_classes, spatial_dims, channels=channels, padding=padding,
                upsample=upsample, norm=norm, dropout=dropout, attention=True)
