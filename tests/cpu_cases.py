"""CPU feature detection and the CPU-aware defaults: what ``backend="auto"`` may pick
(never bf16 without BF16), its cached probe, and Winograd's use per CPU."""

from __future__ import annotations

import json

import pytest
import torch

import unetlab
from unetlab.inference import auto, cpu, optimize_for_inference

SPR = """processor : 0
model name : Intel(R) Xeon(R) Platinum 8480+
flags : fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
"""
EPYC_AVX2 = """processor : 0
model name : AMD EPYC 7R32
flags : fpu sse2 avx avx2 fma
"""
ZEN5 = """processor : 0
vendor_id : AuthenticAMD
cpu family : 26
model name : AMD EPYC 9575F
flags : fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16
"""
AVX2_ONLY = cpu.CpuFeatures(name="AVX2 CPU", avx2=True)
WITH_BF16 = cpu.CpuFeatures(name="AMX CPU", avx2=True, avx512=True, vnni=True, bf16=True,
                            amx=True)


def test_parse_cpuinfo_reads_name_and_extensions():
    spr, epyc = cpu.parse_cpuinfo(SPR), cpu.parse_cpuinfo(EPYC_AVX2)
    assert spr.name == "Intel(R) Xeon(R) Platinum 8480+"
    assert spr.extensions == ["AVX2", "AVX-512", "VNNI", "BF16", "AMX"]
    assert epyc.extensions == ["AVX2"] and not epyc.bf16
    assert epyc.describe() == "AMD EPYC 7R32 (AVX2)"


def test_a_kernel_limit_counts_as_the_cpu():
    spr = cpu.parse_cpuinfo(SPR)
    avx2 = cpu.apply_limits(spr, {"ONEDNN_MAX_CPU_ISA": "avx2"})
    assert avx2.extensions == ["AVX2"] and not avx2.bf16 and not avx2.amx
    assert avx2.describe() == ("Intel(R) Xeon(R) Platinum 8480+ (AVX2; kernels limited "
                               "by ONEDNN_MAX_CPU_ISA=avx2)")
    bf16 = cpu.apply_limits(spr, {"DNNL_MAX_CPU_ISA": "AVX512_CORE_BF16"})
    assert bf16.bf16 and not bf16.amx and bf16.avx512
    # ATen's own limit holds back AVX-512, not oneDNN's bf16 and AMX
    aten = cpu.apply_limits(spr, {"ATEN_CPU_CAPABILITY": "avx2"})
    assert not aten.avx512 and aten.bf16 and aten.limit == "ATEN_CPU_CAPABILITY=avx2"
    both = cpu.apply_limits(spr, {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"})
    assert both.extensions == ["AVX2"] and "ATEN_CPU_CAPABILITY" in both.limit
    # no limit, ALL, an unknown level or a limit above the CPU: nothing changes
    epyc = cpu.parse_cpuinfo(EPYC_AVX2)
    for env in ({}, {"ONEDNN_MAX_CPU_ISA": "ALL"}, {"ONEDNN_MAX_CPU_ISA": "AVX9"}):
        assert cpu.apply_limits(spr, env) is spr
    assert cpu.apply_limits(epyc, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}) is epyc
    # oneDNN reads ONEDNN_ first and the old DNNL_ name only when it is unset
    assert cpu.apply_limits(spr, {"ONEDNN_MAX_CPU_ISA": "ALL", "DNNL_MAX_CPU_ISA": "AVX2"}) \
        is spr
    assert cpu.apply_limits(spr, {"ONEDNN_MAX_CPU_ISA": "", "DNNL_MAX_CPU_ISA": "AVX2"}) \
        .extensions == ["AVX2"]
    # oneMKL's limit (PyTorch's matrix products) counts and is named too
    mkl = cpu.apply_limits(spr, {"MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    assert mkl.extensions == ["AVX2"] and mkl.limit == "MKL_ENABLE_INSTRUCTIONS=AVX2"
    three = cpu.apply_limits(spr, {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2",
                                   "MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    assert three.limit.count("=") == 3
    assert cpu.apply_limits(spr, {"MKL_ENABLE_INSTRUCTIONS": "AVX512_E1"}).bf16 is False
    # PyTorch matches ATEN_CPU_CAPABILITY in lower case only (and ignores "AVX2")
    assert cpu.apply_limits(spr, {"ATEN_CPU_CAPABILITY": "AVX2"}) is spr
    # the CPU-aware defaults follow: no bf16 candidate, the AVX2 Winograd ratio
    assert "bf16" not in cpu.allowed_precisions(avx2)
    assert cpu.winograd_ratio(avx2) == cpu.winograd_ratio(AVX2_ONLY)


def test_cpu_features_is_detected_once():
    assert cpu.cpu_features() is cpu.cpu_features()
    assert isinstance(cpu.cpu_features().describe(), str)


def _model():
    torch.manual_seed(0)
    return unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(8, 16),
                                norm="batch").eval()


@pytest.mark.parametrize("features", [AVX2_ONLY, WITH_BF16])
def test_auto_never_tries_bf16_without_native_bf16(features, monkeypatch, tmp_path):
    monkeypatch.setattr(cpu, "cpu_features", lambda: features)
    monkeypatch.setenv("UNETLAB_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("UNETLAB_AUTO_BACKENDS", raising=False)  # the full candidate list
    pairs = auto.candidates(calibration=True)
    assert any(p == "bf16" for _, p in pairs) == features.bf16
    assert ("openvino", "int8") in pairs or not auto.candidates(backend="openvino")
    assert all(p == "fp32" for _, p in auto.candidates(calibration=False))
    # the torch backend's probe: fp32 against bf16 only where the CPU has BF16
    calibration = [torch.rand(2, 1, 32, 32)]
    fast = optimize_for_inference(_model(), backend="torch", precision="auto",
                                  calibration=calibration)
    assert fast.choice["precision"] in (("fp32", "bf16") if features.bf16 else ("fp32",))
    tried = set(fast.choice.get("agreement", {}))
    assert ("torch_bf16" in tried) == features.bf16


def test_asking_for_bf16_or_int8_on_a_cpu_that_cannot_is_refused(monkeypatch):
    monkeypatch.setattr(cpu, "cpu_features", lambda: AVX2_ONLY)
    pytest.importorskip("openvino")
    with pytest.raises(ValueError, match="AVX512-BF16 or AMX"):
        optimize_for_inference(_model(), backend="openvino", precision="bf16")
    with pytest.raises(ValueError, match="AVX512-BF16 or AMX"):
        optimize_for_inference(_model(), backend="auto", precision="bf16",
                               calibration=[torch.rand(1, 1, 32, 32)])


def test_auto_probe_is_cached_and_keeps_fp32_answers(monkeypatch, tmp_path):
    monkeypatch.setenv("UNETLAB_CACHE_DIR", str(tmp_path))
    model = _model()
    first = optimize_for_inference(model, backend="auto", probe_shape=(1, 1, 32, 32))
    assert first.choice["cached"] is False and first.choice["precision"] == "fp32"
    assert min(first.choice["agreement"].values()) >= auto.AGREEMENT
    entries = json.loads(auto.cache_path().read_text())
    assert len(entries) == 1
    second = optimize_for_inference(model, backend="auto", probe_shape=(1, 1, 32, 32))
    assert second.choice["cached"] is True
    assert second.choice["backend"] == first.choice["backend"]
    x = torch.rand(2, 1, 40, 24)
    with torch.no_grad():
        assert (second(x) - model(x)).abs().max() < 1e-4
    # another input shape is another probe
    optimize_for_inference(model, backend="auto", probe_shape=(1, 1, 48, 48))
    assert len(json.loads(auto.cache_path().read_text())) == 2


def test_winograd_follows_the_cpu(monkeypatch):
    from unetlab.inference.winograd import WinogradConv2d

    model = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(8, 128))
    monkeypatch.setattr(cpu, "cpu_features", lambda: cpu.CpuFeatures(name="old CPU"))
    assert cpu.winograd_ratio() is None
    plain = optimize_for_inference(model, backend="torch")
    assert not any(isinstance(m, WinogradConv2d) for m in plain.net.modules())
    monkeypatch.setattr(cpu, "cpu_features", lambda: AVX2_ONLY)
    fast = optimize_for_inference(model, backend="torch")
    ratios = {m.ratio for m in fast.net.modules() if isinstance(m, WinogradConv2d)}
    assert ratios == {cpu.winograd_ratio(AVX2_ONLY)}
    # AMX CPUs: only the deepest layers pay (a higher channel-mixing ratio)
    assert cpu.winograd_ratio(WITH_BF16) > cpu.winograd_ratio(AVX2_ONLY)
    # the OpenVINO graphs' rule: off without AVX2, a higher ratio with AMX
    assert cpu.graph_winograd_ratio(cpu.CpuFeatures(name="old CPU")) is None
    assert cpu.graph_winograd_ratio(WITH_BF16) > cpu.graph_winograd_ratio(AVX2_ONLY) > 0


def test_auto_backends_can_be_limited(monkeypatch):
    monkeypatch.setenv("UNETLAB_AUTO_BACKENDS", "torch")
    assert {b for b, _ in auto.candidates()} == {"torch"}
    monkeypatch.delenv("UNETLAB_AUTO_BACKENDS")
    assert "torch" in {b for b, _ in auto.candidates()}


def test_amd_zen5_with_avx512_kernels_leaves_torch_winograd_off():
    """oneMKL (the Winograd products) runs AVX2 kernels on AMD while oneDNN's convolutions
    run AVX-512 ones: on a Zen 5 the torch backend and training keep the direct
    convolution; OpenVINO's graphs (oneDNN products) keep theirs; an AVX2 limit or an
    older AMD family keeps the measured AVX2 rules."""
    from unetlab.inference.winograd import RATIO, TRAIN_MIN_CHANNELS

    zen5 = cpu.parse_cpuinfo(ZEN5)
    assert (zen5.vendor, zen5.family) == ("AuthenticAMD", 26) and zen5.mkl_behind_onednn
    assert cpu.winograd_ratio(zen5) is None and cpu.training_winograd(zen5) is None
    assert cpu.graph_winograd_ratio(zen5) == RATIO
    limited = cpu.apply_limits(zen5, {"ONEDNN_MAX_CPU_ISA": "AVX2",
                                      "ATEN_CPU_CAPABILITY": "avx2",
                                      "MKL_ENABLE_INSTRUCTIONS": "AVX2"})
    assert not limited.mkl_behind_onednn and limited.vendor == "AuthenticAMD"
    assert cpu.winograd_ratio(limited) == RATIO
    assert cpu.training_winograd(limited) == TRAIN_MIN_CHANNELS
    # oneMKL's or ATen's limit alone leaves oneDNN's AVX-512 convolutions: still off
    for env in ({"MKL_ENABLE_INSTRUCTIONS": "AVX2"}, {"ATEN_CPU_CAPABILITY": "avx2"}):
        partial = cpu.apply_limits(zen5, env)
        assert not partial.avx512 and partial.mkl_behind_onednn
        assert cpu.winograd_ratio(partial) is None and cpu.training_winograd(partial) is None
    zen4 = cpu.parse_cpuinfo(ZEN5.replace("cpu family : 26", "cpu family : 25"))
    assert not zen4.mkl_behind_onednn and cpu.winograd_ratio(zen4) == RATIO
    spr = cpu.parse_cpuinfo(SPR.replace("processor : 0", "processor : 0\nvendor_id : GenuineIntel"))
    assert spr.vendor == "GenuineIntel" and not spr.mkl_behind_onednn
    assert cpu.training_winograd(spr) == TRAIN_MIN_CHANNELS
