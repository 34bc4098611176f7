"""Where OpenVINO spends its time, per kind of layer: OpenVINO's own int8 of the plain
exported graph against unetlab's int8 graphs (and fp32 with ``--fp32``).

U-Net 64..1024 + batch norm (random weights: speed only), 1x3xSxS, NNCF post-training
quantization calibrated on 4 random inputs, OpenVINO's per-layer counters
(``PERF_COUNT``) summed by layer type and kernel, medians of ``--repeats`` inferences.
It answers one question: how much of the time is in the convolutions themselves, which
both graphs hand to the same oneDNN kernels, and how much around them (reorders,
concatenations, quantize steps), which a better graph can remove. Run it with
``ONEDNN_MAX_CPU_ISA=AVX2`` to see the AVX2 kernels of an AVX-512 machine.

    python benchmarks/profile_openvino_layers.py --sizes 256 512 --json layers.json
"""

from __future__ import annotations

import argparse
import collections
import copy
import io
import json
import logging
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_inference import _cpu_line, _default_hint, _unet, refuse_existing

CONV_TYPES = ("Convolution", "ConvolutionBackpropData", "GroupConvolution")


def profile(compiled, x, repeats: int) -> dict:
    """Median milliseconds per (layer type, kernel) over ``repeats`` inferences."""
    request = compiled.create_infer_request()
    for _ in range(2):
        request.infer([x])
    runs = []
    for _ in range(repeats):
        request.infer([x])
        by = collections.Counter()
        for p in request.get_profiling_info():
            by[f"{p.node_type} [{p.exec_type}]"] += p.real_time.total_seconds() * 1e3
        runs.append(by)
    keys = set().union(*runs)
    return {k: statistics.median(r.get(k, 0.0) for r in runs) for k in keys}


def summary(layers: dict) -> dict:
    total = sum(layers.values())
    conv = sum(v for k, v in layers.items() if k.split(" [")[0] in CONV_TYPES)
    return {"total_ms": total, "conv_ms": conv, "conv_share": conv / total if total else 0.0,
            "layers": dict(sorted(layers.items(), key=lambda kv: -kv[1]))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fp32", action="store_true", help="also profile the fp32 graphs")
    p.add_argument("--top", type=int, default=8, help="layer kinds listed per graph")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    refuse_existing(p, args.json)

    import nncf
    import openvino as ov

    from unetlab.inference.export import fold_batch_norm, onnx_bytes
    from unetlab.inference.openvino import _quiet_nncf, convert, quantize

    torch.set_num_threads(args.threads)
    nncf.set_log_level(logging.ERROR)
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY",
              "PERF_COUNT": True}
    results = {"cpu": _cpu_line(), "threads": args.threads, "sizes": {}}
    print(f"CPU: {results['cpu']}, {args.threads} threads\n")
    for size in args.sizes:
        model = _unet((64, 128, 256, 512, 1024)).eval()
        x = torch.rand(1, 3, size, size).numpy()
        torch.manual_seed(1)
        calib = [torch.rand(1, 3, size, size).numpy() for _ in range(4)]

        def plain(model=model):
            return ov.convert_model(io.BytesIO(onnx_bytes(copy.deepcopy(model))))

        def ours(model=model):
            return convert(fold_batch_norm(copy.deepcopy(model)))

        with _quiet_nncf(nncf):
            own = nncf.quantize(plain(), nncf.Dataset(calib), subset_size=len(calib))
        graphs = {"OpenVINO's own int8, plain graph": (own, _default_hint()),
                  "unetlab int8 (first conv + head fp32)":
                      (quantize(ours(), calib), {"INFERENCE_PRECISION_HINT": "f32"}),
                  "unetlab int8, everything": (quantize(ours(), calib, keep_fp32=()),
                                               {"INFERENCE_PRECISION_HINT": "f32"})}
        if args.fp32:
            graphs["plain graph fp32"] = (plain(), {"INFERENCE_PRECISION_HINT": "f32"})
            graphs["unetlab fp32"] = (ours(), {"INFERENCE_PRECISION_HINT": "f32"})
        rows = {}
        for name, (graph, extra) in graphs.items():
            rows[name] = summary(profile(core.compile_model(graph, "CPU", {**config, **extra}),
                                         x, args.repeats))
        results["sizes"][size] = rows
        print(f"| 1x3x{size}², layer time (PERF_COUNT) | total ms | convolutions ms | "
              f"convolution share | largest other layer kinds |\n|---|---:|---:|---:|---|")
        for name, r in rows.items():
            others = [f"{k} {v:.2f}" for k, v in r["layers"].items()
                      if k.split(" [")[0] not in CONV_TYPES and v >= 0.01][:args.top]
            print(f"| {name} | {r['total_ms']:.1f} | {r['conv_ms']:.1f} | "
                  f"{100 * r['conv_share']:.0f} % | {'; '.join(others)} |")
        print()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
