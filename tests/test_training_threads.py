"""OpenCV's thread pool is held to one thread while training, and given back after."""

from __future__ import annotations

import cv2
import pytest

from unetlab.training import trainer as trainer_module


def test_training_holds_opencv_to_one_thread_and_restores_it(monkeypatch):
    seen = {}

    class FakeTrainer:
        def __init__(self, cfg, *, resume=False, overwrite=False):
            pass

        def fit(self):
            seen["threads"] = cv2.getNumThreads()
            return {"steps": 0}

    monkeypatch.setattr(trainer_module, "Trainer", FakeTrainer)
    monkeypatch.setattr(trainer_module.distributed, "cleanup", lambda **kw: None)
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        assert trainer_module.train(object()) == {"steps": 0}
        assert seen["threads"] == 1
        assert cv2.getNumThreads() == 2                     # given back

        class Failing(FakeTrainer):
            def fit(self):
                raise RuntimeError("a failed run")

        monkeypatch.setattr(trainer_module, "Trainer", Failing)
        with pytest.raises(RuntimeError):
            trainer_module.train(object())
        assert cv2.getNumThreads() == 2                     # also after a failure
    finally:
        cv2.setNumThreads(before)
