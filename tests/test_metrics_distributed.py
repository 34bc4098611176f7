"""SegmentationMetrics.sync over a real 2-process gloo group equals one-pass evaluation."""

from __future__ import annotations

import json
import multiprocessing as mp

import pytest
import torch

from unetlab.metrics import SegmentationMetrics


def _data():
    g = torch.Generator().manual_seed(7)
    pred = torch.randint(0, 3, (4, 12, 12), generator=g)
    target = torch.randint(0, 3, (4, 12, 12), generator=g)
    target[:, :2] = 255
    return pred, target


def _worker(rank: int, store: str, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        pred, target = _data()
        metrics = SegmentationMetrics(3, ignore_index=255, reduction="image")
        metrics.update(pred[rank::2], target[rank::2])  # each rank sees half the images
        with open(f"{out}.{rank}", "w") as f:
            json.dump(metrics.sync().compute(), f)
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_sync_over_two_processes_equals_one_pass(tmp_path):
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(r, str(tmp_path / "store"), str(tmp_path / "o")))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    pred, target = _data()
    whole = SegmentationMetrics(3, ignore_index=255, reduction="image")
    whole.update(pred, target)
    expected = json.loads(json.dumps(whole.compute()))
    for r in range(2):
        got = json.loads((tmp_path / f"o.{r}").read_text())
        assert got["confusion_matrix"] == expected["confusion_matrix"]
        assert got["num_images"] == 4
        for key in ("iou", "dice", "boundary_f1_per_class"):
            assert got[key] == pytest.approx(expected[key])
        assert got["miou"] == pytest.approx(expected["miou"])
        assert got["boundary_f1"] == pytest.approx(expected["boundary_f1"])

