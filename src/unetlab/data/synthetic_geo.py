"""A synthetic remote-sensing scene: roads, buildings, water and vegetation on textured
ground, as a 4-band uint16 GeoTIFF (red, green, blue, near-infrared; surface reflectance
x 10000 as in Sentinel-2 L2A products) with a CRS and a transform, and its label GeoTIFF.
Tests, the demo and the docs need no download.

    python -m unetlab.data.synthetic_geo --out data/geo_synthetic --size 1024 --seed 0

writes ``scene.tif`` and ``scene_labels.tif`` (or, with ``--tiles N``, N tile pairs in
``images/`` and ``labels/``). The scene is deterministic by ``(size, seed)``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from ..errors import UnetlabError
from .synthetic import _smooth_field

log = logging.getLogger(__name__)

GEO_CLASSES = ("ground", "road", "building", "water", "vegetation")
GEO_PALETTE = np.array([[200, 180, 140], [90, 90, 90], [220, 60, 50], [40, 90, 200],
                        [40, 150, 60]], dtype=np.uint8)
BAND_NAMES = ("red", "green", "blue", "nir")
#: typical reflectance x 10000 per class: red, green, blue, NIR
_REFLECTANCE = np.array([[1800, 1500, 1100, 2600],    # bare / dry ground
                         [1300, 1250, 1200, 1500],    # asphalt
                         [2300, 1700, 1500, 2300],    # roofs (tiles, concrete)
                         [300, 500, 700, 200],        # water: dark, NIR absorbed
                         [500, 900, 450, 4200]],      # vegetation: red edge, bright NIR
                        dtype=np.float32)
CRS = "EPSG:32633"                 # WGS 84 / UTM zone 33N
ORIGIN = (500_000.0, 5_100_000.0)  # upper-left corner, metres
PIXEL_SIZE = 1.0                   # metres
NODATA = 0


def make_geo_scene(size: int = 1024, seed: int = 0, *, nodata_corner: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One scene: ``(image (4, size, size) uint16, labels (size, size) uint8)``; labels
    are class ids of :data:`GEO_CLASSES`, 255 where the image is no-data (a corner cut
    off diagonally, as at the edge of a satellite swath, when ``nodata_corner``)."""
    if int(size) < 32:
        raise UnetlabError(f"synthetic scene size must be >= 32, got {size}")
    rng = np.random.default_rng([int(seed), 7])
    s = int(size)
    labels = np.zeros((s, s), dtype=np.uint8)
    # vegetation: thresholded smooth noise (fields, woods)
    veg = _smooth_field(rng, s, max(3, s // 96), 0.0, 1.0)
    labels[veg > 0.62] = 4
    # water: a river meandering from top to bottom (every band of rows holds some) and lakes
    ys = np.arange(s)
    xs = s * rng.uniform(0.3, 0.7) + s * 0.1 * np.sin(ys / s * rng.uniform(4, 8)
                                                      + rng.uniform(0, 6.3))
    pts = np.stack([xs, ys], 1).round().astype(np.int32)
    cv2.polylines(labels, [pts], False, 3, thickness=max(4, s // 60))
    for _ in range(int(rng.integers(1, 3 + s // 512))):
        centre = tuple(int(v) for v in rng.uniform(0, s, 2))
        axes = tuple(int(v) for v in rng.uniform(s * 0.02, s * 0.06, 2))
        cv2.ellipse(labels, centre, axes, rng.uniform(0, 180), 0, 360, 3, -1)
    # roads: a loose grid and a diagonal; buildings along them
    spacing = max(48, s // 6)
    road_w = max(3, s // 256)
    roads = np.zeros_like(labels)
    for pos in np.arange(rng.uniform(0.3, 0.7) * spacing, s, spacing):
        jitter = rng.uniform(-0.15, 0.15) * spacing
        cv2.line(roads, (int(pos), 0), (int(pos + jitter), s), 1, road_w)
        cv2.line(roads, (0, int(pos)), (s, int(pos - jitter)), 1, road_w)
    cv2.line(roads, (0, int(rng.uniform(0, s))), (s, int(rng.uniform(0, s))), 1, road_w + 1)
    labels[roads == 1] = 1
    n_buildings = int(s * s / 2500)
    for _ in range(n_buildings):
        cx, cy = rng.uniform(0, s, 2)
        w, h = rng.uniform(6, 18, 2) * max(1.0, s / 1024)
        box = cv2.boxPoints(((cx, cy), (w, h), rng.uniform(0, 90))).round().astype(np.int32)
        footprint = np.zeros_like(labels)
        cv2.fillPoly(footprint, [box], 1)
        under = labels[footprint == 1]
        if under.size and not np.isin(under, (1, 3)).any():  # not on roads or water
            labels[footprint == 1] = 2
    image = _render(rng, labels)
    if nodata_corner:
        yy, xx = np.mgrid[0:s, 0:s]
        cut = xx + yy < int(s * rng.uniform(0.12, 0.2))
        image[:, cut] = NODATA
        labels[cut] = 255
    return image, labels


def _render(rng, labels: np.ndarray) -> np.ndarray:
    """Reflectances per class, with ground texture, per-object variation, haze and noise."""
    s = labels.shape[0]
    refl = _REFLECTANCE[labels].transpose(2, 0, 1).copy()  # (4, s, s)
    texture = _smooth_field(rng, s, max(4, s // 24), 0.8, 1.2)
    fine = _smooth_field(rng, s, max(8, s // 6), 0.92, 1.08)
    refl *= (texture * fine)[None]
    refl = cv2.GaussianBlur(refl.transpose(1, 2, 0), (0, 0), 0.7).transpose(2, 0, 1)
    haze = _smooth_field(rng, s, 3, 0.0, 250.0)
    refl += haze[None] * np.array([1.0, 0.8, 0.6, 0.3], dtype=np.float32)[:, None, None]
    refl += rng.normal(0, 40, size=refl.shape).astype(np.float32)
    return np.clip(refl, 1, 10000).astype(np.uint16)  # 0 is reserved for no-data


def geo_transform(origin=ORIGIN, pixel_size: float = PIXEL_SIZE, offset=(0, 0)):
    """The affine transform of a scene whose upper-left pixel is ``offset`` (row, col)
    pixels from ``origin``."""
    from rasterio.transform import from_origin

    return from_origin(origin[0] + offset[1] * pixel_size, origin[1] - offset[0] * pixel_size,
                       pixel_size, pixel_size)


def write_scene_pair(image: np.ndarray, labels: np.ndarray, image_path, label_path, *,
                     transform=None, crs: str = CRS, overwrite: bool = False) -> tuple[Path, Path]:
    """Write an image GeoTIFF (tiled, deflate, band names, no-data 0) and its label
    GeoTIFF (uint8, colour table, no-data 255)."""
    from ..georaster import open_raster, require_rasterio

    require_rasterio()
    image_path, label_path = Path(image_path), Path(label_path)
    for p in (image_path, label_path):
        if p.exists() and not overwrite:
            raise UnetlabError(f"{p} exists; pass overwrite=True (--overwrite) to replace it")
        p.parent.mkdir(parents=True, exist_ok=True)
    transform = transform if transform is not None else geo_transform()
    h, w = labels.shape
    common = dict(driver="GTiff", width=w, height=h, crs=crs, transform=transform,
                  tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with open_raster(image_path, "w", count=image.shape[0], dtype=image.dtype.name,
                     nodata=NODATA, **common) as dst:
        dst.write(image)
        for i, name in enumerate(BAND_NAMES[: image.shape[0]], start=1):
            dst.set_band_description(i, name)
    with open_raster(label_path, "w", count=1, dtype="uint8", nodata=255, **common) as dst:
        dst.write(labels, 1)
        dst.write_colormap(1, {i: (*map(int, c), 255) for i, c in enumerate(GEO_PALETTE)})
        dst.update_tags(**{f"CLASS_{i}": n for i, n in enumerate(GEO_CLASSES)})
    return image_path, label_path


def write_geo_scene(out_dir, size: int = 1024, seed: int = 0, *, overwrite: bool = False,
                    nodata_corner: bool = True) -> tuple[Path, Path]:
    """``out_dir/scene.tif`` and ``out_dir/scene_labels.tif`` of :func:`make_geo_scene`."""
    out_dir = Path(out_dir)
    image, labels = make_geo_scene(size, seed, nodata_corner=nodata_corner)
    return write_scene_pair(image, labels, out_dir / "scene.tif",
                            out_dir / "scene_labels.tif", overwrite=overwrite)


def write_geo_tiles(out_dir, count: int = 8, size: int = 256, seed: int = 0, *,
                    overwrite: bool = False) -> list[tuple[Path, Path]]:
    """``count`` tiles of one scene as ``out_dir/images/tile_XX.tif`` and
    ``out_dir/labels/tile_XX.tif``, each with its own transform (side by side in a row)."""
    out_dir = Path(out_dir)
    image, labels = make_geo_scene(size * int(np.ceil(np.sqrt(count))), seed)
    per_row = image.shape[1] // size
    pairs = []
    for i in range(int(count)):
        r, c = divmod(i, per_row)
        rows, cols = slice(r * size, (r + 1) * size), slice(c * size, (c + 1) * size)
        pairs.append(write_scene_pair(
            image[:, rows, cols], labels[rows, cols], out_dir / "images" / f"tile_{i:02d}.tif",
            out_dir / "labels" / f"tile_{i:02d}.tif",
            transform=geo_transform(offset=(r * size, c * size)), overwrite=overwrite))
    return pairs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m unetlab.data.synthetic_geo",
                                description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--size", type=int, default=1024, help="scene (or tile) size in pixels")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiles", type=int, default=0,
                   help="write this many tile pairs in images/ and labels/ instead of one scene")
    p.add_argument("--no-nodata", action="store_true", help="no no-data corner")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    args = p.parse_args(argv)
    try:
        if args.tiles:
            written = write_geo_tiles(args.out, args.tiles, args.size, args.seed,
                                      overwrite=args.overwrite)
            sys.stdout.write(f"{len(written)} tile pairs in {args.out}\n")
        else:
            image, labels = write_geo_scene(args.out, args.size, args.seed,
                                            overwrite=args.overwrite,
                                            nodata_corner=not args.no_nodata)
            sys.stdout.write(f"{image}\n{labels}\n")
    except UnetlabError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
