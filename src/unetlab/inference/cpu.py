"""What this CPU can do: its name and vector extensions, detected once per process.

The features decide the CPU-aware defaults: which precisions ``backend="auto"`` may try
(bf16 only with AVX512-BF16 or AMX, :func:`allowed_precisions`), and whether and where
Winograd convolutions pay (:func:`winograd_ratio`). Tests replace :func:`cpu_features`
(``monkeypatch.setattr(unetlab.inference.cpu, "cpu_features", lambda: fake)``); every
caller looks it up through this module.

A limit on the kernels counts as the CPU: with ``ONEDNN_MAX_CPU_ISA=AVX2`` (oneDNN, hence
PyTorch's convolutions and most of OpenVINO's CPU plugin) an AVX-512 machine runs AVX2
code, and bf16 there would be emulated (several times slower), so the features are cut
to what the limit allows and :meth:`CpuFeatures.describe` names the limit;
``ATEN_CPU_CAPABILITY=avx2`` (PyTorch's other kernels) cuts AVX-512 only. ONNX Runtime
ignores both variables, and OpenVINO's own element-wise kernels keep AVX-512.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import asdict, dataclass, replace
from pathlib import Path

#: /proc/cpuinfo flags behind each feature (any of them)
_FLAGS = {
    "avx2": ("avx2",),
    "avx512": ("avx512f",),
    "vnni": ("avx512_vnni", "avx_vnni"),
    "bf16": ("avx512_bf16", "amx_bf16"),
    "amx": ("amx_tile",),
}


@dataclass(frozen=True)
class CpuFeatures:
    """A CPU's name and the vector extensions that matter for inference."""

    name: str
    avx2: bool = False
    avx512: bool = False
    vnni: bool = False     # int8 dot products (AVX512-VNNI or AVX-VNNI)
    bf16: bool = False     # native bfloat16 (AVX512-BF16 or AMX-BF16)
    amx: bool = False      # Intel AMX tiles (bf16 and int8 matrix units)
    limit: str | None = None  # e.g. "ONEDNN_MAX_CPU_ISA=AVX2" when the kernels are held back
    vendor: str = ""       # /proc/cpuinfo's vendor_id, e.g. "GenuineIntel", "AuthenticAMD"
    family: int | None = None  # its "cpu family" (AMD: 25 = Zen 3/4, 26 = Zen 5)
    onednn_avx512: bool | None = None  # oneDNN's convolutions may run AVX-512 (None: as
    #                                    avx512; an ATen or oneMKL limit alone leaves it on)

    @property
    def mkl_behind_onednn(self) -> bool:
        """Whether PyTorch's float matrix products (oneMKL: the Winograd layers' channel
        mixing) run slower kernels here than its convolutions (oneDNN). oneMKL runs its
        AVX-512 kernels on Intel CPUs only; on an AMD Zen 5 (family 26, full-width AVX-512)
        oneDNN's AVX-512 convolutions then outrun oneMKL's AVX2 products. Measured
        (session 28, 2 threads): a 36 x (512x512 @ 512x2048) ``bmm`` took 212-223 ms with
        and without ``MKL_ENABLE_INSTRUCTIONS=AVX2``, and a 256-channel 3x3 convolution on
        2x64x64 maps (forward + backward) 75 ms with AVX-512 kernels against 120 ms with
        AVX2 ones. Zen 4 (256-bit units) is not included: not measured."""
        onednn = self.avx512 if self.onednn_avx512 is None else self.onednn_avx512
        return (onednn and self.vendor == "AuthenticAMD" and self.family is not None
                and self.family >= 26)

    @property
    def extensions(self) -> list[str]:
        """The present extensions, e.g. ``["AVX2", "AVX-512", "VNNI", "BF16", "AMX"]``."""
        names = {"avx2": "AVX2", "avx512": "AVX-512", "vnni": "VNNI", "bf16": "BF16",
                 "amx": "AMX"}
        return [label for key, label in names.items() if getattr(self, key)]

    def describe(self) -> str:
        """One line for benchmark tables and logs: ``name (AVX2, AVX-512, ...)``."""
        held = f"; kernels limited by {self.limit}" if self.limit else ""
        return f"{self.name} ({', '.join(self.extensions) or 'no AVX2'}{held})"

    def as_dict(self) -> dict:
        return {**asdict(self), "extensions": self.extensions}


def parse_cpuinfo(text: str) -> CpuFeatures:
    """Features from the text of ``/proc/cpuinfo`` (first processor)."""
    name, flags = platform.processor() or "unknown CPU", set()
    vendor, family = "", None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name in ("unknown CPU", platform.processor()):
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "vendor_id" and not vendor:
            vendor = value.strip()
        elif key == "cpu family" and family is None and value.strip().isdigit():
            family = int(value.strip())
    return CpuFeatures(name=name, vendor=vendor, family=family,
                       **{f: any(x in flags for x in names) for f, names in _FLAGS.items()})


#: oneDNN's ISA levels (``ONEDNN_MAX_CPU_ISA``) and the features its kernels may use at
#: each; ``ALL``, ``DEFAULT`` and names not listed here hold nothing back
_ONEDNN_LEVELS = {
    "SSE41": (), "AVX": (), "AVX2": ("avx2",), "AVX2_VNNI": ("avx2", "vnni"),
    "AVX2_VNNI_2": ("avx2", "vnni"), "AVX512_CORE": ("avx2", "avx512"),
    "AVX512_CORE_VNNI": ("avx2", "avx512", "vnni"),
    "AVX512_CORE_BF16": ("avx2", "avx512", "vnni", "bf16"),
    "AVX512_CORE_FP16": ("avx2", "avx512", "vnni", "bf16"),
    "AVX10_1_512": ("avx2", "avx512", "vnni", "bf16"),
}
#: PyTorch's ``ATEN_CPU_CAPABILITY`` values that hold features back (ATen's own vector
#: kernels; its convolutions are oneDNN's, limited by the above). PyTorch matches them
#: exactly, in lower case, and ignores others.
_ATEN_LEVELS = {"default": ("vnni", "bf16", "amx"), "avx2": ("avx2", "vnni", "bf16", "amx")}
#: oneMKL's ``MKL_ENABLE_INSTRUCTIONS`` values that hold features back: PyTorch's float
#: matrix products (``mm``, ``bmm``: the Winograd layers' channel mixing) are oneMKL's,
#: which neither variable above limits
_MKL_LEVELS = {"SSE4_2": (), "AVX": (), "AVX2": ("avx2",), "AVX2_E1": ("avx2", "vnni"),
               "AVX512": ("avx2", "avx512"), "AVX512_E1": ("avx2", "avx512", "vnni")}


def apply_limits(features: CpuFeatures, environ=None) -> CpuFeatures:
    """``features`` cut to what ``ONEDNN_MAX_CPU_ISA`` (or, when it is unset, its old name
    ``DNNL_MAX_CPU_ISA``; any case, as oneDNN reads them), ``ATEN_CPU_CAPABILITY``
    (exact lower case, as PyTorch reads it) and ``MKL_ENABLE_INSTRUCTIONS`` let the
    kernels use. To run a CPU as an AVX2 one, set all three (docs/inference.md)."""
    environ = os.environ if environ is None else environ
    keep, named = {"avx2", "avx512", "vnni", "bf16", "amx"}, []
    onednn = "ONEDNN_MAX_CPU_ISA" if environ.get("ONEDNN_MAX_CPU_ISA") else "DNNL_MAX_CPU_ISA"
    onednn_level = environ.get(onednn, "").strip().upper()
    for var, value, levels in (
            (onednn, onednn_level, _ONEDNN_LEVELS),
            ("ATEN_CPU_CAPABILITY", environ.get("ATEN_CPU_CAPABILITY", ""), _ATEN_LEVELS),
            ("MKL_ENABLE_INSTRUCTIONS", environ.get("MKL_ENABLE_INSTRUCTIONS", "").strip(),
             _MKL_LEVELS)):
        if value in levels:
            keep &= set(levels[value])
            named.append(f"{var}={environ[var].strip()}")
    cut = {f: False for f in ("avx2", "avx512", "vnni", "bf16", "amx")
           if getattr(features, f) and f not in keep}
    if not cut:
        return features
    onednn_avx512 = features.avx512 and (onednn_level not in _ONEDNN_LEVELS
                                         or "avx512" in _ONEDNN_LEVELS[onednn_level])
    return replace(features, **cut, limit=", ".join(named), onednn_avx512=onednn_avx512)


@functools.lru_cache(maxsize=1)
def _detect() -> CpuFeatures:
    try:
        features = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux: ask PyTorch what its kernels were built for
        features = CpuFeatures(name=platform.processor() or "unknown CPU")
    return apply_limits(_with_torch(features))


def _with_torch(features: CpuFeatures) -> CpuFeatures:
    """Fill in what /proc/cpuinfo could not tell (other OSes) from PyTorch's probes."""
    import torch

    cpu = getattr(torch, "cpu", None)

    def probe(name: str) -> bool:
        fn = getattr(cpu, name, None)
        try:
            return bool(fn()) if fn is not None else False
        except RuntimeError:
            return False

    capability = torch.backends.cpu.get_cpu_capability().upper()
    return replace(
        features,
        avx2=features.avx2 or capability in ("AVX2", "AVX512"),
        avx512=features.avx512 or capability == "AVX512",
        vnni=(features.vnni or probe("_is_avx512_vnni_supported")
              or probe("_is_avx2_vnni_supported")),
        bf16=features.bf16 or probe("_is_avx512_bf16_supported"),
        amx=features.amx or probe("_is_amx_tile_supported"),
    )


def cpu_features() -> CpuFeatures:
    """This machine's CPU features (detected on the first call, then cached)."""
    return _detect()


def allowed_precisions(features: CpuFeatures | None = None) -> tuple[str, ...]:
    """The CPU precisions worth trying here: ``fp32`` always, ``int8`` (fast with VNNI or
    AMX, still correct without), ``bf16`` only where the CPU computes it natively."""
    features = features or cpu_features()
    return ("fp32", "int8") + (("bf16",) if features.bf16 else ())


#: Winograd's channel-mixing ratio on Intel CPUs with AMX (full-width AVX-512 FMA units):
#: only layers of 512+ channels on maps of 32x32 or less pay there
AMX_WINOGRAD_RATIO = 64


def winograd_ratio(features: CpuFeatures | None = None) -> float | None:
    """The channel-mixing ratio above which :mod:`.winograd` is used on this CPU
    (``in_channels * out_channels >= ratio * N * H * W``), or None to leave it off.

    Measured per layer against oneDNN's direct convolution, 1 thread, on a Sapphire
    Rapids Xeon (AMX) shared with other jobs, twice (docs/inference.md): with its
    AVX-512 kernels Winograd paid only for 512 channels on 32x32 (1.8-1.9x; 1024 on
    16x16: 0.86-1.26x; 256 on 64x64: 0.8-1.0x; larger maps 0.4-0.7x), hence a 16x higher
    ratio; with oneDNN and PyTorch limited to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``) it paid
    from 256 channels on 128x128 (1.4x) to 512 on 32x32 (2.8x), the default ratio, which
    the earlier runs on a Zen 4 (AVX-512 on 256-bit units) also chose. Without AVX2 it
    stays off (not measured: PyTorch's generic kernels), and on an AMD Zen 5 with AVX-512
    kernels too (:attr:`CpuFeatures.mkl_behind_onednn`).
    """
    from .winograd import RATIO

    features = features or cpu_features()
    if features.amx:  # (a kernel limit below AMX falls back to the AVX2 ratio: not measured)
        return AMX_WINOGRAD_RATIO
    if features.mkl_behind_onednn:  # AMD Zen 5: off (session 28, whole U-Net 64..1024,
        return None                 # 2 threads, 4 runs: 0.97-1.04x at 256², 0.91-0.94x at 512²)
    return RATIO if features.avx2 else None


#: :func:`graph_winograd_ratio` on CPUs with AMX (AVX-512 kernels in OpenVINO's fp32)
GRAPH_AMX_WINOGRAD_RATIO = 16


def graph_winograd_ratio(features: CpuFeatures | None = None) -> float | None:
    """The channel-mixing ratio above which the OpenVINO runners' fp32 graphs compute a
    3x3 convolution of 256+ channels as Winograd (:func:`.winograd.apply_graph_winograd`),
    or None to leave it off.

    Measured per layer against OpenVINO's own fp32 convolution, 1x C x S x S, 2 threads,
    on a Sapphire Rapids Xeon (session 27, ``/work/s27/wg_ov_proto.py``; another job
    shared the machine, so the spread is wide): with its AVX-512 kernels 1024 channels on
    16x16 1.26-1.54x faster, 512 on 32x32 1.62-1.83x, 256 on 64x64 1.40-1.51x, 256 on
    128x128 (ratio 4) 0.89-1.12x, hence ratio 16 there; with AVX2 kernels in oneDNN
    (``ONEDNN_MAX_CPU_ISA=AVX2``, which OpenVINO's CPU plugin follows) 1.83x, 1.68x, 1.37x
    and 1.20x (ratio 4), the default ratio. Without AVX2: off (not measured). On an AMD
    Zen 5 (AVX-512, no AMX; OpenVINO's products are oneDNN's, so AMD gets their AVX-512
    kernels) the default ratio made the whole U-Net 64..1024 1.17-1.20x faster at 256² and
    1.05x at 512², 1.35x and 1.22-1.25x with AVX2 kernels (session 28, two runs each)."""
    from .winograd import RATIO

    features = features or cpu_features()
    if features.amx:
        return GRAPH_AMX_WINOGRAD_RATIO
    return RATIO if features.avx2 else None


def training_winograd(features: CpuFeatures | None = None) -> int | None:
    """The narrowest layer (min of in and out channels) that trains faster with
    :mod:`.winograd` on this CPU in float32, or None to leave it off.

    Measured per layer, forward + backward, 2 threads, batch 2 (docs/inference.md,
    "Winograd in training"), with AVX2 kernels (oneDNN, ATen and oneMKL held to AVX2) and
    with AVX-512 kernels on a Sapphire Rapids: 192-512 channels gained 1.56-2.25x and
    1.06-1.78x where the rule picks them; 128 channels gained at most 1.21x with AVX2
    kernels (0.97x on one map) and lost with AVX-512 (0.70-0.95x), so from 192 on both.
    Without AVX2 it stays off (not measured). On an AMD Zen 5 (session 28,
    ``benchmarks/bench_winograd_training.py``) it lost with AVX-512 kernels (0.58-1.10x
    where the rule picks it; see :attr:`CpuFeatures.mkl_behind_onednn`), so it is off
    there, and gained 1.14-2.20x with AVX2 kernels, as the rule expects.
    """
    from .winograd import TRAIN_MIN_CHANNELS

    features = features or cpu_features()
    if features.mkl_behind_onednn:  # AMD Zen 5 with AVX-512 kernels: 0.58-1.10x where the
        return None                 # rule would pick it (session 28), so off
    return TRAIN_MIN_CHANNELS if features.avx2 else None
