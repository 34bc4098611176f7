"""Input-pipeline throughput: decode + augment + collate, in images/s.

ISBI 2012 (512x512 grey, "paper" augmentation incl. the grid elastic deformation) and
CamVid (360x480 RGB, "light" augmentation), each with the decoded-image cache off and
on, with 0, 1 and 2 DataLoader workers; and, for scale, one U-Net training step
(forward + backward) at the same size, so the ratio says whether training is
input-bound.

    .venv/bin/python benchmarks/bench_input_pipeline.py --data ../shared/data \
        [--images 40] [--torch-threads 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from unetlab.data import build_dataset, build_transforms


def throughput(dataset, workers: int, images: int, batch_size: int = 4) -> float:
    """Images per second through a DataLoader (decode + augment + collate)."""
    subset = torch.utils.data.Subset(dataset, [i % len(dataset) for i in range(images)])
    loader = DataLoader(subset, batch_size=batch_size, num_workers=workers,
                        persistent_workers=False)
    start = time.perf_counter()
    seen = 0
    for batch in loader:
        seen += batch["image"].shape[0]
    return seen / (time.perf_counter() - start)


def train_step_rate(in_channels: int, num_classes: int, size, batch_size: int = 1) -> float:
    """Images per second of one U-Net (paper widths, same padding) train step on CPU."""
    import unetlab

    model = unetlab.create_model("unet", in_channels=in_channels, num_classes=num_classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.99)
    x = torch.rand(batch_size, in_channels, *size)
    y = torch.randint(0, num_classes, (batch_size, *size))
    loss_fn = torch.nn.CrossEntropyLoss()
    for _ in range(2):  # one warm-up step, one timed
        start = time.perf_counter()
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--images", type=int, default=40, help="images per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-model", action="store_true", help="skip the U-Net step")
    parser.add_argument("--torch-threads", type=int, default=os.cpu_count() or 1,
                        help="torch intra-op threads in the main process (default: all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.torch_threads)

    setups = [
        ("isbi2012 512x512 paper", "isbi2012", args.data / "isbi2012",
         dict(split="all"), build_transforms("paper", seed=0), (1, 2, (512, 512))),
        ("camvid 360x480 light", "camvid", args.data / "camvid",
         dict(split="train"), build_transforms("light", seed=0), (3, 11, (360, 480))),
    ]
    rows = []
    for label, name, root, opts, transform, (cin, k, size) in setups:
        for cache in (False, True):
            ds = build_dataset(name, root, transform=transform, cache=cache, **opts)
            if cache:
                ds.names = ds.names[: args.images]  # only what is used, decoded once
                ds.samples = ds.samples[: args.images]
                ds.preload()
            for workers in args.workers:
                rate = throughput(ds, workers, args.images)
                rows.append({"setup": label, "cache": cache, "workers": workers,
                             "torch_threads": args.torch_threads,
                             "images_per_s": round(rate, 1)})
                print(f"{label:26s} cache={cache!s:5s} workers={workers}: "
                      f"{rate:7.1f} images/s", flush=True)
        if not args.no_model:
            rate = train_step_rate(cin, k, size)
            rows.append({"setup": label, "unet_train_step_images_per_s": round(rate, 3)})
            print(f"{label:26s} U-Net train step (batch 1): {rate:.3f} images/s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
