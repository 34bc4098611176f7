"""OpenCV's thread pool is held to one thread while training, and given back after."""

from __future__ import annotations

import cv2
import pytest

from unetlab.training import trainer as trainer_module


def test_training_holds_opencv_to_one_thread_and_restores_it(monkeypatch):
    """Trainer.fit (what `train` and the comparison harness call) trains with OpenCV on
    one thread and gives the count back, also after a failure."""
    from types import SimpleNamespace

    seen = {}

    def fake_fit(self):
        seen["threads"] = cv2.getNumThreads()
        if seen.get("fail"):
            raise RuntimeError("a failed run")
        return {"steps": 0}

    monkeypatch.setattr(trainer_module.Trainer, "_fit", fake_fit)
    trainer = object.__new__(trainer_module.Trainer)
    trainer.cfg = SimpleNamespace(data=SimpleNamespace(max_pixels=None))
    trainer.winograd_channels = None   # (what fit() reads besides the config)
    trainer.dist = SimpleNamespace(enabled=False)
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        assert trainer.fit() == {"steps": 0}
        assert seen["threads"] == 1
        assert cv2.getNumThreads() == 2                     # given back
        seen["fail"] = True
        with pytest.raises(RuntimeError):
            trainer.fit()
        assert cv2.getNumThreads() == 2                     # also after a failure
    finally:
        cv2.setNumThreads(before)


def test_loader_workers_use_one_opencv_thread(monkeypatch):
    from types import SimpleNamespace

    import torch

    info = SimpleNamespace(seed=123, dataset=None)
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        trainer_module._worker_init(0)
        assert cv2.getNumThreads() == 1
    finally:
        cv2.setNumThreads(before)
