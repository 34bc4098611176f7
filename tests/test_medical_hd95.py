"""HD95 in millimetres on an anisotropic grid, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from unetlab.metrics import hausdorff95_per_class, hausdorff_distance

SPACING = (2.0, 1.0, 0.5)  # mm along axes 0, 1, 2


def _points(*coords, shape=(7, 7, 7)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for c in coords:
        mask[c] = True
    return mask


def test_single_voxel_offsets_scale_with_each_axis_spacing():
    target = _points((3, 3, 3))
    # one voxel away along each axis: 2.0, 1.0 and 0.5 mm
    assert hausdorff_distance(_points((4, 3, 3)), target, spacing=SPACING) == pytest.approx(2.0)
    assert hausdorff_distance(_points((3, 4, 3)), target, spacing=SPACING) == pytest.approx(1.0)
    assert hausdorff_distance(_points((3, 3, 4)), target, spacing=SPACING) == pytest.approx(0.5)
    # a diagonal step of (1, 2, 4) voxels: sqrt(2^2 + 2^2 + 2^2) mm
    target = _points((1, 1, 1), shape=(4, 4, 6))
    pred = _points((2, 3, 5), shape=(4, 4, 6))
    assert hausdorff_distance(pred, target, spacing=SPACING) == pytest.approx(
        np.sqrt(2.0**2 + 2.0**2 + 2.0**2))


def test_percentile_interpolates_between_surface_distances_in_mm():
    # prediction: the target voxel plus one voxel 2 steps away along the 2 mm axis.
    # pred -> target distances: [0, 4 mm]; target -> pred: [0]. The 95th percentile of
    # [0, 4] (linear interpolation) is 0.95 * 4 = 3.8 mm; in voxel units it would be 1.9.
    target = _points((1, 3, 3))
    pred = _points((1, 3, 3), (3, 3, 3))
    assert hausdorff_distance(pred, target, spacing=SPACING) == pytest.approx(3.8)
    assert hausdorff_distance(pred, target) == pytest.approx(1.9)
    assert hausdorff_distance(pred, target, spacing=SPACING, percentile=100) == pytest.approx(4.0)
    assert hausdorff_distance(pred, target, spacing=SPACING, percentile=50) == pytest.approx(2.0)


def test_slabs_along_the_thick_and_thin_axes():
    # target: a slab of two planes; prediction: the same slab grown by 3 planes.
    shape = (10, 6, 6)
    target = np.zeros(shape, bool)
    target[2:4] = True
    pred = np.zeros(shape, bool)
    pred[2:7] = True
    # pred surface planes 2 (on the target) and 6 (3 planes past 3, the target's last);
    # pred's interior faces touch the image edge, so every voxel of the outer planes of
    # axes 1 and 2 is surface too. Distances pred->target (mm, 2 mm per plane along axis 0)
    # are 0 (plane 2, 3) ... up to 6 mm (plane 6): the max is 6 mm, the thin axes give 0.
    assert hausdorff_distance(pred, target, spacing=SPACING, percentile=100) == \
        pytest.approx(6.0)
    # the same along the 0.5 mm axis
    t2, p2 = np.moveaxis(target, 0, 2), np.moveaxis(pred, 0, 2)
    assert hausdorff_distance(p2, t2, spacing=SPACING, percentile=100) == pytest.approx(1.5)


def test_per_class_uses_the_spacing_and_skips_unlisted_classes():
    target = np.zeros((1, 4, 4, 6), np.int64)
    pred = np.zeros_like(target)
    target[0, 1, 1, 1] = 1
    pred[0, 1, 1, 3] = 1  # two steps along the 0.5 mm axis: 1 mm
    per = hausdorff95_per_class(pred, target, 2, spacing=SPACING, classes=[1])
    assert per[0] is None
    assert per[1] == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, -2.0, 1.0)])
def test_bad_spacing_is_an_error_naming_it(bad):
    mask = _points((1, 1, 1), shape=(3, 3, 3))
    with pytest.raises(ValueError, match="spacing"):
        hausdorff_distance(mask, mask, spacing=bad)
