"""The same torch code on GPU, and a cross-check against torchmetrics where installed.

Both skip cleanly: the GPU tests without CUDA, the torchmetrics test without torchmetrics
(it is not a dependency; the GPU machines used for checks have it).
"""

from __future__ import annotations

import pytest
import torch

from unetlab.losses import build_loss, list_losses
from unetlab.metrics import SegmentationMetrics

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _batch(c=4, n=3, h=48, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c, h, w, generator=g)
    target = torch.randint(0, c, (n, h, w), generator=g)
    target[:, :5] = 255
    return logits, target


@cuda
@pytest.mark.parametrize("reduction", ["dataset", "image"])
def test_metrics_on_gpu_equal_cpu(reduction):
    logits, target = _batch()
    cpu = SegmentationMetrics(4, ignore_index=255, reduction=reduction, boundary_tolerance=0.05)
    gpu = SegmentationMetrics(4, ignore_index=255, reduction=reduction, boundary_tolerance=0.05)
    cpu.update(logits, target)
    gpu.update(logits.cuda(), target.cuda())
    assert gpu.confmat.device.type == "cuda"
    a, b = cpu.compute(), gpu.compute()
    assert a["confusion_matrix"] == b["confusion_matrix"]
    for key in ("iou", "dice", "boundary_f1_per_class"):
        assert a[key] == pytest.approx(b[key])
    assert a["boundary_f1"] == pytest.approx(b["boundary_f1"])
    other = SegmentationMetrics(4, ignore_index=255, reduction=reduction,
                                boundary_tolerance=0.05)
    other.update(logits[:1], target[:1])
    gpu.merge(other)  # CPU state merges into GPU state
    assert gpu.compute()["num_images"] == 4


@cuda
@pytest.mark.parametrize("name", list_losses())
def test_losses_on_gpu_equal_cpu(name):
    logits, target = _batch()
    kw = {"class_weights": [1.0, 2.0, 0.5, 1.5]} if name == "weighted_ce" else {}
    loss = build_loss(name, num_classes=4, ignore_index=255, **kw)
    pw = torch.rand(target.shape) + 0.5 if loss.uses_pixel_weight else None
    x = logits.clone().requires_grad_()
    xg = logits.cuda().requires_grad_()
    v = loss(x, target, pixel_weight=pw)
    vg = loss(xg, target.cuda(), pixel_weight=None if pw is None else pw.cuda())
    v.backward()
    vg.backward()
    assert vg.item() == pytest.approx(v.item(), rel=1e-4, abs=1e-6)
    torch.testing.assert_close(xg.grad.cpu(), x.grad, rtol=1e-3, atol=1e-6)


def test_confusion_metrics_match_torchmetrics():
    tm = pytest.importorskip("torchmetrics.classification")
    logits, target = _batch(c=5, n=4, seed=3)
    pred = logits.argmax(1)
    pred[pred == 4] = 0  # class 4: in the target only -> IoU 0 in both libraries
    ours = SegmentationMetrics(5, ignore_index=255, boundary=False)
    ours.update(pred, target)
    r = ours.compute()
    iou = tm.MulticlassJaccardIndex(5, average=None, ignore_index=255)(pred, target)
    f1 = tm.MulticlassF1Score(5, average=None, ignore_index=255)(pred, target)
    acc = tm.MulticlassAccuracy(5, average="micro", ignore_index=255)(pred, target)
    macc = tm.MulticlassAccuracy(5, average="macro", ignore_index=255)(pred, target)
    assert r["iou"] == pytest.approx(iou.tolist(), abs=1e-6)
    assert r["dice"] == pytest.approx(f1.tolist(), abs=1e-6)
    assert r["pixel_accuracy"] == pytest.approx(acc.item(), abs=1e-6)
    assert r["class_accuracy"] == pytest.approx(macc.item(), abs=1e-6)
