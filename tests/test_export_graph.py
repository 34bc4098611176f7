"""What the exported graph contains: no no-op crops on the skip paths, unpooling that
exports (SegNet), and a one-line error for a model that cannot be exported."""

from __future__ import annotations

import collections
import warnings

import pytest
import torch
from torch import nn

import unetlab
from unetlab.cli import main
from unetlab.errors import UnetlabError
from unetlab.inference import optimize_for_inference
from unetlab.inference.export import onnx_bytes
from unetlab.models.layers import max_unpool, scatter_unpool


def _ops(model, **kwargs) -> collections.Counter:
    onnx = pytest.importorskip("onnx")
    graph = onnx.load_from_string(onnx_bytes(model.eval(), **kwargs)).graph
    return collections.Counter(node.op_type for node in graph.node)


def _net(name, **options):
    torch.manual_seed(0)
    return unetlab.create_model(name, in_channels=1, num_classes=3, **options).eval()


def test_same_padding_skip_paths_carry_no_slice():
    """Every skip map of a same-padding U-Net already has the decoder's size: the
    export must not crop it (such Slices cost OpenVINO's int8 graph a third of its
    time). What is left is the same however deep the network: the input's padding to
    the pooling multiple and the output's crop back to the input's size."""
    shallow = _ops(_net("unet", channels=(4, 8)))
    deep = _ops(_net("unet", channels=(4, 8, 16, 32, 64)))
    assert deep["Slice"] == shallow["Slice"] <= 2 and deep["Pad"] == 0  # the runner pads
    assert _ops(_net("resunet", channels=(4, 8, 16, 32, 64)))["Slice"] == shallow["Slice"]
    padded = _ops(_net("unet", channels=(4, 8, 16, 32, 64)), any_size=True)
    assert padded["Pad"] == 1 and padded["Slice"] <= 3  # a file handed to others pads


def test_valid_padding_still_crops_when_exported():
    ort = pytest.importorskip("onnxruntime")
    model = _net("unet", channels=(4, 8, 16), padding="valid", norm=None)
    assert _ops(model)["Slice"] > 2  # the paper's crops are real here
    session = ort.InferenceSession(onnx_bytes(model), providers=["CPUExecutionProvider"])
    for size in (60, 92):  # valid sizes for 3 levels (the example traced another)
        x = torch.rand(1, 1, size, size)
        (y,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            ref = model(x)
        assert y.shape == tuple(ref.shape) and abs(y - ref.numpy()).max() < 1e-4


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_scatter_unpool_is_max_unpool(dims):
    pool = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[dims](2, 2, return_indices=True)
    size = (6, 10, 4)[:dims]
    x = torch.randn(2, 3, *size)
    y, idx = pool(x)
    expected = max_unpool(dims)(2, 2)(y, idx, output_size=size)
    assert torch.equal(scatter_unpool(y, idx, size), expected)
    assert expected.abs().sum() > 0


class _PoolUnpool(nn.Module):
    def __init__(self, dims, full_size):
        super().__init__()
        self.pool = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}[dims](
            2, 2, return_indices=True)
        self.unpool = max_unpool(dims)(2, 2)
        self.full_size = full_size

    def forward(self, x):
        y, idx = self.pool(x)
        size = (x.shape if self.full_size else x.shape[2:]) if self.full_size is not None \
            else None
        return self.unpool(y * 2, idx, output_size=size)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("full_size", [None, False, True])
def test_traced_unpooling_module_matches_eager(dims, full_size):
    """The traced branch (the scatter), with no output size, the spatial size, and the
    whole (N, C, ...) shape, against the eager module."""
    module = _PoolUnpool(dims, full_size)
    x = torch.randn(2, 3, *(6, 8, 4)[:dims])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")                      # tracer notices
        traced = torch.jit.trace(module, (x,))
    assert torch.equal(traced(x), module(x))
    assert module(x).abs().sum() > 0


SMALL = {"unet": {"channels": (4, 8, 16)}, "attention_unet": {"channels": (4, 8, 16)},
         "resunet": {"channels": (4, 8, 16)}, "segnet": {"width": 0.125}, "segnet_basic": {},
         "fcn8s": {"width": 0.125}, "fcn16s": {"width": 0.125}, "fcn32s": {"width": 0.125}}


@pytest.mark.parametrize("name", unetlab.list_models())
def test_every_architecture_exports_and_runs_at_any_size(name):
    """The exported graph itself (no runner padding for it) at sizes that are not a
    multiple of the pooling, against the PyTorch model."""
    ort = pytest.importorskip("onnxruntime")
    model = _net(name, **SMALL.get(name, {}))
    session = ort.InferenceSession(onnx_bytes(model, any_size=True),
                                   providers=["CPUExecutionProvider"])
    for size in ((64, 64), (70, 90), (33, 47)):
        x = torch.rand(2, 1, *size)
        (y,) = session.run(None, {"image": x.numpy()})
        with torch.no_grad():
            ref = model(x)
        assert y.shape == tuple(ref.shape) and abs(y - ref.numpy()).max() < 1e-4, size


def test_the_exported_file_runs_at_any_size_and_says_so(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from unetlab.card import build_card
    from unetlab.inference import export_onnx
    from unetlab.inference.export import export_card

    model = _net("unet", channels=(4, 8, 16))
    path = export_onnx(model, tmp_path / "m.onnx", card=build_card(model))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.rand(1, 1, 37, 53)
    (y,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        assert abs(y - model(x).numpy()).max() < 1e-4
    card = build_card(model)
    onnx_card = export_card(card, format="onnx", normalization_in_graph=False)
    ir_card = export_card(card, format="openvino", normalization_in_graph=False)
    assert "multiple of 4" not in onnx_card["extensions"]["export"]["caller_prepares"]
    assert "multiple of 4" in ir_card["extensions"]["export"]["caller_prepares"]


def test_segnet_traces_to_torchscript():
    model = _net("segnet_basic")
    x = torch.rand(1, 1, 64, 80)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (x,))
        assert torch.allclose(traced(x), model(x), atol=1e-5)


@pytest.mark.parametrize("name,options", [
    ("segnet_basic", {}),
    ("segnet", {"width": 0.125}),
    ("unet", {"channels": (4, 8, 16), "upsample": "unpool"}),
])
def test_unpooling_models_export_and_agree(name, options):
    """SegNet's unpooling used to fail to export (a traced size in PyTorch's own size
    check), so the CLI's default backend crashed on every SegNet model."""
    pytest.importorskip("onnxruntime")
    model = _net(name, **options)
    x = torch.rand(2, 1, 70, 90)  # not a multiple of the pooling: padded and cropped
    with torch.no_grad():
        ref = model(x)
    for backend in ("onnxruntime", "auto"):
        fast = optimize_for_inference(model, backend=backend)
        assert (fast(x) - ref).abs().max() < 1e-4, backend


class _Untraceable(nn.Module):
    """A model whose export fails the way third-party layers can (a TypeError)."""

    in_channels, num_classes, spatial_dims = 1, 2, 2

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        if torch.jit.is_tracing():
            raise TypeError("cond must be a bool, but got a Tensor")
        return self.conv(x)


def test_a_model_that_cannot_be_exported_is_a_one_line_error_and_auto_falls_back():
    pytest.importorskip("onnxruntime")
    model = _Untraceable().eval()
    with pytest.raises(UnetlabError, match="could not be exported to ONNX") as err:
        optimize_for_inference(model, backend="onnxruntime")
    assert "\n" not in str(err.value)
    fast = optimize_for_inference(model, backend="auto")
    assert fast.backend in ("torch", "eager")
    x = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(fast(x), model(x), atol=1e-5)


def test_export_command_on_an_unexportable_model_is_one_line(tmp_path, capsys, monkeypatch):
    ckpt = unetlab.save_model(_net("unet", channels=(4, 8)), tmp_path / "m.safetensors")

    def refuse(*args, **kwargs):
        raise TypeError("an exporter failure\nsecond line")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    rc = main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "could not be exported to ONNX" in err[0]
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("name,options", [
    ("unet", {"channels": (4, 8, 16, 32)}),
    ("unet", {"channels": (4, 8, 16), "padding": "valid", "norm": None}),
    ("unet", {"channels": (4, 8, 16), "upsample": "bilinear"}),
    ("unet", {"channels": (4, 8, 16), "upsample": "unpool"}),
    ("attention_unet", {"channels": (4, 8, 16)}),
])
def test_split_concat_levels_compute_the_same_without_a_concat(name, options):
    """The runners' graphs start each decoder level with conv(skip) + conv(up) instead of
    conv(cat([skip, up])): the same numbers, and no Concat left in the graph."""
    import copy

    from unetlab.inference.export import fold_batch_norm, split_concat_convs

    model = _net(name, **options)
    split = split_concat_convs(fold_batch_norm(copy.deepcopy(model)))
    levels = sum(type(m).__name__ == "_SplitLevel" for m in split.modules())
    assert levels == len(options["channels"]) - 1
    x = torch.rand(2, 1, 92, 92) if options.get("padding") == "valid" else \
        torch.rand(2, 1, 70, 90)
    with torch.no_grad():
        assert torch.allclose(split(x), model(x), atol=1e-5)
    # (attention gates keep Concats of shape values for their resizing)
    assert _ops(split)["Concat"] == _ops(model)["Concat"] - levels
    pytest.importorskip("openvino")
    fast = optimize_for_inference(model, backend="openvino")      # the runner that splits
    assert (fast(x) - model(x)).abs().max() < 1e-4


def test_int8_keeps_the_first_conv_and_the_head_in_fp32_after_the_split():
    """keep_fp32 names the first and last convolution of the graph by position; with the
    split levels they must still be the encoder's first conv and the 1x1 head (NNCF's
    ignored scope does not validate names, so a wrong one would quantize everything)."""
    pytest.importorskip("openvino")
    import copy

    from unetlab.inference.export import fold_batch_norm
    from unetlab.inference.openvino import _conv_names, convert

    names = _conv_names(convert(fold_batch_norm(copy.deepcopy(_net("unet",
                                                                   channels=(4, 8, 16))))))
    assert "encoder.0" in names[0] and "head" in names[-1]
    assert any("conv_skip" in n for n in names) and any("conv_up" in n for n in names)


def test_split_leaves_levels_it_cannot_split():
    import copy

    from unetlab.inference.export import split_concat_convs

    with_norm = _net("unet", channels=(4, 8, 16))               # batch norm not folded
    assert not any(type(m).__name__ == "_SplitLevel"
                   for m in split_concat_convs(copy.deepcopy(with_norm)).modules())
    summed = _net("unet", channels=(4, 8, 16), skip_fusion="sum", norm=None)
    assert not any(type(m).__name__ == "_SplitLevel"
                   for m in split_concat_convs(copy.deepcopy(summed)).modules())
