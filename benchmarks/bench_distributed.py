"""Throughput of ``unetlab predict`` as 1 process and as N processes under torchrun.

Two workloads, each predicted by ``python -m unetlab predict`` (1 process, all cores) and
by ``torchrun --standalone --nproc_per_node=N -m unetlab predict`` (gloo on CPU, the cores
split between the processes; NCCL with ``--device cuda``, one GPU per process):

- ``files``: ``--images`` random uint8 PNGs of ``--size``² pixels (sharded by pixels);
- ``bands``: one random uint8 TIFF of ``--large``² pixels (split in row bands).

Wall time of the whole command (interpreter start and model load included), megapixels
per second, the speed-up over 1 process, and whether every output file is byte-identical
to the 1-process run's. Model: U-Net ``--channels`` (batch norm folded), 4 classes,
tile 256, overlap 0.25, batch 4.

    python benchmarks/bench_distributed.py --nproc 1 2 --images 16 --size 512 \\
        --large 2048 --json bench_distributed.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _make_data(root: Path, args) -> tuple[Path, Path, Path]:
    import tifffile
    import torch
    from PIL import Image

    import unetlab

    torch.manual_seed(0)
    model = unetlab.create_model("unet", in_channels=1, num_classes=4,
                                 channels=tuple(args.channels), norm="batch")
    ckpt = unetlab.save_model(model.eval(), root / "model.safetensors")
    rng = np.random.default_rng(0)
    files = root / "files"
    files.mkdir()
    for i in range(args.images):
        Image.fromarray(rng.integers(0, 256, (args.size, args.size), np.uint8)).save(
            files / f"img{i:04d}.png")
    large = root / "large"
    large.mkdir()
    tifffile.imwrite(large / "large.tif", rng.integers(0, 256, (args.large, args.large),
                                                       np.uint8))
    return ckpt, files, large


def _command(n: int, ckpt: Path, data: Path, out: Path, args) -> list[str]:
    launcher = [sys.executable, "-m"] if n == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={n}", "-m"]
    return [*launcher, "unetlab", "predict", str(ckpt), str(data), "--out", str(out),
            "--tile-size", "256", "--device", args.device, "--no-progress"]


def _outputs(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir()
            if p.is_file() and p.name != "predict_manifest.json"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--large", type=int, default=2048)
    parser.add_argument("--channels", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if 1 not in args.nproc:
        args.nproc = [1, *args.nproc]
    root = Path(tempfile.mkdtemp(prefix="bench_distributed_"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    try:
        ckpt, files, large = _make_data(root, args)
        work = {"files": (files, args.images * args.size ** 2), "bands": (large, args.large ** 2)}
        rows = []
        for name, (data, pixels) in work.items():
            reference = None
            base = None
            for n in args.nproc:
                out = root / f"out_{name}_{n}"
                t = time.perf_counter()
                done = subprocess.run(_command(n, ckpt, data, out, args), env=env,
                                      capture_output=True, text=True)
                seconds = time.perf_counter() - t
                if done.returncode != 0:
                    sys.exit(f"{name}, {n} process(es) failed:\n{done.stderr[-3000:]}")
                outputs = _outputs(out)
                reference = reference or outputs
                base = base or seconds
                rows.append({"workload": name, "processes": n, "seconds": round(seconds, 2),
                             "mpx_per_s": round(pixels / seconds / 1e6, 3),
                             "speedup": round(base / seconds, 2),
                             "identical_to_1": outputs == reference})
                shutil.rmtree(out)
        print("| workload | processes | seconds | Mpx/s | speed-up | identical |")
        print("|---|---:|---:|---:|---:|---|")
        for r in rows:
            print(f"| {r['workload']} | {r['processes']} | {r['seconds']} | {r['mpx_per_s']} "
                  f"| {r['speedup']}x | {r['identical_to_1']} |")
        result = {"machine": {"cpu": platform.processor() or platform.machine(),
                              "cores": os.cpu_count(), "python": platform.python_version()},
                  "settings": {k: v for k, v in vars(args).items() if k != "json"},
                  "rows": rows}
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
