"""The OpenVINO backend: fp32, bf16 and int8 (NNCF post-training quantization) on the CPU.

The graph handed to OpenVINO is the one :mod:`.export` writes: batch norm folded into
the convolutions, dynamic batch and spatial axes (same-padding models get their input
mirror-padded to the pooling multiple here, as ``forward`` does). OpenVINO fuses the
activations and picks the layout itself. ``precision="int8"`` quantizes weights and
activations with NNCF, calibrated on a few batches of the user's own inputs; the first
convolution and the final 1x1 classifier stay in fp32 by default (``keep_fp32``), the
layers where 8 bits cost the most accuracy.

:func:`save_openvino` writes ``model.xml`` + ``model.bin``; the model card (geometry,
classes, normalisation) and how it was optimised travel in the graph's ``rt_info`` under
``unetlab_card``, and in a ``model.xml.card.json`` sidecar for readers without OpenVINO.
:func:`load_openvino` gives back a callable with the model's contract.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import torch

from ..errors import UnetlabError

log = logging.getLogger(__name__)

#: precision -> OpenVINO's inference precision hint (int8: what is left unquantized)
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
CARD_KEY = "unetlab_card"
KEEP_FP32 = ("first", "last")
OVERFLOW_FIX = "enable"  # NNCF's overflow fix on every layer (see quantize)


def require_openvino():
    """The ``openvino`` module, or a one-line error naming the extra to install."""
    from .._extras import require

    return require("openvino", "openvino", 'backend="openvino" needs OpenVINO and NNCF')


def _require_nncf():
    from .._extras import require

    return require("nncf", "openvino", 'precision="int8" needs NNCF')


def _multiple(source) -> int:
    from ..models.geometry import geometry_of

    geo = geometry_of(source)
    return geo.divisor if geo.padding == "same" else 1


def convert(net: torch.nn.Module, winograd=None):
    """An ``openvino.Model`` of ``net`` (eval mode, batch norm already folded) with
    dynamic batch and spatial axes, through the ONNX graph of :func:`.export.onnx_bytes`
    (U-Net decoder levels as :class:`.export._SplitLevel`: no concatenation). ``net`` is
    changed in place (moved to the CPU, levels split): pass a copy, as every caller does.

    ``winograd``: ``(shape, ratio)`` writes the convolutions where Winograd pays at an
    input of ``shape`` as :class:`.winograd.GraphWinogradConv2d` (fp32 graphs); the graph
    still takes any size."""
    import io

    from .export import onnx_bytes, split_concat_convs

    ov = require_openvino()
    net = split_concat_convs(net.cpu())
    if winograd is not None:
        from .winograd import apply_graph_winograd

        try:  # the layers' shapes come from a pass on the meta device
            apply_graph_winograd(net, *winograd)
        except Exception as exc:  # a layer of any kind may refuse meta tensors
            log.warning("openvino: no Winograd layers in this graph (its layers' shapes "
                        "could not be traced on the meta device: %s: %s)",
                        type(exc).__name__, exc)
    return ov.convert_model(io.BytesIO(onnx_bytes(net)))


def calibration_inputs(calibration, source) -> list:
    """The calibration batches as float32 numpy arrays ready for the graph (padded to
    the pooling multiple); ValueError naming the first unusable batch."""
    from .export import _pad_end

    dims = int(getattr(source, "spatial_dims", 2))
    channels = getattr(source, "in_channels", None)
    multiple = _multiple(source)
    out = []
    for i, batch in enumerate(calibration if calibration is not None else ()):
        if not isinstance(batch, torch.Tensor):
            batch = torch.as_tensor(batch)
        if batch.dim() != dims + 2 or (channels is not None and batch.shape[1] != channels):
            raise ValueError(f"calibration batch {i} has shape {tuple(batch.shape)}; expected "
                             f"(N, {channels}, {', '.join(['size'] * dims)})")
        out.append(_pad_end(batch.detach().float().cpu(), multiple).contiguous().numpy())
    if not out:
        raise ValueError("precision='int8' needs calibration batches (a few (N, C, H, W) "
                         "tensors of your own images; command line: --calibration DIR)")
    return out


def _conv_names(ov_model) -> list[str]:
    return [op.get_friendly_name() for op in ov_model.get_ordered_ops()
            if op.get_type_name() in ("Convolution", "GroupConvolution")]


def quantize(ov_model, inputs: list, keep_fp32=KEEP_FP32, overflow_fix: str = OVERFLOW_FIX):
    """NNCF post-training int8 quantization of ``ov_model`` calibrated on ``inputs``
    (numpy batches), leaving the first and/or last convolution in fp32.

    Weights use 7 of their 8 bits in every layer (NNCF's overflow fix, ``enable``; its
    default covers only the first layer). CPUs whose int8 kernels lack VNNI (AVX2, and
    AVX-512 before VNNI) add products in 16 bits, which saturate. With AVX2 kernels, a
    12-class U-Net agreed with fp32 on 0.970 of the pixels with NNCF's default and 0.999
    with the fix (``benchmarks/bench_int8_saturation.py``). Where VNNI or AMX computes,
    the fix cost no time beyond the noise and no measured accuracy (three trained
    models: pixel error and mIoU within 0.0003). So a quantized model keeps its answers
    on whichever CPU it is run or exported to (``overflow_fix="first_layer_only"`` is
    NNCF's default, for comparisons)."""
    nncf = _require_nncf()
    unknown = set(keep_fp32) - set(KEEP_FP32)
    if unknown:
        raise ValueError(f"keep_fp32={tuple(keep_fp32)!r}: choose from {list(KEEP_FP32)}")
    convs = _conv_names(ov_model)
    names = ([convs[0]] if "first" in keep_fp32 and convs else []) + \
            ([convs[-1]] if "last" in keep_fp32 and len(convs) > 1 else [])
    with _quiet_nncf(nncf):
        return nncf.quantize(ov_model, nncf.Dataset(inputs), subset_size=len(inputs),
                             ignored_scope=nncf.IgnoredScope(names=names, validate=False),
                             advanced_parameters=nncf.AdvancedQuantizationParameters(
                                 overflow_fix=nncf.OverflowFix(overflow_fix)))


def _quiet_nncf(nncf):
    """NNCF's progress bars and info lines off (library code does not print)."""
    import contextlib
    import io

    nncf.set_log_level(logging.ERROR)
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


def compile_model(ov_model, precision: str, num_threads: int | None = None):
    ov = require_openvino()
    config = {"INFERENCE_PRECISION_HINT": _HINTS[precision],
              "INFERENCE_NUM_THREADS": int(num_threads or torch.get_num_threads()),
              "PERFORMANCE_HINT": "LATENCY"}
    return ov.Core().compile_model(ov_model, "CPU", config)


def check_precision(precision: str, calibration) -> None:
    """ValueError for a precision this backend or this CPU cannot run as asked."""
    from . import cpu

    if precision not in _HINTS:
        raise ValueError(f"precision={precision!r} is not valid for backend='openvino'; "
                         f"choose one of {list(_HINTS)}")
    if precision == "bf16" and not cpu.cpu_features().bf16:
        raise ValueError(f"precision='bf16' needs a CPU with AVX512-BF16 or AMX; this is "
                         f"{cpu.cpu_features().describe()}")
    if precision != "int8" and calibration is not None:
        raise ValueError(f"calibration is only used by precision='int8', not {precision!r}")


def openvino_model(net: torch.nn.Module, source, *, precision: str = "fp32",
                   calibration=None, num_threads: int | None = None,
                   keep_fp32=KEEP_FP32, winograd: bool | None = None, shape=None):
    """An :class:`.export.InferenceModel` running ``net`` (folded, eval) with OpenVINO.

    ``winograd`` (fp32 only): the 3x3 convolutions where Winograd pays at an input of
    ``shape`` (default: one 256x256 image) are written as
    :class:`.winograd.GraphWinogradConv2d`; None: where :func:`.cpu.graph_winograd_ratio`
    says it pays on this CPU, False: never. The graph takes any input size either way."""
    check_precision(precision, calibration)
    require_openvino()
    wg = _winograd_plan(source, precision, winograd, shape)
    ov_model = convert(net, winograd=wg)
    info = {"backend": "openvino", "precision": precision}
    if wg is not None:
        from .winograd import GraphWinogradConv2d

        layers = sum(isinstance(m, GraphWinogradConv2d) for m in net.modules())
        if layers:
            info["winograd"] = {"layers": layers, "shape": list(wg[0]), "ratio": wg[1]}
    if precision == "int8":
        inputs = calibration_inputs(calibration, source)
        ov_model = quantize(ov_model, inputs, keep_fp32)
        info["calibration"] = {"batches": len(inputs),
                               "shapes": sorted({tuple(a.shape) for a in inputs}),
                               "keep_fp32": list(keep_fp32), "overflow_fix": OVERFLOW_FIX}
    return wrap(ov_model, source, precision=precision, num_threads=num_threads, info=info)


def _winograd_plan(source, precision, winograd, shape):
    """``(shape, ratio)`` for :func:`convert`, or None: no Winograd in this graph (not
    fp32, switched off, or no rule for this CPU)."""
    from . import cpu
    from .winograd import RATIO

    if precision != "fp32" or winograd is False:
        return None
    ratio = cpu.graph_winograd_ratio()
    if ratio is None:
        if not winograd:
            return None
        ratio = RATIO
    if shape is None:
        from .auto import _default_shape

        shape = _default_shape(source)
    return tuple(int(s) for s in shape), float(ratio)


def wrap(ov_model, source, *, precision: str, num_threads=None, info=None):
    from .export import InferenceModel, _pad_end

    compiled = compile_model(ov_model, precision, num_threads)
    multiple = _multiple(source)

    def run(x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = _pad_end(x.detach().float().cpu(), multiple).contiguous()
        y = torch.from_numpy(compiled(x.numpy())[0])
        if multiple > 1:  # same-padding: crop back what _pad_end added
            y = y[(slice(None), slice(None), *(slice(0, s) for s in size))]
        return y

    model = InferenceModel(run, backend="openvino", device="cpu", source=source)
    model.precision = precision
    model.ov_model = ov_model
    model.optimization = info or {"backend": "openvino", "precision": precision}
    return model


# ---- files --------------------------------------------------------------------------------

def _paths(path) -> tuple[Path, Path, Path]:
    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"{path}: an OpenVINO model file must end in .xml")
    return path, path.with_suffix(".bin"), path.with_name(path.name + ".card.json")


def check_writable(path, overwrite: bool = False) -> None:
    """UnetlabError if ``path`` (or its .bin / .card.json) exists and not ``overwrite``."""
    existing = [str(p) for p in _paths(path) if p.exists()]
    if existing and not overwrite:
        raise UnetlabError(f"{existing[0]} exists; pass --overwrite to replace it")


def save_openvino(model, path, *, card: dict | None = None, overwrite: bool = False) -> Path:
    """Write an OpenVINO :class:`InferenceModel` to ``path`` (``.xml`` + ``.bin``) with
    ``card`` (the model card, :mod:`unetlab.card`) plus ``extensions.optimization``
    (backend, precision, calibration) in its ``rt_info`` and in ``<name>.xml.card.json``.
    Refuses to replace files unless ``overwrite``."""
    import copy

    ov = require_openvino()
    check_writable(path, overwrite)
    xml, _, sidecar = _paths(path)
    card = copy.deepcopy(card or getattr(model, "unetlab_card", None) or {})
    card.setdefault("geometry", {})
    for name in ("in_channels", "num_classes", "spatial_dims", "padding", "levels",
                 "size_multiple"):
        if hasattr(model, name):
            card["geometry"][name] = getattr(model, name)
    if "architecture" not in card and getattr(model, "unetlab_config", None) is not None:
        card["architecture"] = model.unetlab_config
    card["extensions"] = {**(card.get("extensions") or {}),
                          "optimization": model.optimization}
    text = json.dumps(card, default=_jsonable)
    model.ov_model.set_rt_info(text, CARD_KEY)
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model.ov_model, str(xml), compress_to_fp16=False)
    tmp = sidecar.with_name(f".{sidecar.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(json.loads(text), indent=2) + "\n")
    os.replace(tmp, sidecar)
    return xml


def _jsonable(obj):
    if isinstance(obj, tuple | set):
        return list(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def read_card(path) -> dict:
    """The card stored in an OpenVINO model written by :func:`save_openvino`."""
    ov = require_openvino()
    xml, _, _ = _paths(path)
    if not xml.is_file():
        raise UnetlabError(f"{xml}: no such OpenVINO model")
    ov_model = ov.Core().read_model(str(xml))
    return _card_of(ov_model, xml)


def _card_of(ov_model, xml) -> dict:
    if not ov_model.has_rt_info(CARD_KEY):
        raise UnetlabError(f"{xml}: no {CARD_KEY} in its rt_info (not written by unetlab)")
    return json.loads(ov_model.get_rt_info(CARD_KEY).astype(str))


def load_openvino(path, *, num_threads: int | None = None):
    """A callable with the saved model's contract (geometry from its card)."""
    ov = require_openvino()
    xml, _, _ = _paths(path)
    if not xml.is_file():
        raise UnetlabError(f"{xml}: no such OpenVINO model")
    ov_model = ov.Core().read_model(str(xml))
    card = _card_of(ov_model, xml)
    from ..models.geometry import Geometry

    # the card's geometry as the model's own: the wrapper pads inputs to its pooling
    # multiple (without it, any size not a multiple failed inside the graph)
    geometry = Geometry.from_dict(card.get("geometry", {}))
    source = SimpleNamespace(**card.get("geometry", {}), geometry=lambda: geometry)
    if "architecture" in card:
        source.unetlab_config = card["architecture"]
    info = card.get("extensions", {}).get("optimization", {})
    precision = info.get("precision", "fp32")
    if precision == "bf16":
        from . import cpu

        precision = "bf16" if cpu.cpu_features().bf16 else "fp32"
    model = wrap(ov_model, source, precision=precision, num_threads=num_threads, info=info)
    model.card = model.unetlab_card = card
    return model
