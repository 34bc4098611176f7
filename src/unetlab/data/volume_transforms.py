"""Augmentation for 3-D volumes: a random patch (the training tile), flips, intensity.

2-D augmentation (albumentations) works on ``(H, W[, C])`` images; a volume
``(X, Y, Z, C)`` needs its own pipeline. Patches are cut with foreground oversampling
(nnU-Net's idea: a share of the patches is centred on a random labelled voxel, so
small structures are seen often); flips keep the voxel spacing, so they are safe on
anisotropic grids (90-degree turns are not, and are not used).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import UnetlabError

VOLUME_PRESETS: dict[str, dict] = {
    "none": dict(flip_p=0.0, intensity_p=0.0, noise_p=0.0),
    "light": dict(flip_p=0.5, intensity_p=0.5, noise_p=0.0),
    "paper": dict(flip_p=0.5, intensity_p=0.7, noise_p=0.0),
    "strong": dict(flip_p=0.5, intensity_p=0.8, noise_p=0.3),
}


def _tile3(tile_size) -> tuple[int, int, int] | None:
    if tile_size is None:
        return None
    if isinstance(tile_size, int | np.integer):
        tile_size = (int(tile_size),) * 3
    try:
        tile = tuple(int(t) for t in tile_size)
    except (TypeError, ValueError):
        tile = ()
    if len(tile) != 3 or min(tile) < 1:
        raise UnetlabError(f"tile_size={tile_size!r}: a volume needs one positive size or "
                           "three (one per axis)")
    return tile


class VolumeTransform:
    """``transform(image=(X, Y, Z, C), mask=(X, Y, Z)) -> dict`` of augmented arrays."""

    def __init__(self, tile_size=None, *, flip_p: float = 0.5, intensity_p: float = 0.5,
                 scale: float = 0.1, shift: float = 0.1, noise_p: float = 0.0,
                 noise_std: float = 0.1, foreground_p: float = 0.33, seed: int | None = None):
        self.tile = _tile3(tile_size)
        self.flip_p, self.intensity_p, self.noise_p = flip_p, intensity_p, noise_p
        self.scale, self.shift, self.noise_std = scale, shift, noise_std
        self.foreground_p = foreground_p
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self._pid = os.getpid()

    def set_seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self._pid = os.getpid()

    def __call__(self, *, image, mask=None, weight=None) -> dict:
        if os.getpid() != self._pid:  # a forked worker not reseeded by the trainer
            self.set_seed(int.from_bytes(os.urandom(4), "little"))
        rng = self.rng
        if self.tile is not None:
            image, mask = self._crop(rng, image, mask)
        for axis in range(3):
            if rng.random() < self.flip_p:
                image = np.flip(image, axis)
                mask = np.flip(mask, axis) if mask is not None else None
        image = np.ascontiguousarray(image, dtype=np.float32)
        if rng.random() < self.intensity_p:
            image = image * np.float32(1 + rng.uniform(-self.scale, self.scale)) \
                + np.float32(rng.uniform(-self.shift, self.shift))
        if rng.random() < self.noise_p:
            image = image + rng.normal(0, self.noise_std, image.shape).astype(np.float32)
        out = {"image": image}
        if mask is not None:
            out["mask"] = np.ascontiguousarray(mask)
        return out

    def _crop(self, rng, image, mask):
        shape = image.shape[:3]
        pad = [(0, max(0, t - s)) for t, s in zip(self.tile, shape)]
        if any(p[1] for p in pad):
            image = np.pad(image, pad + [(0, 0)] * (image.ndim - 3), mode="reflect"
                           if all(s > 1 for s in shape) else "edge")
            if mask is not None:
                mask = np.pad(mask, pad, mode="edge")
            shape = image.shape[:3]
        centre = None
        if mask is not None and rng.random() < self.foreground_p:
            fg = np.flatnonzero(mask > 0)
            if fg.size:
                centre = np.unravel_index(fg[rng.integers(fg.size)], shape)
        starts = []
        for axis, (t, s) in enumerate(zip(self.tile, shape)):
            if centre is None:
                starts.append(int(rng.integers(0, s - t + 1)))
            else:
                starts.append(int(np.clip(centre[axis] - t // 2, 0, s - t)))
        box = tuple(slice(a, a + t) for a, t in zip(starts, self.tile))
        return image[box], (mask[box] if mask is not None else None)

    def __repr__(self) -> str:
        return (f"VolumeTransform(tile={self.tile}, flip_p={self.flip_p}, "
                f"intensity_p={self.intensity_p}, noise_p={self.noise_p})")


def build_volume_transforms(preset: str = "light", tile_size=None, **options) -> VolumeTransform:
    """A 3-D pipeline by preset name (the 2-D preset names, 3-D-safe operations)."""
    if preset not in VOLUME_PRESETS:
        raise UnetlabError(f"unknown augmentation preset {preset!r} for volumes; choose from "
                           f"{', '.join(VOLUME_PRESETS)}")
    return VolumeTransform(tile_size, **{**VOLUME_PRESETS[preset], **options})
