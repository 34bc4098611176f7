"""Winograd F(2x2, 3x3) convolution: equal to F.conv2d, used only where it pays off."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import unetlab
from unetlab.inference import optimize_for_inference
from unetlab.inference.winograd import (
    WinogradConv2d,
    apply_winograd,
    transform_weight,
    winograd_conv2d,
)


def close(got, ref, rel=5e-5):
    """Winograd F(4x4, 3x3) in fp32 is exact to about 1e-5 of the output's scale."""
    return bool((got - ref).abs().max() <= rel * ref.abs().max())


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("shape", [(1, 5, 8, 8), (2, 3, 7, 10), (3, 4, 9, 5), (1, 2, 3, 3),
                                   (1, 512, 9, 7)])
def test_winograd_equals_conv2d(shape, padding):
    g = torch.Generator().manual_seed(sum(shape) + padding)
    n, c, h, w = shape
    x = torch.randn(shape, generator=g)
    weight = torch.randn(6, c, 3, 3, generator=g)
    bias = torch.randn(6, generator=g)
    ref = F.conv2d(x, weight, bias, padding=padding)
    for layout in (torch.contiguous_format, torch.channels_last):
        got = winograd_conv2d(x.contiguous(memory_format=layout), transform_weight(weight),
                              bias, padding)
        assert got.shape == ref.shape
        assert close(got, ref)


def test_winograd_module_dispatches_by_shape_and_mode():
    conv = nn.Conv2d(256, 256, 3, padding=1)
    wino = WinogradConv2d(conv, ratio=4)
    small_map = torch.randn(1, 256, 8, 8)      # 256 * 256 >= 4 * 64: Winograd
    big_map = torch.randn(1, 256, 160, 160)    # 256 * 256 < 4 * 25600: oneDNN's convolution
    narrow = WinogradConv2d(nn.Conv2d(64, 64, 3, padding=1))
    with torch.inference_mode():
        assert wino.use_winograd(small_map) and not wino.use_winograd(big_map)
        assert not narrow.use_winograd(torch.randn(1, 64, 2, 2))  # too few channels
        assert close(wino(small_map), conv(small_map))
        assert torch.allclose(wino(big_map), conv(big_map), atol=1e-6)
    # with autograd on it is the ordinary convolution, gradients and all
    assert not wino.use_winograd(small_map)
    wino(small_map.requires_grad_()).sum().backward()
    assert small_map.grad is not None and conv.weight.grad is not None


def test_apply_winograd_replaces_only_what_it_can_compute():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, stride=2),
                          nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=2),
                          nn.Conv2d(8, 8, 3, padding=2), nn.Conv2d(8, 8, 3))
    apply_winograd(model)
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["WinogradConv2d", "Conv2d", "Conv2d", "Conv2d", "Conv2d",
                     "WinogradConv2d"]
    with pytest.raises(ValueError, match="3x3"):
        WinogradConv2d(nn.Conv2d(3, 3, 5))


@pytest.mark.parametrize("padding", ["same", "valid"])
def test_optimize_for_inference_uses_winograd_on_deep_layers(padding):
    torch.manual_seed(0)
    model = unetlab.create_model("unet", in_channels=1, num_classes=2, padding=padding,
                                 channels=(16, 32, 64, 128), norm="batch").eval()
    size = 44 if padding == "same" else 92
    x = torch.rand(1, 1, size, size)
    fast = optimize_for_inference(model)
    used = []
    for m in fast.net.modules():
        if isinstance(m, WinogradConv2d):
            m.register_forward_hook(lambda mod, inp, out: used.append(mod.use_winograd(inp[0])))
    with torch.no_grad():
        ref = model(x)
    got = fast(x)
    assert any(used) and not all(used)  # the bottom layers only
    assert (got - ref).abs().max() < 1e-4 * max(1.0, float(ref.abs().max()))
    off = optimize_for_inference(model, winograd=False)
    assert not any(isinstance(m, WinogradConv2d) for m in off.net.modules())
    assert not any(isinstance(m, WinogradConv2d)
                   for m in optimize_for_inference(model, precision="bf16").net.modules())


def test_winograd_follows_weight_changes_and_refuses_what_it_cannot_run():
    conv = nn.Conv2d(128, 128, 3, padding=1)
    wino = WinogradConv2d(conv)
    x = torch.randn(1, 128, 4, 4)
    with torch.inference_mode():
        assert wino.use_winograd(x)
        wino(x)
    with torch.no_grad():
        conv.weight.mul_(-2.0)  # in place, after the transformed weights were made
    with torch.inference_mode():
        assert close(wino(x), conv(x))
        conv.load_state_dict({"weight": torch.randn(128, 128, 3, 3), "bias": torch.zeros(128)})
        assert close(wino(x), conv(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not wino.use_winograd(x)
        conv.to(torch.bfloat16)
        assert not wino.use_winograd(x)  # bf16 weights: the ordinary (erroring) path


def test_apply_winograd_twice_changes_nothing():
    model = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())
    apply_winograd(apply_winograd(model))
    assert isinstance(model[0], WinogradConv2d) and type(model[0].conv) is nn.Conv2d
    with torch.inference_mode():
        x = torch.randn(1, 16, 4, 4)
        assert close(model(x), torch.relu(model[0].conv(x)))
