"""Winograd F(4x4, 3x3) convolution: equal to F.conv2d, used only where it pays off, in
inference and in training."""

from __future__ import annotations

import contextlib

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
    fast = optimize_for_inference(model, winograd=True)  # (the default follows the CPU)
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


# ---- training --------------------------------------------------------------------------

@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("shape,out,channels_last", [((2, 6, 13, 9), 5, False),
                                                     ((1, 4, 8, 8), 7, True),
                                                     ((2, 3, 3, 17), 4, False)])
def test_winograd_training_forward_and_backward_equal_conv2d(shape, out, channels_last,
                                                             padding):
    """The hand-written backward is the exact transpose of the forward: in float64 both
    match F.conv2d's values and all three gradients to rounding."""
    from unetlab.inference.winograd import _WinogradTraining

    g = torch.Generator().manual_seed(sum(shape) + out + padding)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    weight = torch.randn(out, shape[1], 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(out, generator=g, dtype=torch.float64)
    for t in (x, weight, bias):
        t.requires_grad_()
    got = _WinogradTraining.apply(x, weight, bias, padding)
    ref = F.conv2d(x, weight, bias, padding=padding)
    grad = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    got_grads = torch.autograd.grad(got, (x, weight, bias), grad)
    ref_grads = torch.autograd.grad(ref, (x, weight, bias), grad)
    assert got.shape == ref.shape
    assert close(got.detach(), ref.detach(), rel=1e-12)
    for a, b in zip(got_grads, ref_grads):
        assert a.shape == b.shape and close(a, b, rel=1e-12)
    # the input's layout is kept, forward and back
    assert got.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert got_grads[0].is_contiguous(memory_format=torch.channels_last) == channels_last


def test_winograd_training_rule():
    from unetlab.inference.winograd import pays_in_training

    assert pays_in_training((2, 256, 32, 32), 256, 192)        # 2,048 pixels, 256 channels
    assert pays_in_training((2, 1024, 32, 32), 512, 192)
    assert not pays_in_training((2, 1024, 16, 16), 1024, 192)  # 512 pixels: too few
    assert not pays_in_training((2, 128, 32, 32), 128, 192)    # below this CPU's minimum
    assert pays_in_training((2, 128, 32, 32), 128, 128)
    assert not pays_in_training((2, 256, 96, 96), 256, 192)    # too many pixels a channel
    assert not pays_in_training((512, 256, 2, 2), 256, 192, padding=0)   # no 3x3 window


def test_use_in_training_trains_like_the_plain_model_and_can_be_undone():
    from unetlab.inference.winograd import (
        TrainingWinogradConv2d,
        stop_in_training,
        supports,
        use_in_training,
    )

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 192, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(192, 192, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(192, 2, 1))

    plain, fast = net(), net()
    keys = list(fast.state_dict())
    assert use_in_training(fast, 192) == 2            # the two 3x3 convolutions
    assert list(fast.state_dict()) == keys            # same parameters, same keys
    x = torch.randn(2, 3, 32, 32)                     # 2,048 pixels: the 192->192 layer pays
    y = torch.randint(0, 2, (2, 32, 32))
    losses = []
    for model in (plain, fast):
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(3):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        losses.append(loss.item())
    assert "WinogradTraining" in type(fast[2](torch.randn(2, 192, 32, 32)).grad_fn).__name__
    assert "WinogradTraining" not in type(fast[0](x).grad_fn).__name__   # 3 channels
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    for a, b in zip(plain.parameters(), fast.parameters()):
        assert close(b.detach(), a.detach(), rel=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):           # float32 only
        assert "WinogradTraining" not in type(fast[2](torch.randn(2, 192, 32, 32)).grad_fn
                                              ).__name__
    stop_in_training(fast)
    assert not any(isinstance(m, TrainingWinogradConv2d) for m in fast.modules())
    assert supports(fast[2]) and list(fast.state_dict()) == keys


@pytest.mark.parametrize("avx2,avx512,expected", [(True, False, 192), (True, True, 192),
                                                  (False, False, None)])
def test_training_winograd_follows_the_cpu(monkeypatch, avx2, avx512, expected):
    import unetlab.inference.cpu as cpu
    from unetlab.training.builder import resolve_winograd

    features = cpu.CpuFeatures("test cpu", avx2=avx2, avx512=avx512)
    monkeypatch.setattr(cpu, "cpu_features", lambda: features)
    net2d = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(8, 16))
    cpu_dev = torch.device("cpu")
    assert resolve_winograd("auto", net2d, cpu_dev, None) == expected
    assert resolve_winograd(True, net2d, cpu_dev, None) == (expected or 192)
    assert resolve_winograd(False, net2d, cpu_dev, None) is None
    assert resolve_winograd("auto", net2d, cpu_dev, torch.bfloat16) is None   # autocast
    assert resolve_winograd(True, net2d, torch.device("cuda"), None) is None
    net3d = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8),
                                  spatial_dims=3)
    assert resolve_winograd(True, net3d, cpu_dev, None) is None


def test_trainer_trains_with_winograd_and_hands_back_plain_convolutions(tmp_path):
    """``train.winograd``: a U-Net whose second level (192 channels on 32x32 maps of a
    batch of 2) qualifies trains through Winograd and matches the run without it; after
    ``fit`` the model holds plain convolutions again (export, inference)."""
    from training_helpers import tiny_overrides, weights
    from unetlab.config import load_config
    from unetlab.inference.winograd import TrainingWinogradConv2d
    from unetlab.training import Trainer

    runs = {}
    for setting in ("true", "false"):
        out = tmp_path / setting
        cfg = load_config(None, tiny_overrides(out, epochs=1, images=4, batch=2, extra=(
            "model.options.channels=[8,192]", "data.options.size=64", "data.augment=none",
            "optim.name=sgd", f"train.winograd={setting}")))   # (Adam would magnify noise)
        trainer = Trainer(cfg)
        fast = [m for m in trainer.net.modules() if isinstance(m, TrainingWinogradConv2d)]
        assert bool(fast) == (setting == "true")
        with counting_winograd() as calls:
            trainer.fit()
        # 2 steps through the one 192 -> 192 layer (the others have 8 channels on one
        # side); the validation, under no_grad, none
        assert calls["n"] == (2 if setting == "true" else 0)
        assert not any(isinstance(m, TrainingWinogradConv2d) for m in trainer.net.modules())
        runs[setting] = weights(out)
    assert any(not torch.equal(runs["true"][k], v) for k, v in runs["false"].items())
    for key, value in runs["false"].items():
        # two SGD steps apart: within 1e-5 of each other (weights are 0.02-1 in size)
        assert torch.allclose(runs["true"][key].float(), value.float(), atol=2e-5, rtol=1e-4), key


def test_train_winograd_setting_is_validated():
    from unetlab.config import load_config
    from unetlab.errors import UnetlabError

    assert load_config(None, ["train.winograd=false"]).train.winograd is False
    assert load_config(None, []).train.winograd == "auto"
    with pytest.raises(UnetlabError, match="train.winograd"):
        load_config(None, ["train.winograd=sometimes"])


def test_a_failed_fit_still_hands_back_plain_convolutions(tmp_path, monkeypatch):
    from training_helpers import tiny_overrides
    from unetlab.config import load_config
    from unetlab.inference.winograd import TrainingWinogradConv2d
    from unetlab.training import Trainer

    cfg = load_config(None, tiny_overrides(tmp_path / "run", epochs=1, images=2, batch=2,
                                           extra=("model.options.channels=[8,192]",
                                                  "train.winograd=true")))
    trainer = Trainer(cfg)

    def failing_fit(self):
        assert any(isinstance(m, TrainingWinogradConv2d) for m in self.net.modules())
        raise RuntimeError("a failed run")

    monkeypatch.setattr(Trainer, "_fit", failing_fit)
    with pytest.raises(RuntimeError, match="a failed run"):
        trainer.fit()
    assert not any(isinstance(m, TrainingWinogradConv2d) for m in trainer.net.modules())


@contextlib.contextmanager
def counting_winograd():
    """Count the forward passes that took the training Winograd path."""
    from unetlab.inference.winograd import _WinogradTraining

    calls = {"n": 0}
    forward = _WinogradTraining.forward

    def counted(ctx, *args):
        calls["n"] += 1
        return forward(ctx, *args)

    _WinogradTraining.forward = staticmethod(counted)
    try:
        yield calls
    finally:
        _WinogradTraining.forward = staticmethod(forward)


def test_winograd_training_without_bias_and_with_some_gradients_unwanted():
    from unetlab.inference.winograd import _WinogradTraining

    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 10, 7, generator=g, dtype=torch.float64)
    weight = torch.randn(4, 5, 3, 3, generator=g, dtype=torch.float64)
    grad = torch.randn(2, 4, 10, 7, generator=g, dtype=torch.float64)
    for wants_x, wants_w in ((True, False), (False, True)):
        pairs = [(t.clone().requires_grad_(want), t.clone().requires_grad_(want))
                 for t, want in ((x, wants_x), (weight, wants_w))]
        (xa, xb), (wa, wb) = pairs
        got = _WinogradTraining.apply(xa, wa, None, 1)
        ref = F.conv2d(xb, wb, None, padding=1)
        assert close(got.detach(), ref.detach(), rel=1e-12)
        (a,) = torch.autograd.grad(got, [xa if wants_x else wa], grad)
        (b,) = torch.autograd.grad(ref, [xb if wants_x else wb], grad)
        assert close(a, b, rel=1e-12)


def test_winograd_training_refuses_a_second_derivative():
    from unetlab.inference.winograd import _WinogradTraining

    x = torch.randn(1, 4, 8, 8, requires_grad=True)
    w = torch.randn(4, 4, 3, 3, requires_grad=True)
    y = _WinogradTraining.apply(x, w, None, 1)
    (gx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        gx.sum().backward()


def test_validation_under_no_grad_uses_the_ordinary_convolution():
    from unetlab.inference.winograd import use_in_training

    conv = nn.Conv2d(192, 192, 3, padding=1)
    use_in_training(conv, 192)
    x = torch.randn(2, 192, 32, 32)
    with counting_winograd() as calls:
        with torch.no_grad():
            conv(x)
        assert calls["n"] == 0
        conv(x).sum().backward()
        assert calls["n"] == 1


def test_winograd_training_resumes_exactly(tmp_path):
    """A run whose 192-channel level trains through Winograd, stopped after 3 steps and
    resumed, ends with the uninterrupted run's weights."""
    from training_helpers import assert_same_weights, tiny_overrides, weights
    from unetlab.config import load_config
    from unetlab.training import train

    def cfg(out, extra=()):
        return load_config(None, tiny_overrides(out, epochs=2, images=6, batch=2, extra=(
            "model.options.channels=[8,192]", "data.options.size=64",
            "train.winograd=true", *extra)))

    ref, part = tmp_path / "ref", tmp_path / "part"
    with counting_winograd() as calls:
        train(cfg(ref))
    assert calls["n"] > 0
    assert train(cfg(part, ["train.max_steps=3"]))["steps"] == 3
    train(cfg(part), resume=True)
    assert_same_weights(weights(ref), weights(part))


# ---- in an exported graph (the OpenVINO runners) ----------------------------------------

@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("shape", [(1, 5, 8, 8), (2, 3, 7, 10), (3, 4, 9, 5), (1, 2, 3, 3)])
def test_graph_winograd_equals_conv2d(shape, padding):
    from unetlab.inference.winograd import GraphWinogradConv2d

    torch.manual_seed(sum(shape) + padding)
    for bias in (True, False):
        conv = nn.Conv2d(shape[1], 6, 3, padding=padding, bias=bias).eval()
        x = torch.randn(shape)
        with torch.no_grad():
            ref, got = conv(x), GraphWinogradConv2d(conv)(x)
        assert got.shape == ref.shape
        assert close(got, ref)


def test_graph_winograd_picks_the_layers_that_pay_at_the_expected_shape():
    from unetlab.inference.winograd import (
        GraphWinogradConv2d,
        apply_graph_winograd,
        conv_input_shapes,
    )

    def fresh():
        torch.manual_seed(0)
        return unetlab.create_model("unet", in_channels=1, num_classes=2,
                                    channels=(8, 256, 256)).eval()

    model = fresh()
    shapes = conv_input_shapes(model, (1, 1, 32, 32))
    assert len(shapes) == sum(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)
                              for m in model.modules())
    assert {s[2:] for s in shapes.values()} == {(32, 32), (16, 16), (8, 8)}
    # 256 x 256 >= 4 x 1 x 16 x 16: every layer with 256 channels in and out pays at 32x32
    # input; the 8-channel layers never (fewer than 256 channels)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        ref = model(x)
    wide = [m for m, s in shapes.items() if min(s[1], m.out_channels) >= 256]
    assert apply_graph_winograd(model, (1, 1, 32, 32), ratio=4) == len(wide) > 0
    with torch.no_grad():
        assert close(model(x), ref, rel=1e-4)
    # at 1024x1024 the 256-channel maps are too large for the same ratio; at 128x128 with
    # ratio 32: the two convolutions on the deepest map (32x32: 256 x 256 >= 32 x 32 x 32)
    # and the decoder's first on 64x64 (cat([skip, up]): 512 x 256 >= 32 x 64 x 64), not
    # its second (256 x 256)
    assert apply_graph_winograd(fresh(), (1, 1, 1024, 1024), ratio=4) == 0
    picked = fresh()
    assert apply_graph_winograd(picked, (1, 1, 128, 128), ratio=32) == 3
    assert sorted(m.in_channels for m in picked.modules()
                  if isinstance(m, GraphWinogradConv2d)) == [256, 256, 512]


def test_graph_winograd_sum_of_a_decoder_level_equals_the_two_convolutions():
    from unetlab.inference.export import fold_batch_norm, split_concat_convs
    from unetlab.inference.winograd import (
        GraphWinogradConv2d,
        apply_graph_winograd,
        graph_winograd_sum,
    )

    torch.manual_seed(3)
    a, b = nn.Conv2d(8, 6, 3, padding=1), nn.Conv2d(8, 6, 3, padding=1, bias=False)
    xa, xb = torch.randn(2, 8, 13, 9), torch.randn(2, 8, 13, 9)
    with torch.no_grad():
        ref = a(xa) + b(xb)
        got = graph_winograd_sum(GraphWinogradConv2d(a), xa, GraphWinogradConv2d(b), xb)
    assert close(got, ref)
    # in a U-Net whose decoder level was split for OpenVINO: the fused path runs
    model = unetlab.create_model("unet", in_channels=1, num_classes=2,
                                 channels=(8, 256, 256), norm="batch").eval()
    net = split_concat_convs(fold_batch_norm(model))
    x = torch.randn(1, 1, 36, 44)
    with torch.no_grad():
        ref = net(x)
        assert apply_graph_winograd(net, (1, 1, 32, 32), ratio=4) >= 4
        levels = [m for m in net.modules() if type(m).__name__ == "_SplitLevel"
                  and isinstance(m.conv_skip, GraphWinogradConv2d)
                  and isinstance(m.conv_up, GraphWinogradConv2d)]
        assert levels
        assert close(net(x), ref, rel=1e-4)
