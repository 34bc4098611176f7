"""Where a training step's time goes: the plain loop of ``bench_inference.py --train``
(U-Net 64..1024 + batch norm against MONAI BasicUNet with the same widths, Adam,
cross-entropy, batch 2 of 3x256²) under ``torch.profiler``, one step each after a
warm-up, grouped by operator; the share of the convolutions (forward and backward).

    python benchmarks/profile_train_step.py
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python benchmarks/profile_train_step.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_inference import WIDE, _basic_unet, _cpu_line, _monai, _unet

CONVS = ("aten::mkldnn_convolution", "aten::convolution_backward")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--top", type=int, default=6)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"CPU: {_cpu_line()}, {args.threads} threads\n")
    x = torch.rand(2, 3, args.size, args.size)
    y = torch.randint(0, 2, (2, args.size, args.size))
    models = {"unetlab": _unet(WIDE)}
    if _monai():
        models["monai_basicunet"] = _basic_unet(WIDE)
    print("| network | step s (sum of operator self-times) | convolutions | forward conv | "
          "backward conv | largest other operators |\n|---|---:|---:|---:|---:|---|")
    for name, model in models.items():
        model.train()
        opt = torch.optim.Adam(model.parameters(), 1e-4)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step(model=model, opt=opt, loss_fn=loss_fn):
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()
        with torch.profiler.profile() as prof:
            step()
        rows = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
        total = sum(rows.values())
        share = {k: rows.get(k, 0.0) / total for k in CONVS}
        others = sorted(((v, k) for k, v in rows.items() if k not in CONVS), reverse=True)
        print(f"| {name} | {total / 1e6:.2f} | {100 * sum(share.values()):.0f} % | "
              f"{100 * share[CONVS[0]]:.0f} % | {100 * share[CONVS[1]]:.0f} % | "
              + "; ".join(f"{k} {100 * v / total:.1f} %" for v, k in others[:args.top])
              + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
