"""Carry CamVid to a lent GPU machine losslessly, in parts that fit its transfer limit.

The device tool moves at most 64 MiB per call and CamVid's PNG frames take 119 MB, so
the frames travel as lossless WebP (0.70x the PNG bytes here) split over calls:

    python benchmarks/gpu_camvid_pack.py pack ../shared/data/camvid .gpudata --parts 2
    # on the machine, after each call has brought its part:
    python3 benchmarks/gpu_camvid_pack.py unpack .gpudata/p1 .gpudata/p2 --to .gpudata/camvid

``unpack`` writes PNGs and checks every decoded frame's pixels against the SHA-256 that
``pack`` recorded from the original, so the model sees exactly the shared data's pixels.
Annotation PNGs are copied byte for byte. Nothing is written into the source folder, and
an existing destination is refused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_DIRS = ("val", "train")          # val first: the first part also holds the labels
LABEL_FILES = ("trainannot", "valannot", "train.txt", "val.txt")


def pixels_digest(image: Image.Image) -> str:
    a = np.asarray(image)
    return hashlib.sha256(f"{a.shape}{a.dtype}".encode() + a.tobytes()).hexdigest()


def pack(src: Path, dst: Path, parts: int) -> None:
    frames = [(d, f.name) for d in IMAGE_DIRS for f in sorted((src / d).iterdir())]
    if dst.exists() and any(dst.iterdir()):
        sys.exit(f"error: {dst} is not empty; pick a new folder")
    dirs = [dst / f"p{i + 1}" for i in range(parts)]
    for d in dirs:
        d.mkdir(parents=True)
    for name in LABEL_FILES:
        (shutil.copytree if (src / name).is_dir() else shutil.copy2)(src / name, dirs[0] / name)
    sizes = [sum(f.stat().st_size for f in dirs[0].rglob("*") if f.is_file())] + [0] * (parts - 1)
    manifest = {}
    for d, f in frames:
        with Image.open(src / d / f) as im:
            manifest[f"{d}/{f}"] = {"sha256": pixels_digest(im), "mode": im.mode}
            part = int(np.argmin(sizes))  # greedily fill the smallest part
            out = dirs[part] / d / (Path(f).stem + ".webp")
            out.parent.mkdir(exist_ok=True)
            im.save(out, "WEBP", lossless=True, quality=100, method=4)
            sizes[part] += out.stat().st_size
    (dirs[0] / "manifest.json").write_text(json.dumps(manifest, indent=0))
    for d, s in zip(dirs, sizes):
        print(f"{d}: {s / 2**20:.1f} MiB")


def unpack(part_dirs: list[Path], to: Path) -> None:
    if to.exists():
        sys.exit(f"error: {to} exists; pick a new folder")
    manifest = json.loads((part_dirs[0] / "manifest.json").read_text())
    to.mkdir(parents=True)
    for name in LABEL_FILES:
        (shutil.copytree if (part_dirs[0] / name).is_dir() else shutil.copy2)(
            part_dirs[0] / name, to / name)
    done = 0
    for key, want in manifest.items():
        d, f = key.split("/")
        src = next((p / d / (Path(f).stem + ".webp") for p in part_dirs
                    if (p / d / (Path(f).stem + ".webp")).exists()), None)
        if src is None:
            sys.exit(f"error: {key} is in none of {', '.join(map(str, part_dirs))}")
        with Image.open(src) as im:
            im = im.convert(want["mode"])
            if pixels_digest(im) != want["sha256"]:
                sys.exit(f"error: {key}: decoded pixels differ from the original")
            (to / d).mkdir(exist_ok=True)
            im.save(to / d / f)
        done += 1
    print(f"{to}: {done} frames, pixels identical to the originals")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="CamVid folder -> parts of lossless WebP")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--parts", type=int, default=2)
    u = sub.add_parser("unpack", help="parts -> a CamVid folder of PNGs, pixels checked")
    u.add_argument("parts", type=Path, nargs="+")
    u.add_argument("--to", type=Path, required=True)
    a = ap.parse_args()
    if a.cmd == "pack":
        pack(a.src, a.dst, a.parts)
    else:
        unpack(a.parts, a.to)


if __name__ == "__main__":
    main()
