"""Winograd in training, per layer: a forward + backward of one 3x3 convolution (C -> C
channels, batch N, HxW maps, float32) with oneDNN's direct convolution against unetlab's
Winograd F(4x4, 3x3) with its own backward (``winograd._WinogradTraining``, the path
``train.winograd`` uses), and which of them the rule picks on this CPU.

The two are timed alternately (``--rounds`` rounds, medians). The rule
(``winograd.pays_in_training`` with ``cpu.training_winograd``'s minimum width) should
pick Winograd where the ratio is above 1. Run it with and without the AVX2 kernels:

    python benchmarks/bench_winograd_training.py --json wt_amx.json
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/bench_winograd_training.py --json wt_avx2.json

(all three: the Winograd path's matrix products are oneMKL's)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from bench_inference import _cpu_line, refuse_existing


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--channels", type=int, nargs="*", default=[128, 192, 256, 384, 512, 1024])
    p.add_argument("--sizes", type=int, nargs="*", default=[12, 16, 24, 32, 48, 64, 96])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-gflop", type=float, default=20.0,
                   help="skip layers whose direct forward costs more than this")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    refuse_existing(p, args.json)

    from unetlab.inference.cpu import training_winograd
    from unetlab.inference.winograd import _WinogradTraining, pays_in_training

    torch.set_num_threads(args.threads)
    minimum = training_winograd()
    results = {"cpu": _cpu_line(), "threads": args.threads, "min_channels": minimum,
               "layers": []}
    print(f"CPU: {results['cpu']}, {args.threads} threads; the rule's minimum width: "
          f"{minimum}")
    print("| C -> C | batch x H x W | pixels | direct ms | Winograd ms | direct / Winograd "
          "| rule picks |\n|---|---|---:|---:|---:|---:|---|")
    for c in args.channels:
        for size in args.sizes:
            n = args.batch
            if 2 * c * c * 9 * n * size * size / 1e9 > args.max_gflop:
                continue
            torch.manual_seed(0)
            x = torch.randn(n, c, size, size, requires_grad=True)
            w = (torch.randn(c, c, 3, 3) * 0.01).requires_grad_()
            b = torch.zeros(c, requires_grad=True)
            grad = torch.randn(n, c, size, size)

            def direct(x=x, w=w, b=b, grad=grad):
                torch.autograd.grad(F.conv2d(x, w, b, padding=1), (x, w, b), grad)

            def winograd(x=x, w=w, b=b, grad=grad):
                torch.autograd.grad(_WinogradTraining.apply(x, w, b, 1), (x, w, b), grad)

            times = {"direct": [], "winograd": []}
            direct(), winograd()   # warm-up
            for _ in range(args.rounds):
                for name, fn in (("direct", direct), ("winograd", winograd)):
                    t = time.perf_counter()
                    fn()
                    times[name].append((time.perf_counter() - t) * 1e3)
            d, wi = (statistics.median(times[k]) for k in ("direct", "winograd"))
            picks = minimum is not None and pays_in_training(x.shape, c, minimum)
            row = {"channels": c, "batch": n, "size": size, "pixels": n * size * size,
                   "direct_ms": round(d, 2), "winograd_ms": round(wi, 2),
                   "speedup": round(d / wi, 3), "rule_picks_winograd": picks}
            results["layers"].append(row)
            print(f"| {c} | {n}x{size}x{size} | {n * size * size} | {d:.1f} | {wi:.1f} | "
                  f"{d / wi:.2f}x | {'Winograd' if picks else 'direct'} |", flush=True)
    picked = [r["speedup"] for r in results["layers"] if r["rule_picks_winograd"]]
    left = [r["speedup"] for r in results["layers"] if not r["rule_picks_winograd"]]
    if picked:
        print(f"where the rule picks Winograd: {min(picked):.2f}-{max(picked):.2f}x")
    if left:
        print(f"where it keeps the direct convolution: Winograd would be "
              f"{min(left):.2f}-{max(left):.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
