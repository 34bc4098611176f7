"""Peak memory and time of GeoTIFF prediction at several scene sizes.

    python benchmarks/bench_raster.py --sizes 2048 8192 --json bench_raster.json

For each size a 4-band uint16 scene (the synthetic 1024^2 scene repeated, tiled and
deflate-compressed, with a CRS) is written once, then predicted by a tiny U-Net
(channels 4, 8; 5 classes) in its own subprocess, which reports its wall time and peak
resident set (VmHWM). Windowed reads and writes should make the peak grow with the
scene's width (one band of tiles) and not with its area.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_scene(path: Path, size: int, block: int = 1024) -> None:
    """A ``size`` x ``size`` 4-band scene: the synthetic block repeated."""
    from unetlab.data.synthetic_geo import CRS, geo_transform, make_geo_scene
    from unetlab.georaster import open_raster, window_of

    image, _ = make_geo_scene(block, seed=0)
    with open_raster(path, "w", driver="GTiff", width=size, height=size, count=4,
                     dtype="uint16", crs=CRS, transform=geo_transform(), nodata=0, tiled=True,
                     blockxsize=256, blockysize=256, compress="deflate",
                     BIGTIFF="IF_SAFER") as dst:
        for r in range(0, size, block):
            for c in range(0, size, block):
                h, w = min(block, size - r), min(block, size - c)
                dst.write(image[:, :h, :w], window=window_of(slice(r, r + h), slice(c, c + w)))


def child(args) -> None:
    import torch

    import unetlab
    from unetlab.inference.raster import predict_raster
    from unetlab.preprocess import Preprocessing

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = unetlab.create_model("unet", in_channels=4, num_classes=5, channels=(4, 8)).eval()
    norm = {"mean": [0.02, 0.02, 0.015, 0.045], "std": [0.01, 0.005, 0.005, 0.015]}
    prep = Preprocessing(channels=4, normalize=norm)
    start = time.perf_counter()
    with torch.no_grad():
        predict_raster(model, args.child, args.out, tile_size=args.tile_size,
                       batch_size=args.batch_size, preprocessing=prep,
                       geo={"bands": [1, 2, 3, 4]},
                       overwrite=True)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb()}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[2048, 8192])
    p.add_argument("--tile-size", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", type=Path, default=None, help="where scenes are written")
    p.add_argument("--json", type=Path, default=Path("bench_raster.json"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_raster_"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        scene = work / f"scene_{size}.tif"
        if not scene.exists():
            t = time.perf_counter()
            write_scene(scene, size)
            print(f"wrote {scene} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        cmd = [sys.executable, __file__, "--child", str(scene), "--out", str(work / "out"),
               "--tile-size", str(args.tile_size), "--batch-size", str(args.batch_size),
               "--threads", str(args.threads)]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True,
                              env={**os.environ}).stdout.strip().splitlines()[-1]
        run = {"size": size, "mpx": size * size / 1e6, **json.loads(line)}
        run["mpx_per_s"] = run["mpx"] / run["seconds"]
        results.append(run)
        print(f"{size}^2: {run['seconds']:.1f} s, {run['mpx_per_s']:.3f} Mpx/s, "
              f"peak RSS {run['peak_rss_mb']:.0f} MB", file=sys.stderr)
    if len(results) > 1:
        growth = results[-1]["peak_rss_mb"] - results[0]["peak_rss_mb"]
        print(f"peak RSS growth {args.sizes[0]}^2 -> {args.sizes[-1]}^2: {growth:+.0f} MB",
              file=sys.stderr)
    args.json.write_text(json.dumps({"tile_size": args.tile_size, "threads": args.threads,
                                     "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
