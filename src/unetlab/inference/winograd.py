"""Winograd F(4x4, 3x3) convolution for CPU inference and training of the U-Net's deep
layers.

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

Training (:func:`use_in_training`, which ``unetlab train`` applies in float32 on the CPU)
transforms the weights at every step and has a backward of its own; its rule is
:func:`pays_in_training`.

    G   (6x3): weights   U = G g G^T
    B^T (6x6): inputs    V = B^T d B
    A^T (4x6): outputs   Y = A^T M A,   M = U * V summed over input channels
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

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
    v, geometry = _input_tiles(x, padding)
    m = torch.bmm(v, u)                                        # channel mixing (36, T, K)
    if bias is not None:
        m[_ONES] += bias.to(m.dtype)
    return _output_tiles(m, geometry)


def _input_tiles(x: torch.Tensor, padding: int):
    """``V = B^T d B`` of every 6x6 input tile (stride 4), as (36, T, C), and the geometry
    ``(N, tiles down, tiles across, H', W')`` that :func:`_output_tiles` needs."""
    n, c, h, w = x.shape
    out_h, out_w = h + 2 * padding - 2, w + 2 * padding - 2
    th, tw = -(-out_h // 4), -(-out_w // 4)                    # 4x4 output tiles
    xp = F.pad(x, (padding, 4 * tw + 2 - w - padding, padding, 4 * th + 2 - h - padding))
    xp = xp.permute(0, 2, 3, 1).contiguous()                   # (N, Hp, Wp, C)
    s_n, s_h, s_w, s_c = xp.stride()
    tiles = xp.as_strided((6, 6, n, th, tw, c), (s_h, s_w, s_n, 4 * s_h, 4 * s_w, s_c))
    d = tiles.reshape(36, -1)                                  # (36, T*C): one copy
    v = (_KB.to(x.device, x.dtype) @ d).view(36, -1, c)        # B^T d B, all tiles at once
    return v, (n, th, tw, out_h, out_w)


def _output_tiles(m: torch.Tensor, geometry) -> torch.Tensor:
    """``Y = A^T M A`` of (36, T, K) tile products: (N, K, H', W') in channels-last memory."""
    n, th, tw, out_h, out_w = geometry
    k = m.shape[2]
    y = (_KA.to(m.device, m.dtype) @ m.reshape(36, -1)).view(4, 4, n, th, tw, k)
    y = y.permute(2, 3, 0, 4, 1, 5).reshape(n, 4 * th, 4 * tw, k)
    if (4 * th, 4 * tw) != (out_h, out_w):
        y = y[:, :out_h, :out_w].contiguous()
    return y.permute(0, 3, 1, 2)


# ---- training -----------------------------------------------------------------------
#
# Inference caches the transformed weights; training changes them every step, so there
# the transform is part of the step (one (K*C, 9) x (9, 36) product forward and one back)
# and Winograd pays only where enough pixels share it. Measured per layer, forward +
# backward against oneDNN's direct convolution, 2 threads, batch 2, C -> C channels, one
# run per kind of kernels (docs/inference.md, "Winograd in training";
# benchmarks/bench_winograd_training.py): where the rule below picks it, 192-512 channels
# were 1.56-2.25x faster with AVX2 kernels and 1.06-1.78x with AVX-512 kernels; 128
# channels gained at most 1.21x with AVX2 kernels and lost with AVX-512 ones (hence
# :func:`.cpu.training_winograd`'s 192); on 288-512 pixels 512-1024 channels were
# 0.38-1.08x (hence the minimum of pixels).

#: Winograd in training where min(C, K) >= TRAIN_MIN_CHANNELS (on CPUs where
#: :func:`.cpu.training_winograd` allows it), the batch has at least TRAIN_MIN_PIXELS
#: pixels and C * K >= TRAIN_RATIO * those pixels
TRAIN_MIN_CHANNELS = 192
TRAIN_MIN_PIXELS = 1024
TRAIN_RATIO = 4
_KG = torch.kron(_G, _G)           # (36, 9), float64 like _G: vec(G g G^T) = kron(G, G) vec(g)


def pays_in_training(shape, out_channels: int, min_channels: int, padding: int = 1) -> bool:
    """Whether a training step of a 3x3 convolution on an input of ``shape`` (N, C, H, W)
    is faster with Winograd (the rule above)."""
    n, c, h, w = shape
    pixels = n * h * w
    return (min(c, out_channels) >= min_channels and pixels >= TRAIN_MIN_PIXELS
            and c * out_channels >= TRAIN_RATIO * pixels and min(h, w) + 2 * padding > 2)


class _WinogradTraining(torch.autograd.Function):
    """Winograd F(4x4, 3x3) with its own backward: every step of the forward is linear,
    so the backward is the same transforms transposed, with two batched products (for the
    inputs' and the weights' gradients) that are 4x smaller than the direct convolution's."""

    @staticmethod
    def forward(ctx, x, weight, bias, padding: int):
        k, c = weight.shape[:2]
        u = (_KG.to(weight.device, weight.dtype) @ weight.reshape(k * c, 9).T).view(36, k, c)
        v, geometry = _input_tiles(x, padding)
        m = torch.bmm(v, u.transpose(1, 2))                    # (36, T, K)
        if bias is not None:
            m[_ONES] += bias
        y = _output_tiles(m, geometry)
        # the inputs' gradient needs the weights' transform, the weights' the inputs'
        ctx.save_for_backward(v if ctx.needs_input_grad[1] else None,
                              u if ctx.needs_input_grad[0] else None)
        ctx.geometry, ctx.shape, ctx.padding = geometry, x.shape, padding
        ctx.channels_last = x.is_contiguous(memory_format=torch.channels_last)
        ctx.has_bias = bias is not None
        return y if ctx.channels_last else y.contiguous()      # the input's layout

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        v, u = ctx.saved_tensors
        n, th, tw, out_h, out_w = ctx.geometry
        _, c, h, w = ctx.shape
        k, p = grad.shape[1], ctx.padding
        g = grad.permute(0, 2, 3, 1)                           # (N, H', W', K)
        if (4 * th, 4 * tw) != (out_h, out_w):
            g = F.pad(g, (0, 0, 0, 4 * tw - out_w, 0, 4 * th - out_h))
        g = g.contiguous()
        s_n, s_h, s_w, s_k = g.stride()
        g = g.as_strided((4, 4, n, th, tw, k), (s_h, s_w, s_n, 4 * s_h, 4 * s_w, s_k))
        gm = (_KA.to(g.device, g.dtype).T @ g.reshape(16, -1)).view(36, -1, k)  # (36, T, K)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            gv = torch.bmm(gm, u)                              # (36, T, C)
            gd = (_KB.to(gv.device, gv.dtype).T @ gv.view(36, -1)).view(6, 6, n, th, tw, c)
            gxp = gv.new_zeros(n, 4 * th + 2, 4 * tw + 2, c)   # overlapping tiles add up
            for i in range(6):
                for j in range(6):
                    gxp[:, i:i + 4 * th:4, j:j + 4 * tw:4] += gd[i, j]
            grad_x = gxp[:, p:p + h, p:p + w].permute(0, 3, 1, 2)
            grad_x = grad_x.contiguous(memory_format=torch.channels_last
                                       if ctx.channels_last else torch.contiguous_format)
        if ctx.needs_input_grad[1]:
            gu = torch.bmm(gm.transpose(1, 2), v)              # (36, K, C)
            grad_w = (gu.view(36, k * c).T @ _KG.to(gu.device, gu.dtype)).view(k, c, 3, 3)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None


class TrainingWinogradConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters, same state dict) whose fp32 CPU forward and
    backward run as Winograd where :func:`pays_in_training`; everything else (no
    gradient wanted, other dtypes and devices, autocast, shapes where it does not pay) is
    the ordinary convolution. Made by :func:`use_in_training`, which swaps the class in
    place; export and :func:`apply_winograd` want plain ``nn.Conv2d`` layers
    (:func:`stop_in_training`)."""

    winograd_min_channels: int = TRAIN_MIN_CHANNELS

    def _conv_forward(self, x, weight, bias):
        # (under no_grad, e.g. validation, the ordinary convolution: the same numbers as
        # evaluating the saved model, and no per-call weight transform)
        if (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
                and x.device.type == "cpu" and x.dtype == torch.float32
                and weight.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")
                and pays_in_training(x.shape, self.out_channels, self.winograd_min_channels,
                                     int(self.padding[0]))):
            return _WinogradTraining.apply(x, weight, bias, int(self.padding[0]))
        return super()._conv_forward(x, weight, bias)


def use_in_training(model: nn.Module, min_channels: int) -> int:
    """Let every supported 3x3 convolution of ``model`` train with Winograd where it pays
    (in place: the modules keep their parameters and state-dict keys). Returns how many
    convolutions may use it; :func:`stop_in_training` undoes it."""
    count = 0
    for module in model.modules():
        if supports(module) or type(module) is TrainingWinogradConv2d:
            module.__class__ = TrainingWinogradConv2d
            module.winograd_min_channels = int(min_channels)
            count += 1
    return count


def stop_in_training(model: nn.Module) -> None:
    """Turn the convolutions :func:`use_in_training` changed back into ``nn.Conv2d``."""
    for module in model.modules():
        if type(module) is TrainingWinogradConv2d:
            module.__class__ = nn.Conv2d
            module.__dict__.pop("winograd_min_channels", None)


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


# ---- in an exported graph (OpenVINO) ---------------------------------------------------

#: Winograd in the OpenVINO runners' fp32 graphs where min(C, K) >= GRAPH_MIN_CHANNELS and
#: C * K >= ratio * N * H * W at the expected input shape (:func:`apply_graph_winograd`)
GRAPH_MIN_CHANNELS = 256


class GraphWinogradConv2d(nn.Module):
    """A 3x3 convolution as Winograd F(4x4, 3x3) written in operators an ONNX graph holds
    (a convolution with fixed weights for the input tiles' transform, a batched MatMul for
    the channel mixing and a small MatMul for the output transform), so that a runtime
    without Winograd kernels of its own (OpenVINO) computes it; any input size (tiles
    padded, output cropped), the same values as the convolution to about 1e-5 of the
    output's scale.

    Input transform: a 6x6, stride-4 convolution with 36 fixed filters on each channel
    (filter (a, b) is the outer product of rows a and b of B^T); output transform: a
    (16, 36) MatMul from the 36 products to the 16 outputs of a tile, then one transpose
    into place (measured per layer against a fixed 1x1 convolution and depth-to-space,
    which OpenVINO wrapped in layout reorders: 1.05-1.2x faster)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if not supports(conv):
            raise ValueError(f"GraphWinogradConv2d needs a 3x3, stride-1, ungrouped Conv2d "
                             f"with zero padding 0 or 1, got {conv}")
        w = conv.weight.detach()
        self.in_channels, self.out_channels = w.shape[1], w.shape[0]
        self.padding = int(conv.padding[0])
        self.register_buffer("u", transform_weight(w).transpose(1, 2).contiguous())  # (36, K, C)
        bias = conv.bias.detach().reshape(1, -1, 1, 1) if conv.bias is not None else None
        self.register_buffer("bias", bias)
        # filter (a, b) = outer(B^T[a], B^T[b]): the rows of kron(B^T, B^T) as 6x6 kernels
        self.register_buffer("tile_in", _KB.reshape(36, 1, 6, 6).to(w.dtype).clone())
        self.register_buffer("tile_out", _KA.to(w.dtype).clone())        # (16, 36)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(*self.mix(x))

    def mix(self, x: torch.Tensor):
        """The tile products ``M`` (36, K, tiles) and the geometry :meth:`finish` needs."""
        n, c, h, w = x.shape
        p = self.padding
        out_h, out_w = h + 2 * p - 2, w + 2 * p - 2
        th, tw = (out_h + 3) // 4, (out_w + 3) // 4                     # 4x4 output tiles
        xp = F.pad(x, (p, 4 * tw + 2 - w - p, p, 4 * th + 2 - h - p))
        v = F.conv2d(xp.reshape(n * c, 1, 4 * th + 2, 4 * tw + 2), self.tile_in, stride=4)
        v = v.reshape(n, c, 36, -1).permute(2, 1, 0, 3).reshape(36, c, -1)  # (36, C, T)
        return torch.matmul(self.u, v), (n, th, tw, out_h, out_w)       # (36, K, T)

    def finish(self, m: torch.Tensor, geometry) -> torch.Tensor:
        """``Y = A^T M A`` of every tile, cropped, plus the bias: (N, K, H', W')."""
        n, th, tw, out_h, out_w = geometry
        k = self.out_channels
        y = torch.matmul(self.tile_out, m.reshape(36, -1))              # (16, K*T)
        y = y.reshape(4, 4, k, n, th, tw).permute(3, 2, 4, 0, 5, 1)     # (N, K, th, 4, tw, 4)
        y = y.reshape(n, k, 4 * th, 4 * tw)[:, :, :out_h, :out_w]
        return y if self.bias is None else y + self.bias


def graph_winograd_sum(a: GraphWinogradConv2d, xa: torch.Tensor, b: GraphWinogradConv2d,
                       xb: torch.Tensor) -> torch.Tensor:
    """``a(xa) + b(xb)`` (same output size and channels) with the tile products summed
    before one output transform (a U-Net decoder level's ``conv(skip) + conv(up)``)."""
    ma, geometry = a.mix(xa)
    mb, _ = b.mix(xb)
    y = a.finish(ma + mb, geometry)
    return y if b.bias is None else y + b.bias


def conv_input_shapes(model: nn.Module, shape) -> dict:
    """The input shape of each supported convolution of ``model`` (by module) for an input
    of ``shape``, from one pass of a copy on the meta device (shapes, no arithmetic)."""
    import copy

    shapes = {}
    twin = copy.deepcopy(model).to("meta")  # (thrown away with its hooks)
    originals = dict(zip(twin.modules(), model.modules()))

    def record(module, args):
        shapes.setdefault(originals[module], tuple(args[0].shape))

    for module in twin.modules():
        if supports(module):
            module.register_forward_pre_hook(record)
    with torch.no_grad():
        twin(torch.zeros(shape, device="meta"))
    return shapes


def apply_graph_winograd(model: nn.Module, shape, ratio: float = RATIO,
                         min_channels: int = GRAPH_MIN_CHANNELS) -> int:
    """Replace (in place) each supported Conv2d of ``model`` for which Winograd pays at an
    input of ``shape`` (``min(C, K) >= min_channels`` and ``C * K >= ratio * N * H * W``
    at the layer) by a :class:`GraphWinogradConv2d`, for export. Returns how many."""
    chosen = {m for m, (n, c, h, w) in conv_input_shapes(model, shape).items()
              if min(c, m.out_channels) >= min_channels and c * m.out_channels >= ratio * n * h * w
              and min(h, w) + 2 * int(m.padding[0]) > 2}
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if child in chosen:
                setattr(parent, name, GraphWinogradConv2d(child))
                count += 1
    return count
