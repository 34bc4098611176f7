"""Speed of int8 graph variants against OpenVINO's own int8 of the plain exported graph.

U-Net 64..1024 + batch norm (random weights: speed only), 1x3xSxS, NNCF post-training
quantization calibrated on 4 random inputs, the runners interleaved ``--rounds`` times
(``--repeats`` calls each), medians. Variants: which convolutions stay out of int8
(first, last, both, none) and OpenVINO's inference precision hint for what is left
unquantized (f32, or bf16 on CPUs that have it). Argmax agreement with the fp32 folded
graph is printed too (random weights: a sanity check, not an accuracy measure).

``--old-graph`` adds the two main runners on the graph as exported before session 24,
when every skip map went through a no-op crop (a Slice in the exported graph), to
measure in one run what removing it bought.

    python benchmarks/bench_int8_variants.py --sizes 256 512 --old-graph --json int8_variants.json
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
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--old-graph", action="store_true",
                   help="also time the graph with the no-op skip crops of before session 24")
    args = p.parse_args(argv)
    refuse_existing(p, args.json)

    import nncf
    import openvino as ov

    from unetlab.inference.cpu import cpu_features
    from unetlab.inference.export import fold_batch_norm, onnx_bytes
    from unetlab.inference.openvino import _conv_names, _quiet_nncf, convert, quantize

    torch.set_num_threads(args.threads)
    nncf.set_log_level(logging.ERROR)
    core = ov.Core()
    bf16 = cpu_features().bf16
    results = {"cpu": _cpu_line(), "threads": args.threads, "sizes": {}}

    def compiled(model, hint=None, latency=True):
        cfg = {"INFERENCE_NUM_THREADS": args.threads}
        if hint or not bf16:  # OpenVINO's default without BF16 (see _default_hint)
            cfg["INFERENCE_PRECISION_HINT"] = hint or "f32"
        if latency:
            cfg["PERFORMANCE_HINT"] = "LATENCY"
        c = core.compile_model(model, "CPU", cfg)
        return lambda a: c(a)[0]

    for size in args.sizes:
        model = _unet((64, 128, 256, 512, 1024))
        x = torch.rand(1, 3, size, size).numpy()
        torch.manual_seed(1)
        calib = [torch.rand(1, 3, size, size).numpy() for _ in range(4)]
        with _quiet_nncf(nncf):
            plain = nncf.quantize(
                ov.convert_model(io.BytesIO(onnx_bytes(copy.deepcopy(model).eval()))),
                nncf.Dataset(calib), subset_size=4)
        folded = convert(fold_batch_norm(copy.deepcopy(model)).eval())

        def quantized(keep, folded=folded, calib=calib):  # as unetlab quantizes
            return quantize(folded.clone(), calib, keep)

        both, none = quantized(("first", "last")), quantized(())
        old = {}
        if args.old_graph:
            with _always_crop():
                old_plain = ov.convert_model(io.BytesIO(onnx_bytes(copy.deepcopy(model).eval())))
                old_folded = ov.convert_model(io.BytesIO(onnx_bytes(  # no split levels
                    fold_batch_norm(copy.deepcopy(model)).eval())))
            old_convs = _conv_names(old_folded)
            with _quiet_nncf(nncf):
                old["old_graph_ov_plain_int8"] = compiled(nncf.quantize(
                    old_plain, nncf.Dataset(calib), subset_size=4), latency=False)
                old["old_graph_ours_keep_first_last_f32"] = compiled(nncf.quantize(
                    old_folded, nncf.Dataset(calib), subset_size=4,
                    ignored_scope=nncf.IgnoredScope(names=[old_convs[0], old_convs[-1]],
                                                    validate=False)), "f32")
        runners = {"ov_plain_int8": compiled(plain, latency=False),
                   "ours_keep_first_last_f32": compiled(both, "f32"),
                   "ours_all_int8_f32": compiled(none, "f32"),
                   "ours_keep_first_f32": compiled(quantized(("first",)), "f32"),
                   "ours_keep_last_f32": compiled(quantized(("last",)), "f32")}
        if bf16:
            runners["ours_keep_first_last_bf16hint"] = compiled(both, "bf16")
            runners["ours_all_int8_bf16hint"] = compiled(none, "bf16")
        runners.update(old)
        reference = compiled(folded, "f32")(x).argmax(1)
        agree = {k: float((f(x).argmax(1) == reference).mean()) for k, f in runners.items()}
        times = {k: [] for k in runners}
        for _ in range(args.rounds):
            for k, f in runners.items():
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    f(x)
                    times[k].append(time.perf_counter() - t)
        median = {k: statistics.median(v) for k, v in times.items()}
        results["sizes"][size] = {"median_s": median, "argmax_agreement": agree}
        base = median["ov_plain_int8"]
        for k, v in median.items():
            print(f"| {size} | {k} | {v * 1000:.1f} ms | {base / v:.2f}x | {agree[k]:.4f} | "
                  f"{results['cpu']} |", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _always_crop():
    """The U-Net's skip crop as it was before session 24: a slice even when the sizes
    already match (so the traced graph carries a Slice on every skip path)."""
    import contextlib
    from unittest import mock

    import unetlab.models.blocks as blocks_module
    import unetlab.models.unet as unet_module

    def crop(x, size):
        slices = [slice(None), slice(None)]
        for have, want in zip(x.shape[2:], size):
            start = (have - want) // 2
            slices.append(slice(start, start + want))
        return x[tuple(slices)]

    stack = contextlib.ExitStack()           # (the split decoder levels import it from
    for module in (unet_module, blocks_module):  # blocks when they run)
        stack.enter_context(mock.patch.object(module, "center_crop", crop))
    return stack


if __name__ == "__main__":
    sys.exit(main())
