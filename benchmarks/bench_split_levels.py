"""OpenVINO fp32 and int8 of the U-Net with and without split decoder levels.

The runners' graphs start each decoder level with ``conv(skip) + conv(up)`` instead of
``conv(cat([skip, up]))`` (``unetlab.inference.export.split_concat_convs``). This times
both graphs (U-Net 64..1024 + batch norm folded, random weights, 1x3xSxS) with OpenVINO
fp32 and int8 (NNCF, 4 random calibration inputs, everything quantized, OpenVINO's
default precision for the rest) and ONNX Runtime fp32 (where the runners do not split,
for comparison), interleaved ``--rounds``
times, medians, and prints the largest difference from the PyTorch model.

    python benchmarks/bench_split_levels.py --sizes 256 --rounds 6 [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_inference import _cpu_line, _unet, refuse_existing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[256])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    refuse_existing(p, args.json)

    import nncf
    import openvino as ov

    from unetlab.inference.export import fold_batch_norm, onnx_bytes, split_concat_convs
    from unetlab.inference.openvino import _quiet_nncf

    try:
        import onnxruntime as ort
    except ImportError:
        ort = None

    torch.set_num_threads(args.threads)
    nncf.set_log_level(logging.ERROR)
    core = ov.Core()
    results = {"cpu": _cpu_line(), "threads": args.threads, "sizes": {}}
    for size in args.sizes:
        model = _unet((64, 128, 256, 512, 1024))
        torch.manual_seed(0)
        x = torch.rand(1, 3, size, size)
        with torch.no_grad():
            reference = model(x)
        torch.manual_seed(1)
        calib = [torch.rand(1, 3, size, size).numpy() for _ in range(4)]
        runners, diff = {}, {}
        for split in (False, True):
            net = fold_batch_norm(copy.deepcopy(model)).eval()
            if split:
                split_concat_convs(net)
            with torch.no_grad():
                diff[split] = float((net(x) - reference).abs().max())
            graph = ov.convert_model(io.BytesIO(onnx_bytes(net)))
            cfg = {"INFERENCE_NUM_THREADS": args.threads, "PERFORMANCE_HINT": "LATENCY"}
            name = "split" if split else "concat"
            runners[f"fp32 {name}"] = core.compile_model(
                graph, "CPU", {**cfg, "INFERENCE_PRECISION_HINT": "f32"})
            with _quiet_nncf(nncf):
                quantized = nncf.quantize(graph, nncf.Dataset(calib), subset_size=4)
            runners[f"int8 {name}"] = core.compile_model(quantized, "CPU", cfg)
            if ort is not None:
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = args.threads
                session = ort.InferenceSession(onnx_bytes(net), opts,
                                               providers=["CPUExecutionProvider"])
                runners[f"ort-fp32 {name}"] = lambda a, s=session: s.run(None, {"image": a})
        xs = x.numpy()
        times = {k: [] for k in runners}
        for _ in range(args.rounds):
            for k, f in runners.items():
                for _ in range(5 if k.startswith("int8") else 2):
                    t = time.perf_counter()
                    f(xs)
                    times[k].append(time.perf_counter() - t)
        median = {k: statistics.median(v) for k, v in times.items()}
        results["sizes"][size] = {"median_s": median, "max_abs_diff": diff}
        for k, v in median.items():
            base = median[k.split()[0] + " concat"]
            print(f"| {size} | {k} | {v * 1000:.1f} ms | {base / v:.2f}x | {results['cpu']} |")
        print(f"max |difference| from PyTorch: concat {diff[False]:.2e}, split {diff[True]:.2e}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
