"""SegmentationMetrics and boundary F1: hand-computed values, label rules, properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from unetlab.metrics import SegmentationMetrics, boundary_f1_scores


def assert_results_close(a: dict, b: dict) -> None:
    """Same keys; same None pattern; numbers equal up to float rounding."""
    assert a.keys() == b.keys()
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, list) and x and not isinstance(x[0], list):
            assert [v is None for v in x] == [v is None for v in y], key
            assert [v for v in x if v is not None] == pytest.approx(
                [v for v in y if v is not None]), key
        elif isinstance(x, float):
            assert x == pytest.approx(y), key
        else:
            assert x == y, key


TARGET = torch.tensor([[[0, 0, 1], [1, 2, 2]]])
PRED = torch.tensor([[[0, 1, 1], [1, 2, 0]]])


def test_hand_computed_confusion_metrics():
    m = SegmentationMetrics(3, boundary=False)
    m.update(PRED, TARGET)
    r = m.compute()
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert r["iou"] == pytest.approx([1 / 3, 2 / 3, 1 / 2])
    assert r["miou"] == pytest.approx(0.5)
    assert r["dice"] == pytest.approx([1 / 2, 4 / 5, 2 / 3])
    assert r["mdice"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert r["pixel_accuracy"] == pytest.approx(4 / 6)
    assert r["recall"] == pytest.approx([0.5, 1.0, 0.5])
    assert r["precision"] == pytest.approx([0.5, 2 / 3, 1.0])
    assert r["class_accuracy"] == pytest.approx(2 / 3)
    assert r["fwiou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert r["num_pixels"] == 6 and r["num_images"] == 1


def test_absent_class_is_none_and_left_out_of_means():
    m = SegmentationMetrics(4, boundary=True)
    m.update(PRED, TARGET)
    r = m.compute()
    assert r["iou"][3] is None and r["dice"][3] is None
    assert r["boundary_f1_per_class"][3] is None
    assert r["miou"] == pytest.approx(0.5)  # same as with 3 classes
    json.dumps(r, allow_nan=False)  # JSON-able, no NaN/inf


def test_false_positive_class_counts_as_zero():
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    pred = torch.tensor([[[0, 1], [0, 0]]])
    m = SegmentationMetrics(2, boundary=False)
    m.update(pred, target)
    r = m.compute()
    assert r["iou"] == pytest.approx([0.75, 0.0])
    assert r["recall"][1] is None  # undefined: class 1 absent from the target
    assert r["class_accuracy"] == pytest.approx(0.75)


def test_nothing_seen_gives_none_not_nan():
    m = SegmentationMetrics(3, ignore_index=255)
    m.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 255))
    r = m.compute()
    for key in ("miou", "mdice", "pixel_accuracy", "class_accuracy", "fwiou", "boundary_f1"):
        assert r[key] is None
    assert r["iou"] == [None, None, None]
    json.dumps(r, allow_nan=False)


def test_logits_and_binary_logits_equal_labels():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    a, b = SegmentationMetrics(3), SegmentationMetrics(3)
    a.update(logits, target)
    b.update(logits.argmax(1), target)
    assert a.compute() == b.compute()
    one = torch.randn(2, 1, 8, 8, generator=g)
    tb = torch.randint(0, 2, (2, 8, 8), generator=g)
    c, d = SegmentationMetrics(2), SegmentationMetrics(2)
    c.update(one, tb)
    d.update((one[:, 0] > 0).long(), tb)
    assert c.compute() == d.compute()


def test_numpy_inputs_and_3d():
    target = np.random.default_rng(0).integers(0, 2, (1, 4, 6, 6))
    m = SegmentationMetrics(2)
    m.update(target, target)
    r = m.compute()
    assert r["miou"] == 1.0 and r["boundary_f1"] == 1.0


def test_errors_show_shapes_and_values():
    m = SegmentationMetrics(3, ignore_index=255)
    with pytest.raises(ValueError, match=r"\(1, 2, 3\).*\(1, 3, 2\)"):
        m.update(torch.zeros(1, 2, 3, dtype=torch.long), torch.zeros(1, 3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"target has values \[7\]"):
        m.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="4 channels"):
        m.update(torch.randn(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\['dataset', 'image'\]"):
        SegmentationMetrics(3, reduction="batch")
    with pytest.raises(ValueError, match="one of the classes"):
        SegmentationMetrics(3, ignore_index=1)
    with pytest.raises(ValueError, match=">= 2"):
        SegmentationMetrics(1)
    with pytest.raises(ValueError, match="different settings"):
        SegmentationMetrics(3).merge(SegmentationMetrics(4))


def test_image_reduction_hand_computed():
    # image 0 perfect; image 1: class 1 pixel predicted as 0
    target = torch.tensor([[[0, 1]], [[0, 1]]])
    pred = torch.tensor([[[0, 1]], [[0, 0]]])
    m = SegmentationMetrics(2, boundary=False, reduction="image")
    m.update(pred, target)
    r = m.compute()
    assert r["iou"] == pytest.approx([(1 + 0.5) / 2, (1 + 0) / 2])
    d = SegmentationMetrics(2, boundary=False)
    d.update(pred, target)
    assert d.compute()["iou"] == pytest.approx([2 / 3, 1 / 2])


def test_merge_equals_one_pass_and_sync_without_dist_is_noop():
    g = torch.Generator().manual_seed(1)
    pred = torch.randint(0, 3, (4, 10, 10), generator=g)
    target = torch.randint(0, 3, (4, 10, 10), generator=g)
    whole = SegmentationMetrics(3, reduction="image")
    whole.update(pred, target)
    a, b = SegmentationMetrics(3, reduction="image"), SegmentationMetrics(3, reduction="image")
    a.update(pred[:1], target[:1])
    b.update(pred[1:], target[1:])
    assert_results_close(a.merge(b).sync().compute(), whole.compute())
    whole.reset()
    assert whole.compute()["num_pixels"] == 0


# ---------------------------------------------------------------- boundary F1
def test_boundary_f1_tolerance():
    target = torch.zeros(1, 6, 6, dtype=torch.long)
    target[0, :, :3] = 1
    pred = torch.zeros(1, 6, 6, dtype=torch.long)
    pred[0, :, :4] = 1
    tight = SegmentationMetrics(2, boundary_tolerance=0.0)
    tight.update(pred, target)
    assert tight.compute()["boundary_f1"] == 0.0
    loose = SegmentationMetrics(2, boundary_tolerance=0.12)  # radius 1.02 px
    loose.update(pred, target)
    assert loose.compute()["boundary_f1"] == 1.0
    perfect = SegmentationMetrics(2)
    perfect.update(target, target)
    assert perfect.compute()["boundary_f1_per_class"] == [1.0, 1.0]


def test_boundary_f1_hand_computed_partial():
    target = torch.zeros(1, 6, 6, dtype=torch.long)
    target[0, :, :3] = 1
    pred = target.clone()
    pred[0, 3:, 3] = 1
    f1, counted = boundary_f1_scores(pred, target, 2, tolerance=0.0)
    # pred boundary: col 2 rows 0-3 and col 3 rows 3-5 (7 px), 4 on the true boundary
    # (col 2, 6 px): P = 4/7, R = 4/6
    assert f1[0, 1].item() == pytest.approx(8 / 13)
    assert counted.all()


def test_boundary_f1_empty_cases():
    target = torch.zeros(1, 5, 5, dtype=torch.long)
    pred = target.clone()
    pred[0, 2, 2] = 1  # class 1 only in the prediction: F1 0
    f1, counted = boundary_f1_scores(pred, target, 3)
    assert counted[0].tolist() == [True, True, False]  # class 2 absent from both
    assert f1[0, 1].item() == 0.0
    same = boundary_f1_scores(target, target, 2)
    assert same[0][0, 0].item() == 1.0 and same[1][0].tolist() == [True, False]


def reference_bf(pred: np.ndarray, target: np.ndarray, c: int, radius: float):
    """Boundary F1 with scipy (erosion with border 1, exact Euclidean distances)."""
    structure = np.ones((3, 3), bool)
    pm, tm = pred == c, target == c
    pb = pm & ~ndimage.binary_erosion(pm, structure, border_value=1)
    tb = tm & ~ndimage.binary_erosion(tm, structure, border_value=1)
    if not pb.any() or not tb.any():
        return None
    dp = ndimage.distance_transform_edt(~tb)[pb]
    dt = ndimage.distance_transform_edt(~pb)[tb]
    p, r = (dp <= radius).mean(), (dt <= radius).mean()
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boundary_f1_matches_scipy_reference(seed):
    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.random((2, 40, 50)), (0, 3, 3))
    target = np.digitize(smooth, np.quantile(smooth, [0.33, 0.66]))
    noisy = ndimage.gaussian_filter(smooth + 0.02 * rng.standard_normal(smooth.shape), (0, 1, 1))
    pred = np.digitize(noisy, np.quantile(noisy, [0.3, 0.7]))
    tol = 0.03
    radius = tol * math.hypot(40, 50)
    f1, counted = boundary_f1_scores(torch.from_numpy(pred), torch.from_numpy(target), 3,
                                     tolerance=tol)
    for n in range(2):
        for c in range(3):
            ref = reference_bf(pred[n], target[n], c, radius)
            if ref is not None:
                assert f1[n, c].item() == pytest.approx(ref, abs=1e-9)


# ---------------------------------------------------------------- properties
label_maps = st.tuples(st.integers(1, 4), st.integers(1, 7), st.integers(1, 7),
                       st.integers(2, 4), st.integers(0, 10_000))


def _random(n, h, w, c, seed, ignore_frac=0.0):
    g = torch.Generator().manual_seed(seed)
    pred = torch.randint(0, c, (n, h, w), generator=g)
    target = torch.randint(0, c, (n, h, w), generator=g)
    ignore = torch.rand(n, h, w, generator=g) < ignore_frac
    return pred, torch.where(ignore, torch.full_like(target, 255), target), ignore


@settings(max_examples=25, deadline=None)
@given(label_maps, st.data(), st.sampled_from(["dataset", "image"]))
def test_streaming_over_any_split_equals_one_shot(shape, data, reduction):
    n, h, w, c, seed = shape
    pred, target, _ = _random(n, h, w, c, seed, 0.2)
    whole = SegmentationMetrics(c, ignore_index=255, reduction=reduction)
    whole.update(pred, target)
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=3)))
    streamed = SegmentationMetrics(c, ignore_index=255, reduction=reduction)
    for lo, hi in zip([0, *cuts], [*cuts, n]):
        if hi > lo:
            streamed.update(pred[lo:hi], target[lo:hi])
    assert_results_close(streamed.compute(), whole.compute())


@settings(max_examples=25, deadline=None)
@given(label_maps)
def test_dice_is_two_iou_over_one_plus_iou(shape):
    pred, target, _ = _random(*shape)
    m = SegmentationMetrics(shape[3], boundary=False)
    m.update(pred, target)
    r = m.compute()
    for iou, dice in zip(r["iou"], r["dice"]):
        assert (iou is None) == (dice is None)
        if iou is not None:
            assert dice == pytest.approx(2 * iou / (1 + iou))
            assert 0.0 <= iou <= 1.0


@settings(max_examples=25, deadline=None)
@given(label_maps, st.floats(0.0, 0.8))
def test_ignored_pixels_never_change_a_result(shape, frac):
    n, h, w, c, seed = shape
    pred, target, ignore = _random(n, h, w, c, seed, frac)
    other = torch.where(ignore, (pred + 1) % c, pred)
    results = []
    for p in (pred, other):
        m = SegmentationMetrics(c, ignore_index=255, reduction="image")
        m.update(p, target)
        results.append(m.compute())
    assert results[0] == results[1]


@pytest.mark.parametrize("radius", [0.5, 1.0, 1.5, 2.3, 5.43])
def test_disk_dilation_matches_scipy(radius):
    from unetlab.metrics.boundary import dilate

    mask = torch.rand(2, 30, 27) < 0.03
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    disk = yy**2 + xx**2 <= radius**2 + 1e-9
    ref = np.stack([ndimage.binary_dilation(m, disk) for m in mask.numpy()])
    np.testing.assert_array_equal(dilate(mask, radius).numpy(), ref)
    ball = np.add.outer(np.add.outer(np.arange(-2, 3) ** 2, np.arange(-2, 3) ** 2),
                        np.arange(-2, 3) ** 2) <= 2.5**2
    m3 = torch.rand(1, 7, 8, 9) < 0.05
    np.testing.assert_array_equal(dilate(m3, 2.5)[0].numpy(),
                                  ndimage.binary_dilation(m3[0].numpy(), ball))


@settings(max_examples=25, deadline=None)
@given(label_maps, st.floats(0.0, 0.5))
def test_confusion_metrics_match_numpy_reference(shape, frac):
    """Per-class IoU/Dice/accuracy by set counting in numpy, independent of bincount."""
    n, h, w, c, seed = shape
    pred, target, ignore = _random(n, h, w, c, seed, frac)
    m = SegmentationMetrics(c, ignore_index=255, boundary=False)
    m.update(pred, target)
    r = m.compute()
    p, t = pred.numpy()[~ignore.numpy()], target.numpy()[~ignore.numpy()]
    for k in range(c):
        inter, union = np.sum((p == k) & (t == k)), np.sum((p == k) | (t == k))
        if union == 0:
            assert r["iou"][k] is None
        else:
            assert r["iou"][k] == pytest.approx(inter / union)
            assert r["dice"][k] == pytest.approx(2 * inter / (np.sum(p == k) + np.sum(t == k)))
    if p.size:
        assert r["pixel_accuracy"] == pytest.approx(np.mean(p == t))
