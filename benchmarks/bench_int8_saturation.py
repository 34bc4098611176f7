"""int8 saturation on CPUs without VNNI: NNCF's overflow fix on every layer (unetlab's
quantization) against the fix on the first layer only (NNCF's default), all else equal.

Accuracy: U-Net 16..128 + batch norm, 12 classes, 1 channel, random weights (seed 0),
calibrated on 2 random batches of 4x256², argmax agreement with fp32 on another random
batch. Speed: U-Net 64..1024 + batch norm, 1x3xSxS, the two quantizations interleaved
(``--rounds``, the best of 3 calls each round, medians). unetlab's default layers stay in
fp32 (first conv and head) in both. Run it twice, with and without the AVX2 kernels:

    python benchmarks/bench_int8_saturation.py --json sat_amx.json
    ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/bench_int8_saturation.py --json sat_avx2.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_inference import TILED, WIDE, _cpu_line, _unet, refuse_existing

FIXES = ("enable", "first_layer_only")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[256, 512],
                   help="speed: input sizes (none: accuracy only)")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    refuse_existing(p, args.json)

    from unetlab.inference.export import fold_batch_norm
    from unetlab.inference.openvino import compile_model, convert, quantize

    torch.set_num_threads(args.threads)
    results = {"cpu": _cpu_line(), "threads": args.threads, "agreement": {}, "ms": {}}

    def quantized(model, calib, fix):
        return compile_model(quantize(convert(fold_batch_norm(copy.deepcopy(model))),
                                      calib, overflow_fix=fix), "int8")

    model = _unet(TILED, classes=12, in_channels=1)
    calib = [torch.rand(4, 1, 256, 256).numpy() for _ in range(2)]
    x = torch.rand(4, 1, 256, 256)
    with torch.no_grad():
        ref = model(x).argmax(1)
    for fix in FIXES:
        got = torch.from_numpy(quantized(model, calib, fix)(x.numpy())[0]).argmax(1)
        results["agreement"][fix] = float((got == ref).float().mean())

    for size in args.sizes:
        model = _unet(WIDE)
        xn = torch.rand(1, 3, size, size).numpy()
        calib = [torch.rand(1, 3, size, size).numpy() for _ in range(4)]
        runs = {fix: quantized(model, calib, fix) for fix in FIXES}
        times = {fix: [] for fix in FIXES}
        for run in runs.values():
            run(xn)
        for _ in range(args.rounds):
            for fix, run in runs.items():
                best = float("inf")
                for _ in range(3):
                    t = time.perf_counter()
                    run(xn)
                    best = min(best, time.perf_counter() - t)
                times[fix].append(best)
        results["ms"][size] = {fix: 1e3 * statistics.median(v) for fix, v in times.items()}

    print(f"CPU: {results['cpu']}, {args.threads} threads\n")
    print("| overflow fix | argmax agreement with fp32 (12 classes) | "
          + " | ".join(f"ms at {s}²" for s in args.sizes) + " |")
    print("|---|---:|" + "---:|" * len(args.sizes))
    for fix in FIXES:
        print(f"| {fix} | {results['agreement'][fix]:.4f} | "
              + " | ".join(f"{results['ms'][s][fix]:.1f}" for s in args.sizes) + " |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
