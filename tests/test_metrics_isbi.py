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


# ---- the leaderboard's threshold-swept scores (challenge_scores) ---------------------

def _brute_force_challenge(prob, target, thresholds):
    """The Fiji code's definition written pair by pair: binarise P(cell) > t, pool counts
    over the stack, keep the best F-score of each measure."""
    best_pixel, best_rand = 0.0, 0.0
    for t in thresholds:
        tp = fp = fn = 0
        ptp = pfp = pfn = 0
        for p_img, t_img in zip(prob, target):
            pred_cell, true_cell = (1 - p_img) > t, t_img == 0
            tp += int((pred_cell & true_cell).sum())
            fp += int((pred_cell & ~true_cell).sum())
            fn += int((~pred_cell & true_cell).sum())
            true_lab = ndimage.label(true_cell)[0].ravel()
            pred_lab = ndimage.label(pred_cell)[0].ravel()
            inside = np.flatnonzero(true_lab > 0)
            for x in range(len(inside)):
                for y in range(x + 1, len(inside)):
                    i, j = inside[x], inside[y]
                    same_true = true_lab[i] == true_lab[j]
                    same_pred = pred_lab[i] > 0 and pred_lab[i] == pred_lab[j]
                    ptp += same_true and same_pred
                    pfp += same_pred and not same_true
                    pfn += same_true and not same_pred

        def f(a, b, c):
            p = a / (a + b) if a + b else 0.0
            r = a / (a + c) if a + c else 0.0
            return 2 * p * r / (p + r) if p + r else 0.0

        best_pixel, best_rand = max(best_pixel, f(tp, fp, fn)), max(best_rand, f(ptp, pfp, pfn))
    return 1 - best_pixel, 1 - best_rand


@pytest.mark.parametrize("seed", range(4))
def test_challenge_scores_match_pairwise_definition(seed):
    from unetlab.metrics import challenge_scores

    rng = np.random.default_rng(seed)
    target = (rng.random((2, 7, 8)) < 0.35).astype(np.uint8)
    prob = np.clip(target * 0.6 + rng.random(target.shape) * 0.5, 0, 1)
    thresholds = (0.2, 0.5, 0.8)
    got = challenge_scores(prob, target, thresholds)
    want = _brute_force_challenge(prob, target, thresholds)
    assert got["pixel_error"] == pytest.approx(want[0], abs=1e-12)
    assert got["rand_error"] == pytest.approx(want[1], abs=1e-12)
    assert got["pixel_threshold"] in thresholds and got["rand_threshold"] in thresholds


def test_challenge_scores_perfect_and_best_threshold():
    from unetlab.metrics import ChallengeScores, challenge_scores

    target = np.zeros((6, 6), np.uint8)
    target[:, 3] = 1                                   # a membrane splits two cells
    perfect = challenge_scores(target.astype(float), target)
    assert perfect["pixel_error"] == 0 and perfect["rand_error"] == 0
    half = challenge_scores(torch.from_numpy(target).to(torch.bfloat16), target)  # any dtype
    assert half == perfect
    # a timid model (P(membrane) 0.3 on the membrane) is perfect only at threshold 0.7+:
    # the sweep finds it, a fixed 0.5 cut would merge the two cells
    timid = challenge_scores(target * 0.3, target)
    assert timid["pixel_error"] == 0 and timid["rand_error"] == 0
    assert timid["pixel_threshold"] >= 0.7
    assert pixel_error((target * 0.3 > 0.5).astype(int), target) > 0.1
    # accumulating image by image equals one call on the stack
    rng = np.random.default_rng(0)
    stack = (rng.random((3, 9, 9)) < 0.3).astype(np.uint8)
    prob = rng.random(stack.shape)
    acc = ChallengeScores()
    for p, t in zip(prob, stack):
        acc.update(torch.from_numpy(p), torch.from_numpy(t))
    assert acc.compute() == pytest.approx(challenge_scores(prob, stack))


def test_challenge_scores_reject_bad_input():
    from unetlab.metrics import challenge_scores

    target = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        challenge_scores(np.full((4, 4), 2.0), target)
    with pytest.raises(ValueError, match="shape"):
        challenge_scores(np.zeros((4, 5)), target)
