"""U-Net border weight map: hand values, agreement with the per-object definition, inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from unetlab.losses import border_weight_map


def naive_weight_map(objects: np.ndarray, w0=10.0, sigma=5.0) -> np.ndarray:
    """The definition, one distance transform per object (independent of the library)."""
    ids = [i for i in np.unique(objects) if i != 0]
    if len(ids) < 2:
        return np.ones(objects.shape)
    dists = np.stack([ndimage.distance_transform_edt(objects != i) for i in ids])
    dists.sort(axis=0)
    return 1 + w0 * np.exp(-((dists[0] + dists[1]) ** 2) / (2 * sigma**2))


def random_blobs(seed: int, shape=(96, 96), count=25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = np.zeros(shape, dtype=np.int32)
    for k in range(1, count + 1):
        centre = [rng.integers(0, s) for s in shape]
        radius = rng.integers(2, 7)
        grid = np.ogrid[tuple(slice(0, s) for s in shape)]
        inside = sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius**2
        lab[inside & (lab == 0)] = k
    return lab


def test_gap_between_two_objects_hand_computed():
    lab = np.zeros((9, 12), dtype=np.int64)
    lab[:, :5] = 1   # columns 0..4
    lab[:, 7:] = 1   # columns 7..11 (gap: columns 5, 6)
    w = border_weight_map(lab)
    # pixel in column 5: d1 = 1 (col 4), d2 = 2 (col 7)
    assert w[4, 5] == pytest.approx(1 + 10 * math.exp(-9 / 50), rel=1e-6)
    # inside the left object at column 2: d1 = 0, d2 = 5
    assert w[4, 2] == pytest.approx(1 + 10 * math.exp(-25 / 50), rel=1e-6)
    assert w.dtype == np.float32 and w.shape == lab.shape


def test_single_or_no_object_has_no_border_term():
    lab = np.zeros((8, 8), dtype=np.uint8)
    np.testing.assert_array_equal(border_weight_map(lab), np.ones((8, 8)))
    lab[2:5, 2:5] = 1
    np.testing.assert_array_equal(border_weight_map(lab), np.ones((8, 8)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_per_object_definition(seed):
    objects = random_blobs(seed)
    fast = border_weight_map(objects > 0, instances=objects)
    np.testing.assert_allclose(fast, naive_weight_map(objects), atol=1e-4)


def test_matches_definition_with_large_sigma_and_3d():
    objects = random_blobs(5, shape=(12, 30, 30), count=12)
    fast = border_weight_map(objects > 0, w0=5, sigma=8, instances=objects)
    np.testing.assert_allclose(fast, naive_weight_map(objects, 5, 8), atol=1e-4)


def test_touching_instances_need_instance_labels():
    lab = np.zeros((10, 10), dtype=np.int64)
    lab[2:8, 1:5] = 1
    lab[2:8, 5:9] = 1
    inst = np.where(lab > 0, np.where(np.arange(10) < 5, 1, 2)[None, :], 0)
    merged = border_weight_map(lab)  # one connected component: no border term
    np.testing.assert_array_equal(merged, np.ones((10, 10)))
    split = border_weight_map(lab, instances=inst)
    # pixel (4, 4) in object 1 touches object 2: d1 = 0, d2 = 1
    assert split[4, 4] == pytest.approx(1 + 10 * math.exp(-1 / 50), rel=1e-6)


def test_object_labels_and_class_weights():
    # dataset convention: 1 = membrane, 0 = cell; the cells are the objects
    mask = np.ones((6, 9), dtype=np.int64)
    mask[:, :3] = 0
    mask[:, 5:] = 0
    w = border_weight_map(mask, object_labels=0, class_weights={0: 1.0, 1: 2.0})
    # membrane pixel (col 3): d1 = 1, d2 = 2, class weight 2
    assert w[0, 3] == pytest.approx(2 + 10 * math.exp(-9 / 50), rel=1e-6)
    seq = border_weight_map(mask, w0=0, class_weights=[1.0, 2.0])
    np.testing.assert_array_equal(seq, np.where(mask == 1, 2.0, 1.0))
    balanced = border_weight_map(mask, w0=0, class_weights="balanced")
    # 2 of 9 columns membrane: n/(K n_c) = 54/(2*12) and 54/(2*42)
    assert balanced[0, 3] == pytest.approx(54 / 24) and balanced[0, 0] == pytest.approx(54 / 84)


def test_tensor_in_tensor_out():
    lab = torch.zeros(16, 16, dtype=torch.long)
    lab[2:6, 2:6] = 1
    lab[2:6, 8:12] = 1
    w = border_weight_map(lab)
    assert isinstance(w, torch.Tensor) and w.dtype == torch.float32
    np.testing.assert_allclose(w.numpy(), border_weight_map(lab.numpy()))


def test_bad_arguments():
    with pytest.raises(ValueError, match="integers"):
        border_weight_map(np.zeros((4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="sigma"):
        border_weight_map(np.zeros((4, 4), dtype=int), sigma=0)
    with pytest.raises(ValueError, match="'balanced'"):
        border_weight_map(np.zeros((4, 4), dtype=int), class_weights="median")
    with pytest.raises(ValueError, match=r"no entry for label values \[1\]"):
        border_weight_map(np.eye(4, dtype=int), class_weights={0: 1.0})
    with pytest.raises(ValueError, match="differs"):
        border_weight_map(np.eye(4, dtype=int), instances=np.eye(3, dtype=int))


@pytest.mark.data
def test_isbi_label_crop_matches_definition(isbi_root):
    from PIL import Image

    label = np.asarray(Image.open(isbi_root / "train" / "label" / "00.png"))[:160, :160]
    cells, _ = ndimage.label(label == 255)
    fast = border_weight_map(label)  # 255 = cell interior: the objects
    np.testing.assert_allclose(fast, naive_weight_map(cells), atol=1e-4)
    membrane = label == 0
    assert fast[membrane].mean() > fast[~membrane].mean() + 1.0
