"""Augmentation: masks keep their label set, image/mask/weight move together, presets,
the U-Net paper's grid elastic deformation, configuration from YAML."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetlab.data import build_dataset, build_transforms, list_presets, transforms_from_config
from unetlab.data.elastic import GridElastic, _spline_matrix, grid_displacement


def _labelled(h=48, w=64, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    mask[5:30, 10:40] = 3
    mask[20:45, 30:60] = 7
    mask[::9, :] = 11
    image = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    return image, mask


@pytest.mark.parametrize("preset", ["none", "light", "paper", "strong"])
def test_label_set_never_grows(preset):
    image, mask = _labelled()
    labels = set(np.unique(mask).tolist())
    weight = mask.astype(np.float32) * 0.5 + 1.0
    t = build_transforms(preset, tile_size=32, seed=1)
    for _ in range(25):
        out = t(image=image, mask=mask, weight=weight)
        assert out["image"].shape[:2] == (32, 32) and out["mask"].shape == (32, 32)
        assert set(np.unique(out["mask"]).tolist()) <= labels
        # the weight map is moved exactly like the mask (nearest neighbour, same geometry)
        assert np.array_equal(out["weight"], out["mask"].astype(np.float32) * 0.5 + 1.0)


def test_presets_listed_and_none_is_identity():
    assert list_presets() == ("none", "flips", "light", "paper", "strong", "upright")
    image, mask = _labelled()
    out = build_transforms("none")(image=image, mask=mask)
    assert np.array_equal(out["image"], image) and np.array_equal(out["mask"], mask)


def test_image_and_mask_move_together():
    # the image encodes its own mask: any geometric mismatch would break equality
    _, mask = _labelled()
    image = (mask * 20).astype(np.uint8)
    t = build_transforms("none", hflip=1.0, vflip=1.0, rot90=1.0, seed=0)
    out = t(image=image, mask=mask)
    assert np.array_equal(out["image"], (out["mask"] * 20).astype(np.uint8))
    assert not np.array_equal(out["mask"], mask)


def test_spline_matrix_interpolates_nodes_and_constants():
    m = _spline_matrix(9, 3)
    assert m.shape == (9, 3)
    assert np.allclose(m[[0, 4, 8]], np.eye(3), atol=1e-6)  # passes through the nodes
    assert np.allclose(m.sum(1), 1.0, atol=1e-5)  # a constant field stays constant


def test_grid_displacement_statistics():
    rng = np.random.default_rng(0)
    dy, dx = grid_displacement((65, 65), 3, 10.0, rng)
    assert dy.shape == (65, 65)
    # nodes carry the N(0, 10) samples; the corners are nodes
    samples = []
    for seed in range(200):
        dy, dx = grid_displacement((17, 17), 3, 10.0, np.random.default_rng(seed))
        samples += [dy[0, 0], dx[8, 8], dy[16, 8]]
    assert 8.5 < np.std(samples) < 11.5
    # smooth: neighbouring pixels differ by far less than the displacement itself
    assert np.abs(np.diff(dy, axis=0)).max() < 4.0


def test_grid_elastic_moves_pixels_and_keeps_labels():
    import albumentations as A

    image, mask = _labelled(64, 64)
    t = A.Compose([GridElastic(grid=3, sigma=10.0, p=1.0)], seed=3)
    out = t(image=image, mask=mask)
    assert (out["mask"] != mask).mean() > 0.01
    assert set(np.unique(out["mask"]).tolist()) <= set(np.unique(mask).tolist())
    zero = A.Compose([GridElastic(sigma=0.0, p=1.0)], seed=3)(image=image, mask=mask)
    assert np.array_equal(zero["mask"], mask) and np.array_equal(zero["image"], image)


def test_seeded_pipeline_is_reproducible():
    image, mask = _labelled()
    a = build_transforms("strong", 32, seed=5)(image=image, mask=mask)
    b = build_transforms("strong", 32, seed=5)(image=image, mask=mask)
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["mask"], b["mask"])


def test_from_yaml_overrides_preset(tmp_path):
    cfg = tmp_path / "aug.yaml"
    cfg.write_text("preset: paper\ntile_size: [16, 24]\nelastic_sigma: 4\n"
                   "extra:\n  - {name: ToGray, p: 1.0}\n")
    t = transforms_from_config(cfg)
    assert t.params["elastic_sigma"] == 4 and t.params["tile_size"] == (16, 24)
    names = [type(x).__name__ for x in t.compose.transforms]
    assert "GridElastic" in names and names[-1] == "ToGray"
    image, mask = _labelled()
    out = t(image=image, mask=mask)
    assert out["mask"].shape == (16, 24)
    assert np.array_equal(out["image"][..., 0], out["image"][..., 1])


def test_dataset_with_transform_gives_tiles():
    ds = build_dataset("shapes", num_images=2, size=48,
                       transform=build_transforms("paper", tile_size=32, seed=0))
    item = ds[0]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (32, 32)
    assert item["image"].dtype == torch.float32 and 0 <= item["image"].min() <= 1


def test_workers_do_not_repeat_augmentations():
    from torch.utils.data import DataLoader, Subset

    def epochs(torch_seed):
        torch.manual_seed(torch_seed)
        ds = build_dataset("shapes", num_images=1, size=32,
                           transform=build_transforms("strong", seed=3)).preload()
        loader = DataLoader(Subset(ds, [0] * 4), batch_size=1, num_workers=2)
        return [round(b["image"].sum().item(), 3) for _ in range(2) for b in loader]

    first = epochs(0)
    assert len(set(first)) == len(first)  # no two workers or epochs alike
    assert epochs(0) == first  # reproducible under torch.manual_seed
