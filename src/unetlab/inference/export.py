"""Deployment: batch-norm folding, an optimised inference callable, ONNX and TorchScript.

:func:`optimize_for_inference` returns an :class:`InferenceModel`: call it with an
``(N, C, *spatial)`` float tensor, get ``(N, K, *spatial)`` logits, exactly the model's
contract. It forwards the model's ``geometry()`` (and its card and sizes) so that
:func:`unetlab.inference.predict_tiled` tiles it correctly.

:func:`export_onnx` / :func:`export_torchscript` can put the card's normalisation into
the exported graph (``(x - mean) / std`` at its input), so that its caller only scales
images to [0, 1]; :func:`export_card` is the card that describes the exported file.
"""

from __future__ import annotations

import copy
import io
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnetlabError, exception_line
from ..models.geometry import geometry_of

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime", "openvino", "auto")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16, "int8": None,
              "auto": None}
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BNS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# forwarded by wrappers: geometry() is what callers read (the plain attributes stay for
# code that inspects them)
_GEOMETRY = ("geometry", "in_channels", "num_classes", "spatial_dims", "unetlab_config",
             "unetlab_card", "padding", "levels", "size_multiple")


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that directly follows a convolution inside an
    ``nn.Sequential`` into that convolution (in place); the BatchNorm becomes Identity.

    Exact up to float rounding. Returns ``model``. Call it on a model in eval mode.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    if model.training:
        raise ValueError("fold_batch_norm needs a model in eval mode (call model.eval())")
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for a, b in zip(names, names[1:]):
            conv, bn = seq._modules[a], seq._modules[b]
            if isinstance(conv, _CONVS) and isinstance(bn, _BNS) and bn.track_running_stats:
                seq._modules[a] = fuse_conv_bn_eval(conv, bn)
                seq._modules[b] = nn.Identity()
    return model


class _SplitLevel(nn.Module):
    """A U-Net decoder level whose first convolution over ``cat([skip, up])`` is two
    convolutions summed, ``conv_skip(skip) + conv_up(up)``: the same sums (to float
    rounding) without the concatenated copy. The OpenVINO runners' graphs use it:
    OpenVINO ran the concatenation as a reference copy. Measured with a prototype of
    ``benchmarks/bench_split_levels.py`` (U-Net 64..1024, 1x3x256x256, 2 threads, one
    run): fp32 400 ms against 432 ms; with the kept benchmark, 339 against 353 ms (int8
    and ONNX Runtime: no gain). When both convolutions are Winograd layers of the fp32
    graph (:func:`.winograd.graph_winograd_sum`), their tile products are summed before
    one output transform (1-3 % of the network's time, session 27)."""

    def __init__(self, level: nn.Module):
        super().__init__()
        first = level.conv[0][0]
        n_skip = first.in_channels // 2                  # cat([skip, up]), equal halves
        self.up, self.gate = level.up, level.gate
        conv = type(first)
        like = {"kernel_size": first.kernel_size, "padding": first.padding,
                "stride": first.stride, "dilation": first.dilation,
                "padding_mode": first.padding_mode, "device": first.weight.device,
                "dtype": first.weight.dtype}
        self.conv_skip = conv(n_skip, first.out_channels, bias=first.bias is not None, **like)
        self.conv_up = conv(first.in_channels - n_skip, first.out_channels, bias=False, **like)
        with torch.no_grad():
            self.conv_skip.weight.copy_(first.weight[:, :n_skip])
            self.conv_up.weight.copy_(first.weight[:, n_skip:])
            if first.bias is not None:
                self.conv_skip.bias.copy_(first.bias)
        self.rest = nn.Sequential(*list(level.conv[0])[1:], *list(level.conv)[1:])
        self.train(level.training)

    def forward(self, x, skip, indices=None):
        from ..models.blocks import center_crop
        from .winograd import GraphWinogradConv2d, graph_winograd_sum

        up = self.up(x, indices, output_size=skip.shape[2:])
        if self.gate is not None:
            skip = self.gate(skip, x)
        skip = center_crop(skip, up.shape[2:])
        if isinstance(self.conv_skip, GraphWinogradConv2d) and \
                isinstance(self.conv_up, GraphWinogradConv2d):  # one output transform
            return self.rest(graph_winograd_sum(self.conv_skip, skip, self.conv_up, up))
        return self.rest(self.conv_skip(skip) + self.conv_up(up))


def split_concat_convs(net: nn.Module) -> nn.Module:
    """Replace, in place, every U-Net decoder level that concatenates and then starts
    with a plain convolution (batch norm folded, or none) by :class:`_SplitLevel`."""
    from ..models.blocks import DoubleConv
    from ..models.unet import UpLevel

    for name, module in list(net.named_modules()):
        if not isinstance(module, UpLevel) or module.skip_fusion != "concat" \
                or not isinstance(module.conv, DoubleConv):
            continue
        first = module.conv[0][0]
        if not isinstance(first, nn.Conv2d | nn.Conv3d) or first.groups != 1 or \
                first.in_channels != 2 * first.out_channels or \
                not all(isinstance(m, nn.Identity | nn.ReLU) for m in list(module.conv[0])[1:]):
            continue                              # a norm between: not a plain conv first
        parent = net.get_submodule(name.rpartition(".")[0]) if "." in name else net
        setattr(parent, name.rpartition(".")[2], _SplitLevel(module))
    return net


def _copy_geometry(src, dst) -> None:
    for name in _GEOMETRY:
        if hasattr(src, name):
            try:
                setattr(dst, name, getattr(src, name))
            except AttributeError:  # a read-only property on dst
                pass


class InferenceModel:
    """A callable with the model's contract: tensor in, logits tensor out (no grad)."""

    def __init__(self, run, *, backend: str, device, source: nn.Module, module=None):
        self._run = run
        self.net = module  # the optimised copy (torch backend), for inspection
        self.backend = backend
        self.device = torch.device(device)
        _copy_geometry(source, self)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self._run(x)

    def __repr__(self) -> str:
        return f"InferenceModel(backend={self.backend!r}, device={str(self.device)!r})"


def optimize_for_inference(model: nn.Module, backend: str = "torch", *, channels_last: bool = True,
                           fold_bn: bool = True, compile: bool = False, device=None,
                           num_threads: int | None = None,
                           precision: str | None = None,
                           winograd: bool | None = None,
                           calibration=None, keep_fp32=None,
                           probe_shape=None, cache: bool = True) -> InferenceModel:
    """A faster callable with ``model``'s contract; ``model`` itself is left unchanged.

    ``backend="torch"``: a copy in eval mode with batch norm folded into the preceding
    convolutions, channels-last memory layout (2-D and 3-D), run under
    ``torch.inference_mode``; ``compile=True`` adds ``torch.compile`` with inductor's
    weight freezing (the first call of each input shape compiles: tens of seconds).
    ``backend="onnxruntime"``: the model exported to ONNX (batch norm folded, dynamic
    batch and spatial size) and run by ONNX Runtime (CPU, or CUDA when available).

    ``precision`` (torch backend): ``"fp32"``; ``"bf16"`` runs weights and activations in
    bfloat16 (about 2x faster on CPUs with AVX512-BF16 or AMX, and on recent GPUs; logits
    differ from fp32 in the third significant digit); ``"fp16"`` on CUDA only. The
    returned logits are always float32.

    ``winograd`` (fp32, CPU): 3x3 convolutions with many channels on small maps use
    Winograd F(4x4, 3x3) (:mod:`unetlab.inference.winograd`, to about 1e-5 of the
    output's scale). Torch backend: decided per call from the input's shape; ``None``
    (default) turns it on where :func:`.cpu.winograd_ratio` says it pays. OpenVINO
    backend: written into the graph for the layers where it pays at an input of
    ``probe_shape`` (default one 256x256 image; :func:`.cpu.graph_winograd_ratio`); the
    graph still takes any size. ``False``: never.

    ``backend="openvino"`` (CPU, ``pip install "unetlab[openvino]"``): the exported graph
    compiled by OpenVINO; ``precision`` ``"fp32"``, ``"bf16"`` (CPUs with BF16 only) or
    ``"int8"``: NNCF post-training quantization calibrated on ``calibration``, an
    iterable of ``(N, C, H, W)`` input tensors (a few batches of your own, preprocessed
    images); ``keep_fp32`` names the layers left unquantized (:mod:`.openvino`; None:
    the first convolution and the 1x1 head, ``("first", "last")``).

    ``backend="auto"`` and/or ``precision="auto"``: the fastest candidate on this CPU
    whose argmax agrees with the fp32 model on at least 99.5% of the probe's pixels, from
    a short probe (on ``calibration``, else a random ``probe_shape`` input) cached per
    CPU, model and input shape (:mod:`.auto`). Reduced precisions (bf16 where the CPU
    has it, int8) are tried only when ``calibration`` is given; int8 both with the first
    convolution and head in fp32 and with everything in int8, unless ``keep_fp32`` is
    given. ``precision=None`` (default): ``"auto"`` when ``backend="auto"`` is given
    ``calibration`` (the batches are there to try the reduced precisions), else
    ``"fp32"``.
    """
    if precision is None:
        precision = "auto" if backend == "auto" and calibration is not None else "fp32"
    if backend == "auto" or precision == "auto":
        from .auto import choose

        return choose(model, backend=backend, precision=precision, device=device,
                      calibration=calibration, num_threads=num_threads,
                      probe_shape=probe_shape, cache=cache, keep_fp32=keep_fp32)
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not valid; choose one of {list(BACKENDS)}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not valid; choose one of "
                         f"{list(PRECISIONS)}")
    device = torch.device(device) if device is not None else _device_of(model)
    if backend == "openvino":
        return _openvino_model(model, device, fold_bn, precision, calibration, num_threads,
                               keep_fp32, winograd, probe_shape)
    if precision == "int8" or calibration is not None:
        raise ValueError("precision='int8' (and calibration) need backend='openvino'")
    dtype = _check_precision(precision, backend, device)
    net = copy.deepcopy(model).eval().to(device)
    if fold_bn:
        fold_batch_norm(net)
    if backend == "onnxruntime":  # (the split is measured for OpenVINO only)
        return _onnxruntime_model(net, model, device, num_threads)
    dims = geometry_of(model).spatial_dims
    fmt = {2: torch.channels_last, 3: torch.channels_last_3d}.get(dims) if channels_last else None
    if fmt is not None:
        net = net.to(memory_format=fmt)
    if dtype is not None:
        net = net.to(dtype)
    ratio = None
    if winograd is None or winograd:
        from .cpu import winograd_ratio
        from .winograd import RATIO

        ratio = winograd_ratio() if winograd is None else (winograd_ratio() or RATIO)
    if winograd is None:
        winograd = device.type == "cpu" and dtype is None and not compile and ratio is not None
    if winograd:
        from .winograd import apply_winograd

        apply_winograd(net, ratio)
    fn = torch.compile(net, dynamic=False) if compile else net

    def run(x: torch.Tensor) -> torch.Tensor:
        with _compile_settings(compile), torch.inference_mode():
            x = x.to(device, dtype=dtype or x.dtype, non_blocking=True)
            if fmt is not None and x.dim() == dims + 2:
                x = x.contiguous(memory_format=fmt)
            y = fn(x)
            return y.float() if dtype is not None else y

    return InferenceModel(run, backend="torch", device=device, source=model, module=net)


def _openvino_model(model, device, fold_bn, precision, calibration, num_threads, keep_fp32,
                    winograd=None, shape=None):
    from .openvino import KEEP_FP32, openvino_model, require_openvino

    require_openvino()
    keep_fp32 = KEEP_FP32 if keep_fp32 is None else keep_fp32
    if device.type != "cpu":
        raise ValueError(f"backend='openvino' runs on the CPU, not {device}")
    net = copy.deepcopy(model).eval().cpu()
    if fold_bn:
        fold_batch_norm(net)
    return openvino_model(net, model, precision=precision, calibration=calibration,
                          num_threads=num_threads, keep_fp32=keep_fp32, winograd=winograd,
                          shape=shape)


def _check_precision(precision: str, backend: str, device: torch.device):
    """The torch dtype for ``precision`` (None for fp32), or a ValueError saying why not."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return None
    if backend != "torch":  # openvino is handled before
        raise ValueError(f"precision={precision!r} needs backend='torch' or 'openvino' (the "
                         "ONNX Runtime backend runs fp32)")
    if dtype is torch.float16 and device.type != "cuda":
        raise ValueError("precision='fp16' needs a CUDA device; on the CPU use 'bf16'")
    if device.type == "cpu" and not _native_cpu_bf16():
        log.warning("this CPU has no native bfloat16 (AVX512-BF16 or AMX): precision='bf16' "
                    "will be emulated and may be slower than fp32")
    return dtype


def _native_cpu_bf16() -> bool:
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_avx512_bf16_supported",
                                                      "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def _compile_settings(enabled: bool):
    """Inductor's weight freezing (constant-folded, pre-packed convolution weights) for
    compiled inference; a no-op context when not compiling."""
    import contextlib

    if not enabled:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(freezing=True)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


# ---- ONNX ---------------------------------------------------------------------------------

def _example_input(model: nn.Module, size: int | None = None) -> torch.Tensor:
    """A random ``(1, C, size, ...)`` input in [0, 1] (default ``size``: a small one the
    model accepts)."""
    geo = geometry_of(model)
    if size is None and geo.padding == "valid":
        from ..models.unet import valid_input_size

        size = valid_input_size(4, geo.levels)
    elif size is None:
        size = max(32, geo.divisor * 2)
    return torch.rand(1, _in_channels(model), *(size,) * geo.spatial_dims)


def _in_channels(model) -> int:
    config = getattr(model, "unetlab_config", None) or {}
    return int(getattr(model, "in_channels", None) or config.get("in_channels") or 1)


class NormalizedModel(nn.Module):
    """``model((x - mean) / std)``: the card's normalisation as the first operations of
    the graph (a Sub and a Div in ONNX), so the exported model takes images scaled to
    [0, 1]. Forwards the model's geometry."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        dims = geometry_of(model).spatial_dims
        shape = (1, -1) + (1,) * dims
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(shape))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(shape))
        _copy_geometry(model, self)
        card = getattr(self, "unetlab_card", None)
        if card and (card.get("input") or {}).get("normalize"):
            # this model normalises itself: its card asks the caller for [0, 1] images
            # only (predict_file prepares inputs as the card says)
            card = copy.deepcopy(card)
            card["input"]["normalize"] = None
            self.unetlab_card = card
        self.train(model.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def with_normalization(model: nn.Module, card: dict | None = None) -> nn.Module:
    """``model`` preceded by its card's normalisation (``model.unetlab_card`` by
    default); the model itself when the card has none."""
    card = card if card is not None else getattr(model, "unetlab_card", None)
    norm = (card or {}).get("input", {}).get("normalize")
    if not norm:
        return model
    return NormalizedModel(model, norm["mean"], norm["std"])


def export_card(card: dict, *, format: str, normalization_in_graph: bool) -> dict:
    """The card of an exported file: the model's card, with ``input.normalize`` saying
    what the *caller* must still do (None when the graph normalises) and
    ``extensions["export"]`` describing the graph's input and output. Its
    ``caller_prepares`` lists the caller's steps in order: dtype scaling, the
    normalisation left to the caller, for a model trained at a resolution scale
    (``input.scale`` != 1) the resize by that scale before the graph and of the logits
    back to the image's size after it (as ``unetlab predict`` does), and, for graphs that
    do not pad themselves (every format but ONNX), the padding to the pooling multiple."""
    import copy as _copy

    from ..preprocess import Preprocessing

    card = _copy.deepcopy(card)
    card.pop("assumed", None)
    if isinstance(card.get("training"), dict):  # a path on the machine it trained on:
        card["training"].pop("root", None)      # it does not travel with a shared file
    norm = card["input"].get("normalize")
    embedded = bool(norm) and normalization_in_graph
    if embedded:
        card["input"]["normalize"] = None
    steps = Preprocessing.from_card(card)
    todo = ["integer images divided by their type's maximum (uint8 /255, uint16 /65535)"
            if steps.scaling == "dtype" else "pixel values as they are"]
    if steps.normalize is not None:
        todo.append(f"then (x - {steps.normalize['mean']}) / {steps.normalize['std']} "
                    "per channel")
    geo = card["geometry"]
    dims = int(geo.get("spatial_dims", 2))
    scale = float(card["input"].get("scale") or 1.0)
    linear = "bilinear" if dims == 2 else "trilinear"
    if scale != 1.0:  # trained at another resolution: as unetlab predict (ScaledModel) does
        how = "area averaging, torch interpolate mode='area'" if scale < 1.0 else \
            f"{linear}, align_corners=False"
        todo.append(f"then the image resized by the card's input.scale {scale:g} to "
                    f"round({scale:g} * size) pixels per spatial axis ({how})")
    divisor = int(geo.get("divisor") or 1)
    if format != "onnx" and geo.get("padding", "same") == "same" and divisor > 1:
        todo.append(f"each spatial axis padded at its end to a multiple of {divisor} "
                    "(mirror), the logits cropped back")
    labels = "argmax over axis 1 of the logits gives class ids"
    if scale != 1.0:
        todo.append(f"the logits resized back to the image's own size ({linear}, "
                    "align_corners=False) before the argmax")
        labels = ("argmax over axis 1 of the logits, resized back to the image's size, "
                  "gives class ids")
    card["extensions"]["export"] = {
        "format": format, "input": "image", "output": "logits",
        "layout": "float32 (N, C, " + ", ".join("DHW"[3 - dims:]) + ")",
        "normalization_in_graph": norm if embedded else None,
        "caller_prepares": "; ".join(todo),
        "labels": labels,
    }
    return card


def onnx_bytes(model: nn.Module, example: torch.Tensor | None = None, opset: int = 17,
               card: dict | None = None, any_size: bool = False) -> bytes:
    """The model (eval mode) as an ONNX graph with dynamic batch and spatial axes;
    ``card`` (JSON) goes into the graph's ``metadata_props`` as ``unetlab_card``.
    ``any_size``: the graph pads the input to the pooling multiple itself (files handed
    to others); without it the caller pads, as the runners here do (a faster int8)."""
    import contextlib
    import warnings

    from ..models.unet import padding_in_graph

    example = _example_input(model) if example is None else example
    names = ["batch"] + [f"d{i}" for i in range(example.dim() - 2)]
    axes = {0: names[0], **{i + 2: n for i, n in enumerate(names[1:])}}
    buf = io.BytesIO()
    model = model.eval()
    inside = padding_in_graph() if any_size else contextlib.nullcontext()
    with warnings.catch_warnings(), torch.no_grad(), inside:
        warnings.simplefilter("ignore")  # tracer and legacy-exporter notices
        try:
            torch.onnx.export(model, (example.to(_device_of(model)),), buf, dynamo=False,
                              input_names=["image"], output_names=["logits"],
                              dynamic_axes={"image": axes, "logits": axes},
                              opset_version=opset)
        except ImportError:
            raise
        except Exception as exc:  # the tracer and exporter raise many kinds
            why = exception_line(exc)
            name = type(getattr(model, "model", model)).__name__  # inside a normalisation
            raise UnetlabError(f"{name} could not be exported to ONNX ({why}); run it with "
                               f"the torch backend instead") from exc
    data = buf.getvalue()
    if card is not None:
        data = _with_metadata(data, {"unetlab_card": card})
    return data


def _with_metadata(data: bytes, props: dict) -> bytes:
    import onnx

    from .._io import dumps

    proto = onnx.load_from_string(data)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, dumps(value, indent=None)
    return proto.SerializeToString()


def card_path_for(path) -> Path:
    """Where the card of an exported file goes: ``model.onnx`` -> ``model.onnx.card.json``
    (one per exported file, so an ONNX and a TorchScript export can share a folder)."""
    path = Path(path)
    return path.with_name(path.name + ".card.json")


def _prepare_export(model, card, normalize: bool, format: str):
    """(the network to trace, the export card or None)."""
    net = copy.deepcopy(model).eval().cpu()
    card = card if card is not None else getattr(model, "unetlab_card", None)
    if card is None:
        return net, None
    if normalize:
        net = with_normalization(net, card)
    return net, export_card(card, format=format, normalization_in_graph=normalize)


def export_onnx(model: nn.Module, path, *, fold_bn: bool = True, example=None,
                card: dict | None = None, normalize: bool = True) -> Path:
    """Write the model as ONNX (dynamic batch and spatial size) to ``path``, and its card
    (:func:`export_card`) both in the graph's ``metadata_props`` and beside it
    (``model.onnx.card.json``). ``card``: default ``model.unetlab_card`` (models from
    :func:`unetlab.load_model`); ``normalize=True`` puts the card's normalisation into
    the graph, so callers feed images scaled to [0, 1]."""
    from .._io import atomic_write_bytes, write_json

    net, card = _prepare_export(model, card, normalize, "onnx")
    if fold_bn:
        fold_batch_norm(net)
    example = _example_input(model) if example is None else example
    path = atomic_write_bytes(path, onnx_bytes(net, example, card=card, any_size=True))
    if card is not None:
        write_json(card_path_for(path), card)
    return path


def export_torchscript(model: nn.Module, path, *, example=None, card: dict | None = None,
                       normalize: bool = True) -> Path:
    """Write the model as TorchScript (traced; spatial size free for same-padding models
    whose input is a multiple of ``geometry().divisor``) to ``path``, its card beside it
    (see :func:`export_onnx`)."""
    import warnings

    from .._io import atomic_write, write_json

    net, card = _prepare_export(model, card, normalize, "torchscript")
    example = _example_input(model) if example is None else example
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(net, example, check_trace=False)
    path = atomic_write(path, lambda tmp: traced.save(str(tmp)))
    if card is not None:
        write_json(card_path_for(path), card)
    return path


def _onnxruntime_model(net: nn.Module, source: nn.Module, device, num_threads):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ValueError("backend='onnxruntime' needs onnxruntime: pip install "
                         "'unetlab[onnx]'") from None
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = num_threads or torch.get_num_threads()
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(onnx_bytes(net.cpu()), opts, providers=providers)
    geo = geometry_of(source)
    multiple = geo.divisor if geo.padding == "same" else 1

    def run(x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = _pad_end(x.detach().float().cpu(), multiple)
        (y,) = session.run(None, {"image": x.contiguous().numpy()})
        y = torch.from_numpy(y)
        if multiple > 1:  # same-padding: crop back what _pad_end added
            y = y[(slice(None), slice(None), *(slice(0, s) for s in size))]
        return y

    return InferenceModel(run, backend="onnxruntime", device="cpu", source=source)


def _pad_end(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Mirror-pad the end of each spatial axis to a multiple, as the U-Net does inside
    forward (the exported graph has that padding fixed at the example's size)."""
    pads = []
    for s in reversed(x.shape[2:]):
        pads += [0, (-s) % multiple]
    if not any(pads):
        return x
    mode = "reflect" if all(p < s for p, s in zip(pads[1::2], reversed(x.shape[2:]))) \
        else "replicate"
    return F.pad(x, pads, mode=mode)
