"""Winograd F(4x4, 3x3) convolution for CPU inference of the U-Net's deep layers.

A 3x3 convolution computes each 4x4 block of outputs from a 6x6 block of inputs. Winograd
(Lavin & Gray 2016, after Winograd 1980) rewrites that block as 36 element-wise products
in a transformed space instead of 144 multiply-adds, so the channel mixing, a batched
matrix product over the 36 positions, drops 4x; the price is the input and output
transforms (small fixed matrices applied to every tile) and some float accuracy: about
1e-5 relative error in fp32, against about 1e-7 for the direct convolution.

It pays off where channel mixing dominates: many channels on a small feature map. On
2 CPU cores (fp32, oneDNN's direct convolution as the baseline): 1024->1024 on 16x16
maps 2.3x faster, 512->512 on 32x32 2.2x, 256->256 on 64x64 1.8x, 256->256 on 128x128
1.3x; 256->128 and 128->128 on 128x128 no faster; 128->128 on 32x32 1.4x for one map,
0.7x for a batch of 4; 64->64 never faster. :class:`WinogradConv2d` therefore decides
per call, from the input's shape: Winograd when ``in_channels * out_channels >= ratio *
N * H * W`` (ratio 4 for layers of 256 channels or more, 16 for 128-255, never below
128), the ordinary convolution otherwise.

    G   (6x3): weights   U = G g G^T
    B^T (6x6): inputs    V = B^T d B
    A^T (4x6): outputs   Y = A^T M A,   M = U * V summed over input channels
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_G = torch.tensor([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                   [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]],
                  dtype=torch.float64)
_BT = torch.tensor([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                    [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                   dtype=torch.float64)
_AT = torch.tensor([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                    [0, 1, -1, 8, -8, 1]], dtype=torch.float64)
# the 2-D transforms of a flattened (row-major) tile: vec(B^T d B) = kron(B^T, B^T) vec(d)
_KB = torch.kron(_BT, _BT).float()   # (36, 36)
_KA = torch.kron(_AT, _AT).float()   # (16, 36)
_ONES = 7  # tile position (1, 1): column 1 of A^T is all ones, so a bias added to M there
#            reaches all 16 outputs of the tile

#: Winograd when in_channels * out_channels >= RATIO * (pixels of the batch) for layers of
#: 256+ channels, 4 * RATIO for 128-255 channels, never below MIN_CHANNELS
RATIO = 4
MIN_CHANNELS = 128


class WinogradConv2d(nn.Module):
    """A 3x3, stride-1, ungrouped ``nn.Conv2d`` evaluated with Winograd F(4x4, 3x3) where
    that is faster (see the module docstring); inference only (no autograd)."""

    def __init__(self, conv: nn.Conv2d, ratio: float = RATIO):
        super().__init__()
        if not supports(conv):
            raise ValueError(f"WinogradConv2d needs a 3x3, stride-1, dilation-1, ungrouped "
                             f"Conv2d with zero padding 0 or 1, got {conv}")
        self.conv = conv
        self.padding = int(conv.padding[0])
        self.ratio = float(ratio)
        # the transformed weights (4x the weights), made on first use and remade
        # whenever the weights change (in place, by load_state_dict, .to())
        self._u, self._u_key = None, None

    def use_winograd(self, x: torch.Tensor) -> bool:
        """Winograd only for plain fp32 CPU inference where it is the faster algorithm;
        autograd, autocast, other dtypes and devices get the ordinary convolution."""
        n, c, h, w = x.shape
        k = self.conv.out_channels
        # narrower layers need more channel mixing per pixel to pay for the transforms
        ratio = self.ratio if min(c, k) >= 256 else 4 * self.ratio
        return (x.dtype == torch.float32 and self.conv.weight.dtype == torch.float32
                and x.device.type == "cpu" and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled("cpu")
                and min(h, w) + 2 * self.padding > 2 and min(c, k) >= MIN_CHANNELS
                and c * k >= ratio * n * h * w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_winograd(x):
            return self.conv(x)
        weight = self.conv.weight
        key = (weight.device, weight.data_ptr(), weight._version)
        if self._u_key != key:
            self._u, self._u_key = transform_weight(weight.detach()), key
        return winograd_conv2d(x, self._u, self.conv.bias, self.padding)


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """``U = G g G^T`` for (K, C, 3, 3) weights, laid out as (36, C, K) (computed in
    float64, returned in the weights' dtype)."""
    g = _G.to(weight.device)
    u = g @ weight.double() @ g.T                               # (K, C, 6, 6)
    return (u.permute(2, 3, 1, 0).reshape(36, weight.shape[1], weight.shape[0])
            .to(weight.dtype).contiguous())


def supports(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding in ((0, 0), (1, 1)) and conv.padding_mode == "zeros")


def winograd_conv2d(x: torch.Tensor, u: torch.Tensor, bias=None, padding: int = 1):
    """``F.conv2d(x, g, bias, padding=padding)`` for a 3x3 kernel ``g`` given as its
    transform ``u`` (36, C, K) (:func:`transform_weight`). Returns channels-last
    (N, K, H', W')."""
    n, c, h, w = x.shape
    k = u.shape[2]
    out_h, out_w = h + 2 * padding - 2, w + 2 * padding - 2
    th, tw = -(-out_h // 4), -(-out_w // 4)                    # 4x4 output tiles
    xp = F.pad(x, (padding, 4 * tw + 2 - w - padding, padding, 4 * th + 2 - h - padding))
    xp = xp.permute(0, 2, 3, 1).contiguous()                   # (N, Hp, Wp, C)
    s_n, s_h, s_w, s_c = xp.stride()
    tiles = xp.as_strided((6, 6, n, th, tw, c), (s_h, s_w, s_n, 4 * s_h, 4 * s_w, s_c))
    d = tiles.reshape(36, -1)                                  # (36, T*C): one copy
    v = (_KB.to(x.device) @ d).view(36, -1, c)                 # B^T d B, all tiles at once
    m = torch.bmm(v, u)                                        # channel mixing (36, T, K)
    if bias is not None:
        m[_ONES] += bias.to(m.dtype)
    y = (_KA.to(x.device) @ m.view(36, -1)).view(4, 4, n, th, tw, k)   # A^T M A
    y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, 4 * th, 4 * tw, k)
    if (4 * th, 4 * tw) != (out_h, out_w):
        y = y[:, :out_h, :out_w].contiguous()
    return y.permute(0, 3, 1, 2)


def apply_winograd(model: nn.Module, ratio: float = RATIO) -> nn.Module:
    """Replace (in place) every supported Conv2d of ``model`` by a
    :class:`WinogradConv2d` that picks the faster algorithm per call. Returns ``model``."""
    for parent in list(model.modules()):
        if isinstance(parent, WinogradConv2d):  # already converted: leave its conv alone
            continue
        for name, child in list(parent.named_children()):
            if supports(child):
                setattr(parent, name, WinogradConv2d(child, ratio))
    return model
