"""Winograd F(2x2, 3x3) convolution for CPU inference of the U-Net's deep layers.

A 3x3 convolution computes each 2x2 block of outputs from a 4x4 block of inputs. Winograd
(Lavin & Gray 2016) rewrites that block as 16 element-wise products in a transformed
space: 16 multiplications instead of 36, so the channel-mixing work, a batched matrix
product over the 16 positions, drops 2.25x; the price is the input and output
transforms, which are only additions but pass over the feature maps several times.

So it pays off where channel mixing dominates: many channels on a small feature map,
the bottom of a U-Net. On 2 CPU cores (fp32, oneDNN as the baseline) a 512->512
convolution on 32x32 maps ran 1.57x faster and 1024->1024 on 16x16 2.25x, while
64->64 on 256x256 ran 4x slower. :class:`WinogradConv2d` therefore decides per call,
from the input's shape: Winograd when ``in_channels * out_channels >= ratio * N * H * W``,
the ordinary convolution otherwise. Results match ``F.conv2d`` to float rounding
(relative error about 1e-6).

    G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]   (weights: U = G g G^T)
    B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]  (inputs: V = B^T d B)
    A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]                       (outputs: Y = A^T M A)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])

#: Winograd when in_channels * out_channels >= RATIO * (pixels of the batch)
RATIO = 12


def _input_transform(a0, a1, a2, a3):
    """The rows (or columns) of B^T d: four combinations of four strided views."""
    return a0 - a2, a1 + a2, a2 - a1, a1 - a3


class WinogradConv2d(nn.Module):
    """A 3x3, stride-1, ungrouped ``nn.Conv2d`` evaluated with Winograd F(2x2, 3x3) where
    that is faster (see the module docstring); inference only (no autograd)."""

    def __init__(self, conv: nn.Conv2d, ratio: float = RATIO):
        super().__init__()
        if not supports(conv):
            raise ValueError(f"WinogradConv2d needs a 3x3, stride-1, dilation-1, ungrouped "
                             f"Conv2d with zero padding 0 or 1, got {conv}")
        self.conv = conv
        self.padding = int(conv.padding[0])
        self.ratio = float(ratio)
        # the transformed weights (16/9 of the weights), made on first use and remade
        # whenever the weights change (in place, by load_state_dict, .to())
        self._u, self._u_key = None, None

    def use_winograd(self, x: torch.Tensor) -> bool:
        """Winograd only for plain fp32 CPU inference where it is the faster algorithm;
        autograd, autocast, other dtypes and devices get the ordinary convolution."""
        n, c, h, w = x.shape
        return (x.dtype == torch.float32 and self.conv.weight.dtype == torch.float32
                and x.device.type == "cpu" and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled("cpu")
                and min(h, w) + 2 * self.padding > 2
                and c * self.conv.out_channels >= self.ratio * n * h * w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.use_winograd(x):
            return self.conv(x)
        weight = self.conv.weight
        key = (weight.device, weight.data_ptr(), weight._version)
        if self._u_key != key:
            self._u, self._u_key = transform_weight(weight.detach()), key
        return winograd_conv2d(x, self._u, self.conv.bias, self.padding)


def transform_weight(weight: torch.Tensor) -> torch.Tensor:
    """``U = G g G^T`` for (K, C, 3, 3) weights, laid out as (16, C, K)."""
    g = _G.to(weight.device, weight.dtype)
    u = g @ weight @ g.T                                        # (K, C, 4, 4)
    return u.permute(2, 3, 1, 0).reshape(16, weight.shape[1], weight.shape[0]).contiguous()


def supports(conv: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1
            and conv.padding in ((0, 0), (1, 1)) and conv.padding_mode == "zeros")


def winograd_conv2d(x: torch.Tensor, u: torch.Tensor, bias=None, padding: int = 1):
    """``F.conv2d(x, g, bias, padding=padding)`` for a 3x3 kernel ``g`` given as its
    transform ``u`` (16, C, K) (:func:`transform_weight`). Returns channels-last
    (N, K, H', W')."""
    n, c, h, w = x.shape
    k = u.shape[2]
    out_h, out_w = h + 2 * padding - 2, w + 2 * padding - 2
    th, tw = (out_h + 1) // 2, (out_w + 1) // 2               # 2x2 output tiles
    xp = F.pad(x, (padding, 2 * tw + 2 - w - padding, padding, 2 * th + 2 - h - padding))
    xp = xp.permute(0, 2, 3, 1)                                # (N, Hp, Wp, C) view
    v = x.new_empty(16, n, th, tw, c)
    rows = _input_transform(*(xp[:, i:i + 2 * th:2] for i in range(4)))   # B^T d
    for i, row in enumerate(rows):                                          # (B^T d) B
        a = [row[:, :, j:j + 2 * tw:2] for j in range(4)]
        torch.sub(a[0], a[2], out=v[4 * i])
        torch.add(a[1], a[2], out=v[4 * i + 1])
        torch.sub(a[2], a[1], out=v[4 * i + 2])
        torch.sub(a[1], a[3], out=v[4 * i + 3])
    m = torch.bmm(v.view(16, -1, c), u).view(4, 4, n, th, tw, k)   # channel mixing
    if bias is not None:  # A^T e1 e1^T A is all ones: the bias enters through m[1][1]
        m[1, 1] += bias.to(m.dtype)
    s0 = m[0] + m[1]                                                # A^T M
    s0 += m[2]
    s1 = m[1] - m[2]
    s1 -= m[3]
    y = x.new_empty(n, th, 2, tw, 2, k)
    for r, s in enumerate((s0, s1)):                                # (A^T M) A
        out = y[:, :, r, :, 0]
        torch.add(s[0], s[1], out=out)
        out += s[2]
        out = y[:, :, r, :, 1]
        torch.sub(s[1], s[2], out=out)
        out -= s[3]
    y = y.view(n, 2 * th, 2 * tw, k)
    if (2 * th, 2 * tw) != (out_h, out_w):
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
