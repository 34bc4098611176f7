"""Losses: hand-computed values, label rules (docs/labels.md), properties, build_loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from unetlab.losses import (
    CrossEntropyLoss,
    DiceCELoss,
    DiceLoss,
    FocalLoss,
    GeneralizedDiceLoss,
    TverskyLoss,
    build_loss,
    list_losses,
)
from unetlab.metrics import SegmentationMetrics

LN3 = math.log(3.0)
ALL = [
    lambda **k: CrossEntropyLoss(**k),
    lambda **k: DiceLoss(**k),
    lambda **k: DiceLoss(reduction="image", **k),
    lambda **k: GeneralizedDiceLoss(**k),
    lambda **k: DiceCELoss(**k),
    lambda **k: FocalLoss(**k),
    lambda **k: TverskyLoss(alpha=0.3, beta=0.7, **k),
]


# ---------------------------------------------------------------- hand-computed values
def test_binary_dice_hand_computed():
    # logits 0 -> p = 0.5 everywhere; target has one foreground pixel of four.
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[1, 0], [0, 0]]])
    # tp = 0.5, fp = 1.5, fn = 0.5 -> dice = 1 / 3
    assert DiceLoss("binary")(logits, target).item() == pytest.approx(2 / 3)


def test_multiclass_dice_hand_computed():
    # two pixels; p = (0.25, 0.75) at both (logits 0 and ln 3)
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]]).T.reshape(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    # class 0: tp .25 fp .25 fn .75 -> .5 / 1.5 = 1/3; class 1: tp .75 fp .75 fn .25 -> 1.5/2.5
    expected = 1 - (1 / 3 + 0.6) / 2
    assert DiceLoss("multiclass")(logits, target).item() == pytest.approx(expected)
    # without background only class 1 counts
    no_bg = DiceLoss("multiclass", include_background=False)(logits, target)
    assert no_bg.item() == pytest.approx(0.4)
    # smoothing adds to both parts: (1.5 + 1) / (2.5 + 1) for class 1
    smoothed = DiceLoss("multiclass", include_background=False, smooth=1.0)(logits, target)
    assert smoothed.item() == pytest.approx(1 - 2.5 / 3.5)


def test_dice_log_loss_and_class_weights():
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]]).T.reshape(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    log = DiceLoss(log_loss=True)(logits, target).item()
    assert log == pytest.approx(-(math.log(1 / 3) + math.log(0.6)) / 2)
    weighted = DiceLoss(class_weights=[3.0, 1.0])(logits, target).item()
    assert weighted == pytest.approx((3 * (2 / 3) + 1 * 0.4) / 4)


def test_image_vs_batch_reduction_differ_as_defined():
    big = 20.0
    # image 0: class 1 predicted perfectly; image 1: class 1 absent, predicted nowhere.
    # image 1 also: class 0 everywhere. Batch and image give the same for this; add a miss:
    logits = torch.full((2, 2, 1, 4), -big)
    logits[:, 0] = big  # predict class 0 everywhere
    logits[0, :, 0, 0] = torch.tensor([-big, big])  # image 0 pixel 0 -> class 1 (correct)
    target = torch.zeros(2, 1, 4, dtype=torch.long)
    target[0, 0, 0] = 1
    target[1, 0, 0] = 1  # image 1 pixel 0 is class 1 but predicted 0
    # class 1: image 0 dice 1, image 1 dice 0 -> per-image mean 0.5; batch: 2*1/(2+1) = 2/3
    # class 0: image 0 dice 1, image 1: tp 3 fp 1 -> 6/7; batch: tp 6, fp 1 -> 12/13
    img = DiceLoss(reduction="image")(logits, target).item()
    bat = DiceLoss(reduction="batch")(logits, target).item()
    assert img == pytest.approx(1 - ((1 + 6 / 7) / 2 + 0.5) / 2, abs=1e-6)
    assert bat == pytest.approx(1 - (12 / 13 + 2 / 3) / 2, abs=1e-6)


def test_tversky_hand_and_dice_equivalence():
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[1, 0], [0, 0]]])
    # tp .5 fp 1.5 fn .5; alpha=0 beta=1 -> recall .5
    assert TverskyLoss("binary", alpha=0.0, beta=1.0)(logits, target).item() == pytest.approx(0.5)
    # alpha=1, beta=0 -> precision .25; focal gamma 2 -> .75^2
    tv = TverskyLoss("binary", alpha=1.0, beta=0.0, gamma=2.0)(logits, target).item()
    assert tv == pytest.approx(0.5625)
    x, t = torch.randn(2, 3, 5, 5), torch.randint(0, 3, (2, 5, 5))
    assert TverskyLoss()(x, t).item() == pytest.approx(DiceLoss()(x, t).item(), abs=1e-6)


def test_generalized_dice_hand_computed():
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]]).T.reshape(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    # both classes have volume 1 -> equal weights -> 1 - 2(.25+.75)/(1.5 + 2.5)
    assert GeneralizedDiceLoss()(logits, target).item() == pytest.approx(0.5)
    # one class only = plain Dice
    x, t = torch.randn(2, 1, 4, 4), torch.randint(0, 2, (2, 4, 4))
    assert GeneralizedDiceLoss("binary")(x, t).item() == pytest.approx(
        DiceLoss("binary")(x, t).item(), abs=1e-6)


def test_generalized_dice_volume_weights():
    # class 0 has 3 pixels, class 1 one pixel: w = 1/9 and 1 (rescaled: 1/9, 1)
    logits = torch.zeros(1, 2, 1, 4)  # p = .5 everywhere
    target = torch.tensor([[[0, 0, 0, 1]]])
    w0, w1 = 1 / 9, 1.0
    num = 2 * (w0 * 1.5 + w1 * 0.5)
    den = w0 * (2 * 1.5 + 0.5 + 1.5) + w1 * (2 * 0.5 + 1.5 + 0.5)
    assert GeneralizedDiceLoss()(logits, target).item() == pytest.approx(1 - num / den)


def test_generalized_dice_absent_class_no_inf():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.zeros(1, 4, 4, dtype=torch.long)  # classes 1 and 2 absent from target
    loss = GeneralizedDiceLoss()(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert 0 <= loss.item() <= 1


def test_cross_entropy_matches_torch():
    x, t = torch.randn(2, 4, 6, 5), torch.randint(0, 4, (2, 6, 5))
    t[0, :2] = 255
    w = torch.tensor([0.5, 2.0, 1.0, 3.0])
    ours = CrossEntropyLoss(class_weights=w, ignore_index=255)(x, t)
    ref = F.cross_entropy(x, t, weight=w, ignore_index=255)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    ours = CrossEntropyLoss(label_smoothing=0.1, ignore_index=255)(x, t)
    ref = F.cross_entropy(x, t, ignore_index=255, label_smoothing=0.1)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_cross_entropy_pixel_weights_hand_computed():
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]]).T.reshape(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    pw = torch.tensor([[[3.0, 1.0]]])
    expected = (3 * -math.log(0.25) + 1 * -math.log(0.75)) / 4
    loss = CrossEntropyLoss(use_pixel_weight=True)
    assert loss.uses_pixel_weight
    assert loss(logits, target, pw).item() == pytest.approx(expected)
    # class weight x pixel weight
    cw = CrossEntropyLoss(class_weights=[1.0, 2.0])(logits, target, pw).item()
    assert cw == pytest.approx((3 * -math.log(0.25) + 2 * -math.log(0.75)) / 5)


def test_binary_cross_entropy_and_smoothing():
    logits = torch.tensor([[[[0.0, LN3]]]])
    target = torch.tensor([[[1, 0]]])
    # sigmoid(ln3) = .75: pixel 0 -log .5, pixel 1 -log .25
    ce = CrossEntropyLoss("binary")(logits, target).item()
    assert ce == pytest.approx((math.log(2) + math.log(4)) / 2)
    ref = F.binary_cross_entropy_with_logits(logits, torch.tensor([[[[0.95, 0.05]]]]))
    assert CrossEntropyLoss("binary", label_smoothing=0.1)(logits, target).item() == \
        pytest.approx(ref.item())


def test_focal_hand_computed_and_gamma0_is_ce():
    logits = torch.tensor([[0.0, LN3], [0.0, LN3]]).T.reshape(1, 2, 1, 2)
    target = torch.tensor([[[0, 1]]])
    expected = (0.75**2 * -math.log(0.25) + 0.25**2 * -math.log(0.75)) / 2
    assert FocalLoss(gamma=2.0)(logits, target).item() == pytest.approx(expected)
    alpha = FocalLoss(gamma=2.0, alpha=[2.0, 1.0])(logits, target).item()
    assert alpha == pytest.approx((2 * 0.75**2 * -math.log(0.25)
                                   + 0.25**2 * -math.log(0.75)) / 2)
    x, t = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    assert FocalLoss(gamma=0.0)(x, t).item() == pytest.approx(F.cross_entropy(x, t).item(),
                                                              rel=1e-5)
    xb, tb = torch.randn(2, 1, 4, 4), torch.randint(0, 2, (2, 4, 4))
    assert FocalLoss("binary", gamma=0.0)(xb, tb).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(xb, tb[:, None].float()).item(), rel=1e-5)


def test_dice_ce_is_the_sum():
    x, t = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    combo = DiceCELoss(lambda_dice=0.5, lambda_ce=2.0)(x, t).item()
    assert combo == pytest.approx(0.5 * DiceLoss()(x, t).item()
                                  + 2.0 * F.cross_entropy(x, t).item(), rel=1e-5)


def test_multilabel_mode_and_3d():
    x = torch.randn(2, 3, 4, 5, 6)
    t = torch.randint(0, 2, (2, 3, 4, 5, 6))
    for loss in (DiceLoss("multilabel"), TverskyLoss("multilabel"), FocalLoss("multilabel"),
                 CrossEntropyLoss("multilabel"), DiceCELoss("multilabel")):
        v = loss(x, t)
        assert torch.isfinite(v) and v.item() > 0
    ref = F.binary_cross_entropy_with_logits(x, t.float())
    assert CrossEntropyLoss("multilabel")(x, t).item() == pytest.approx(ref.item(), rel=1e-5)
    x3, t3 = torch.randn(1, 2, 3, 4, 5), torch.randint(0, 2, (1, 3, 4, 5))
    assert 0 < DiceLoss()(x3, t3).item() < 1


# ---------------------------------------------------------------- the label rules
def test_empty_vs_empty_costs_nothing_false_positive_costs_one():
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    empty = torch.full((1, 1, 4, 4), -30.0, requires_grad=True)
    for loss in (DiceLoss("binary"), GeneralizedDiceLoss("binary"), TverskyLoss("binary")):
        v = loss(empty, target)
        v.backward()
        assert v.item() == 0.0 and torch.isfinite(empty.grad).all()
    full = torch.full((1, 1, 4, 4), 30.0)
    assert DiceLoss("binary")(full, target).item() == pytest.approx(1.0)


def test_dice_loss_agrees_with_metric_on_hard_predictions():
    """With saturated logits, 1 - DiceLoss == mdice of SegmentationMetrics (same rules)."""
    g = torch.Generator().manual_seed(3)
    target = torch.randint(0, 4, (3, 6, 6), generator=g)
    target[target == 3] = 2  # class 3 absent from the target ...
    pred = torch.randint(0, 3, (3, 6, 6), generator=g)  # ... and from the prediction
    target[0, 0, :3] = 255
    logits = F.one_hot(pred, 4).movedim(-1, 1).float() * 60 - 30
    for loss_red, metric_red in (("batch", "dataset"), ("image", "image")):
        metrics = SegmentationMetrics(4, ignore_index=255, boundary=False, reduction=metric_red)
        metrics.update(pred, target)
        result = metrics.compute()
        assert result["dice"][3] is None
        loss = DiceLoss(reduction=loss_red, ignore_index=255)(logits, target)
        assert 1 - loss.item() == pytest.approx(result["mdice"], abs=1e-5)


@pytest.mark.parametrize("make", ALL)
def test_ignored_pixels_change_nothing(make):
    x = torch.randn(2, 3, 5, 5)
    t = torch.randint(0, 3, (2, 5, 5))
    t[:, 1:3, 2:4] = 255
    loss = make(ignore_index=255)
    before = loss(x, t)
    x2 = x.clone()
    x2[:, :, 1:3, 2:4] = torch.randn(2, 3, 2, 2) * 50
    assert loss(x2, t).item() == pytest.approx(before.item(), abs=1e-6)


@pytest.mark.parametrize("make", ALL)
def test_all_ignored_gives_zero_not_nan(make):
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    t = torch.full((1, 3, 3), 255)
    v = make(ignore_index=255)(x, t)
    v.backward()
    assert v.item() == 0.0 and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("mode", ["binary", "multiclass", "multilabel"])
@pytest.mark.parametrize("make", ALL)
def test_extreme_logits_and_empty_masks_give_finite_gradients(make, mode):
    c = 1 if mode == "binary" else 3
    x = (torch.randn(2, c, 4, 4).sign() * 1e4).requires_grad_()
    shape = (2, c, 4, 4) if mode == "multilabel" else (2, 4, 4)
    for t in (torch.zeros(shape, dtype=torch.long), torch.randint(0, 2, shape)):
        x.grad = None
        v = make(mode=mode)(x, t)
        v.backward()
        assert torch.isfinite(v) and torch.isfinite(x.grad).all()


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), c=st.integers(2, 4), h=st.integers(1, 6), scale=st.floats(0.01, 1e3),
       seed=st.integers(0, 10_000), red=st.sampled_from(["batch", "image"]),
       bg=st.booleans())
def test_dice_loss_in_unit_interval(n, c, h, scale, seed, red, bg):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(n, c, h, 5, generator=g) * scale).requires_grad_()
    t = torch.randint(0, c, (n, h, 5), generator=g)
    v = DiceLoss(reduction=red, include_background=bg)(x, t)
    v.backward()
    assert 0.0 <= v.item() <= 1.0 + 1e-6
    assert torch.isfinite(x.grad).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), frac=st.floats(0.0, 0.9))
def test_ignore_never_changes_dice_property(seed, frac):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, 6, 6, generator=g)
    t = torch.randint(0, 3, (2, 6, 6), generator=g)
    ignore = torch.rand(2, 6, 6, generator=g) < frac
    t[ignore] = 255
    loss = DiceLoss(ignore_index=255)
    noisy = torch.where(ignore[:, None], torch.randn(2, 3, 6, 6, generator=g) * 100, x)
    assert loss(noisy, t).item() == pytest.approx(loss(x, t).item(), abs=1e-6)


# ---------------------------------------------------------------- errors
def test_shape_errors_show_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 4\).*\(2, 5, 4\)"):
        DiceLoss()(torch.randn(2, 3, 4, 4), torch.zeros(2, 5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        DiceLoss()(torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), 7))
    with pytest.raises(ValueError, match="1 channel"):
        DiceLoss("binary")(torch.randn(1, 2, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="multilabel"):
        DiceLoss("multilabel")(torch.randn(1, 2, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="class_weights has 2"):
        CrossEntropyLoss(class_weights=[1, 2])(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match=r"\['binary', 'multiclass', 'multilabel'\]"):
        DiceLoss("softmax")
    with pytest.raises(ValueError, match=r"\['batch', 'image'\]"):
        DiceLoss(reduction="mean")


# ---------------------------------------------------------------- build_loss
def test_build_loss_names_and_options():
    assert set(list_losses()) == {"ce", "weighted_ce", "border_ce", "dice", "generalized_dice",
                                  "dice_ce", "focal", "tversky"}
    x, t = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    for name in list_losses():
        kw = {"class_weights": [1.0, 2.0, 3.0]} if name == "weighted_ce" else {}
        loss = build_loss(name, num_classes=3, ignore_index=255, **kw)
        assert loss.uses_pixel_weight is (name == "border_ce")
        pw = torch.ones(2, 4, 4) if loss.uses_pixel_weight else None
        assert torch.isfinite(loss(x, t, pixel_weight=pw))
    assert build_loss("dice", num_classes=1).mode == "binary"
    focal = build_loss("focal", num_classes=3, class_weights=[1, 2, 3], gamma=1.0)
    assert focal.alpha == [1, 2, 3] and focal.gamma == 1.0


def test_build_loss_errors_name_valid_options():
    with pytest.raises(ValueError, match="did you mean 'dice'"):
        build_loss("dise", num_classes=2)
    with pytest.raises(ValueError, match="valid:.*smooth"):
        build_loss("dice", num_classes=2, smoth=1.0)
    with pytest.raises(ValueError, match="needs class_weights"):
        build_loss("weighted_ce", num_classes=2)
    with pytest.raises(ValueError, match="expected 3"):
        build_loss("ce", num_classes=3, class_weights=[1, 2])
    with pytest.raises(ValueError, match="own class weights"):
        build_loss("generalized_dice", num_classes=2, class_weights=[1, 2])
