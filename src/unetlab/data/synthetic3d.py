"""Synthetic 3-D volumes written as NIfTI: blobs and tubes in noise on an anisotropic grid.

Objects are drawn in millimetres, so a spherical blob spans fewer slices along the thick
axis, as in a clinical scan (default voxels 0.8 x 0.8 x 2.5 mm). Classes: 0 background,
1 blob (ellipsoids), 2 tube (thin cylinders). The affine flips the first axis and has an
origin offset, so a prediction that drops it is caught. Case ``i`` depends only on
``(seed, i)``.

    python -m unetlab.data.synthetic3d data/synthetic3d --cases 16
    # -> data/synthetic3d/images/case_000.nii.gz ... labels/case_000.nii.gz ...
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..errors import UnetlabError
from .volumes import check_spacing, write_volume

CLASS_NAMES = ("background", "blob", "tube")
DEFAULT_SHAPE = (64, 64, 24)
DEFAULT_SPACING = (0.8, 0.8, 2.5)


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-9), 0.0, 1.0)
    return np.linalg.norm(points - (a + t[..., None] * ab), axis=-1)


def make_volume(rng: np.random.Generator, shape=DEFAULT_SHAPE, spacing=DEFAULT_SPACING,
                modalities: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One case: (int16 image (X, Y, Z[, C]), uint8 labels (X, Y, Z))."""
    shape, spacing = tuple(int(s) for s in shape), np.asarray(spacing, dtype=np.float64)
    extent = np.asarray(shape) * spacing
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, spacing)],
                                indexing="ij"), -1)
    labels = np.zeros(shape, dtype=np.uint8)
    for _ in range(int(rng.integers(2, 5))):  # ellipsoid blobs, radii 3-7 mm
        centre = rng.uniform(0.15, 0.85, 3) * extent
        radii = rng.uniform(3.0, 7.0, 3)
        labels[(((grid - centre) / radii) ** 2).sum(-1) <= 1.0] = 1
    for _ in range(int(rng.integers(1, 3))):  # tubes across the volume, radius 1.2-2 mm
        a, b = rng.uniform(0.05, 0.95, (2, 3)) * extent
        a[2], b[2] = rng.uniform(0.1, 0.9, 2) * extent[2]
        labels[_segment_distance(grid, a, b) <= rng.uniform(1.2, 2.0)] = 2
    sigma_vox = 0.6 / spacing  # a blur of 0.6 mm, fewer voxels along the thick axis
    channels = []
    contrasts = ((0.25, 0.75, 0.55), (0.4, 0.2, 0.8))  # background, blob, tube per modality
    for m in range(modalities):
        levels = np.asarray(contrasts[m % 2], dtype=np.float32)
        image = levels[labels]
        coarse = rng.uniform(0.8, 1.2, (3, 3, 2)).astype(np.float32)  # smooth bias field
        bias = ndimage.zoom(coarse, [n / c for n, c in zip(shape, coarse.shape)], order=1,
                            grid_mode=True, mode="nearest")
        image = ndimage.gaussian_filter(image, sigma_vox) * bias
        image += rng.normal(0, 0.08, shape).astype(np.float32)
        channels.append(np.clip(image * 1000, -32768, 32767).astype(np.int16))
    image = channels[0] if modalities == 1 else np.stack(channels, -1)
    return image, labels


def synthetic_affine(spacing) -> np.ndarray:
    """Voxel -> mm: the first axis flipped (radiological x) and an origin offset."""
    sx, sy, sz = spacing
    return np.array([[-sx, 0, 0, 90.0], [0, sy, 0, -120.0], [0, 0, sz, -40.0], [0, 0, 0, 1]])


def write_synthetic_volumes(out, *, num_cases: int = 16, shape=DEFAULT_SHAPE,
                            spacing=DEFAULT_SPACING, modalities: int = 1,
                            channel_files: bool = False, seed: int = 0,
                            overwrite: bool = False) -> list[Path]:
    """Write ``num_cases`` cases as ``OUT/images/case_NNN.nii.gz`` (or one file per
    modality, ``case_NNN_0000.nii.gz``..., with ``channel_files``; otherwise several
    modalities go in one 4-D file) and ``OUT/labels/case_NNN.nii.gz``. Returns the
    image paths. Existing files are kept unless ``overwrite``."""
    out = Path(out)
    spacing = check_spacing(spacing, "spacing")
    if int(num_cases) < 1 or int(modalities) < 1:
        raise UnetlabError(f"num_cases ({num_cases}) and modalities ({modalities}) must be >= 1")
    if len(tuple(shape)) != 3 or min(int(s) for s in shape) < 4:
        raise UnetlabError(f"shape={tuple(shape)}: expected three sizes >= 4")
    if not overwrite and any((out / d).is_dir() and any((out / d).iterdir())
                             for d in ("images", "labels")):
        raise UnetlabError(f"{out} already holds images/ or labels/; pass --overwrite "
                           "(overwrite=True) to replace them")
    affine = synthetic_affine(spacing)
    written = []
    for i in range(int(num_cases)):
        image, labels = make_volume(np.random.default_rng([seed, i]), shape, spacing,
                                    int(modalities))
        case = f"case_{i:03d}"
        if channel_files:
            chans = [image] if image.ndim == 3 else np.moveaxis(image, -1, 0)
            for c, chan in enumerate(chans):
                written.append(write_volume(out / "images" / f"{case}_{c:04d}.nii.gz",
                                            np.ascontiguousarray(chan), affine=affine,
                                            overwrite=overwrite))
        else:
            written.append(write_volume(out / "images" / f"{case}.nii.gz", image,
                                        affine=affine, overwrite=overwrite))
        write_volume(out / "labels" / f"{case}.nii.gz", labels, affine=affine,
                     overwrite=overwrite)
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m unetlab.data.synthetic3d",
                                description="Write synthetic 3-D NIfTI volumes (blobs and "
                                "tubes in noise, anisotropic voxels) and their labels.")
    p.add_argument("out", type=Path, help="output folder (receives images/ and labels/)")
    p.add_argument("--cases", type=int, default=16)
    p.add_argument("--shape", type=int, nargs=3, default=DEFAULT_SHAPE, metavar=("X", "Y", "Z"))
    p.add_argument("--spacing", type=float, nargs=3, default=DEFAULT_SPACING,
                   metavar=("SX", "SY", "SZ"), help="voxel size in mm (default 0.8 0.8 2.5)")
    p.add_argument("--modalities", type=int, default=1)
    p.add_argument("--channel-files", action="store_true",
                   help="one file per modality (case_NNN_0000.nii.gz, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        files = write_synthetic_volumes(args.out, num_cases=args.cases, shape=args.shape,
                                        spacing=args.spacing, modalities=args.modalities,
                                        channel_files=args.channel_files, seed=args.seed,
                                        overwrite=args.overwrite)
    except UnetlabError as exc:
        print(f"synthetic3d: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(files)} image file(s) and {args.cases} label volume(s) under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
