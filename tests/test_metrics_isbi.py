"""ISBI 2012 pixel/Rand error and HD95: hand values and cross-checks (scikit-image, scipy)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.spatial.distance import cdist

from unetlab.metrics import hausdorff95_per_class, hausdorff_distance, pixel_error, rand_error


def test_pixel_error_hand_computed():
    target = np.array([[1, 0], [0, 0]])
    pred = np.array([[1, 1], [0, 0]])
    assert pixel_error(pred, target) == 0.25
    assert pixel_error(torch.from_numpy(pred)[None], torch.from_numpy(target)[None]) == 0.25


def test_rand_error_hand_computed_merge():
    # target: membrane column 2 splits two 3x2 cells; prediction misses the membrane
    target = np.zeros((3, 5), dtype=int)
    target[:, 2] = 1
    pred = np.zeros((3, 5), dtype=int)
    # restricted to the 12 cell pixels: n_ij = (6, 6), a = (6, 6), b = (12,)
    # P = 72 / 144, R = 72 / 72 -> F = 2/3
    assert rand_error(pred, target) == pytest.approx(1 / 3)
    # distinct pairs only: P = 60 / 132, R = 60 / 60
    p = 60 / 132
    assert rand_error(pred, target, count_self_pairs=False) == pytest.approx(1 - 2 * p / (p + 1))


def test_rand_error_hand_computed_split_by_predicted_membrane():
    # one true cell of 4 pixels; prediction puts membrane on one of them (a singleton)
    target = np.zeros((1, 4), dtype=int)
    pred = np.array([[0, 0, 1, 0]])
    # pred regions: {0,1}, singleton {2}, {3}: n_ij = (2, 1, 1), a = (4,), b = (2, 1, 1)
    # P = 6/6, R = 6/16
    r = 6 / 16
    assert rand_error(pred, target) == pytest.approx(1 - 2 * r / (1 + r))


def test_rand_error_perfect_and_no_cells():
    rng = np.random.default_rng(0)
    target = (rng.random((32, 32)) < 0.25).astype(int)
    assert rand_error(target, target) == 0.0
    # a target with no cell pixel has no foreground to score: None, not NaN
    assert rand_error(np.ones_like(target), np.ones_like(target)) is None


def skimage_rand_error(pred_membrane: np.ndarray, true_membrane: np.ndarray) -> float:
    from skimage.metrics import adapted_rand_error

    true_regions, _ = ndimage.label(true_membrane == 0)
    pred_regions, n = ndimage.label(pred_membrane == 0)
    singles = pred_regions == 0
    pred_regions[singles] = n + 1 + np.arange(int(singles.sum()))  # membrane = singletons
    return adapted_rand_error(true_regions, pred_regions, ignore_labels=(0,))[0]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), p_true=st.floats(0.05, 0.5), p_pred=st.floats(0.05, 0.5))
def test_rand_error_matches_skimage(seed, p_true, p_pred):
    rng = np.random.default_rng(seed)
    target = (rng.random((24, 24)) < p_true).astype(int)
    pred = (rng.random((24, 24)) < p_pred).astype(int)
    ours = rand_error(pred, target, count_self_pairs=False)
    assert ours == pytest.approx(skimage_rand_error(pred, target), abs=1e-12)
    assert 0.0 <= rand_error(pred, target) <= 1.0


def test_binary_input_errors():
    with pytest.raises(ValueError, match="binary membrane map"):
        rand_error(np.full((3, 3), 255), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="differs"):
        pixel_error(np.zeros((3, 3)), np.zeros((3, 4)))


@pytest.mark.data
def test_isbi_label_against_itself_and_eroded(isbi_root):
    from PIL import Image

    label = np.asarray(Image.open(isbi_root / "train" / "label" / "00.png"))
    membrane = (label == 0).astype(np.uint8)  # 255 = cell interior, 0 = membrane
    assert rand_error(membrane, membrane) == 0.0
    thick = ndimage.binary_dilation(membrane, iterations=2).astype(np.uint8)
    assert pixel_error(thick, membrane) > 0.05
    # thicker membranes keep the cells apart: small Rand error, far below missing ones
    assert rand_error(thick, membrane) < rand_error(np.zeros_like(membrane), membrane)


# ---------------------------------------------------------------- Hausdorff
def test_hausdorff_shifted_square():
    a = np.zeros((20, 20), bool)
    a[5:10, 5:10] = True
    b = np.roll(a, 3, axis=1)
    assert hausdorff_distance(a, b, percentile=100) == pytest.approx(3.0)
    assert hausdorff_distance(a, a) == 0.0
    assert hausdorff_distance(a, b, percentile=100, spacing=(1.0, 0.5)) == pytest.approx(1.5)


def test_hausdorff_empty_cases():
    empty = np.zeros((20, 20), bool)
    full = empty.copy()
    full[3, 3] = True
    assert hausdorff_distance(empty, empty) is None
    assert hausdorff_distance(full, empty) == pytest.approx(math.hypot(19, 19))


@pytest.mark.parametrize("seed", [0, 1])
def test_hausdorff_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    a = ndimage.gaussian_filter(rng.random((30, 30)), 2) > 0.5
    b = ndimage.gaussian_filter(rng.random((30, 30)), 2) > 0.5
    structure = np.ones((3, 3), bool)
    sa = np.argwhere(a & ~ndimage.binary_erosion(a, structure))
    sb = np.argwhere(b & ~ndimage.binary_erosion(b, structure))
    d = cdist(sa, sb)
    ref = max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))
    assert hausdorff_distance(a, b) == pytest.approx(ref)


def test_hd95_per_class_rules():
    target = np.zeros((2, 10, 10), int)
    target[:, 2:6, 2:6] = 1
    pred = target.copy()
    pred[1] = np.roll(pred[1], 2, axis=0)
    target[1, 0, :] = 255
    pred[1, 0, :] = 2  # under ignored pixels: must not count for class 2
    hd = hausdorff95_per_class(pred, target, 3, ignore_index=255)
    assert hd[2] is None
    assert hd[1] is not None and 0 < hd[1] <= 2.0
