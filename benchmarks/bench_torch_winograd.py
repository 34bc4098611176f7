"""Does Winograd through PyTorch pay on this CPU? Two measurements behind
``cpu.winograd_ratio`` and ``cpu.training_winograd``:

1. ``bmm``: the Winograd layers' channel mixing, 36 x (C x C @ C x P), float32. oneMKL
   computes it, and runs AVX-512 kernels on Intel CPUs only: run it again with
   ``MKL_ENABLE_INSTRUCTIONS=AVX2``; the same time means this CPU gets oneMKL's AVX2 code.
2. ``model``: ``optimize_for_inference(backend="torch")`` of U-Net 64..1024 + batch norm,
   1x3xSxS, with its Winograd layers forced on (``winograd=True``, the AVX2 ratio where
   the CPU's own rule is off) against ``winograd=False``, interleaved rounds, medians.

    python benchmarks/bench_torch_winograd.py --json torch_wg.json
    MKL_ENABLE_INSTRUCTIONS=AVX2 python benchmarks/bench_torch_winograd.py --sizes

Per layer in training: ``benchmarks/bench_winograd_training.py``.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_inference import WIDE, _cpu_line, _unet, refuse_existing


def _median(fn, repeats: int, warmup: bool = True) -> float:
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[256, 512])
    p.add_argument("--channels", type=int, default=512, help="C of the bmm")
    p.add_argument("--tiles", type=int, default=2048, help="P of the bmm")
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    refuse_existing(p, args.json)
    from unetlab.inference.export import optimize_for_inference

    torch.set_num_threads(args.threads)
    result = {"cpu": _cpu_line(), "threads": args.threads, "model": []}
    print(f"CPU: {result['cpu']}, {args.threads} threads")
    c, n = args.channels, args.tiles
    a, b = torch.rand(36, c, c), torch.rand(36, c, n)
    bmm = _median(lambda: torch.bmm(a, b), 10)
    result["bmm"] = {"shape": [36, c, c, n], "ms": bmm * 1e3,
                     "gflops": 2 * 36 * c * c * n / bmm / 1e9}
    print(f"bmm 36 x ({c}x{c} @ {c}x{n}): {bmm * 1e3:.1f} ms, "
          f"{result['bmm']['gflops']:.0f} GFLOP/s")
    if args.sizes:
        print("| 1x3xSxS | Winograd s | direct s | direct / Winograd |\n|---|---:|---:|---:|")
    for size in args.sizes:
        x = torch.rand(1, 3, size, size)
        net = _unet(WIDE).eval()
        runners = {"winograd": optimize_for_inference(net, backend="torch", winograd=True),
                   "direct": optimize_for_inference(net, backend="torch", winograd=False)}
        times = {k: [] for k in runners}
        with torch.inference_mode():
            for runner in runners.values():
                runner(x)
            for r in range(args.rounds):
                for k in (list(runners) if r % 2 == 0 else list(runners)[::-1]):
                    times[k] += [_median(functools.partial(runners[k], x), args.repeats, False)]
        med = {k: statistics.median(v) for k, v in times.items()}
        ratio = med["direct"] / med["winograd"]
        result["model"].append({"size": size, **med, "ratio": ratio})
        print(f"| {size} | {med['winograd']:.3f} | {med['direct']:.3f} | {ratio:.2f}x |")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
