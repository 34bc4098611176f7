"""Checkpoints (no pickle, atomic, exact round trip), LR schedules and the sampler."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

import unetlab
from unetlab.errors import UnetlabError
from unetlab.training.checkpoint import (
    checkpoint_exists,
    flatten_optimizer_state,
    load_checkpoint,
    read_checkpoint_state,
    save_checkpoint,
    unflatten_optimizer_state,
)
from unetlab.training.sampler import EpochSampler
from unetlab.training.schedule import LRSchedule


def tiny(name="unet", **kw):
    return unetlab.create_model(name, in_channels=1, num_classes=2, channels=(4, 8), **kw)


def _one_step(model, opt):
    x = torch.randn(2, 1, 16, 16)
    loss = model(x).square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


@pytest.mark.parametrize("opt_name", ["adam", "sgd"])
def test_optimizer_state_round_trips_through_tensors_and_json(opt_name):
    model = tiny()
    opt = (torch.optim.Adam(model.parameters(), lr=1e-2) if opt_name == "adam"
           else torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.99))
    _one_step(model, opt)
    tensors, rest = flatten_optimizer_state(opt.state_dict())
    json.dumps(rest)  # the non-tensor part is plain JSON
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    restored = unflatten_optimizer_state(tensors, json.loads(json.dumps(rest)))
    opt2 = type(opt)(model.parameters(), lr=1.0)
    opt2.load_state_dict(restored)
    a, b = opt.state_dict(), opt2.state_dict()
    assert a["param_groups"][0]["lr"] == b["param_groups"][0]["lr"] == 1e-2
    for pid, state in a["state"].items():
        for key, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][pid][key]))


def test_checkpoint_restores_weights_optimizer_and_rng(tmp_path):
    model = tiny()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _one_step(model, opt)
    torch.manual_seed(123)
    np.random.seed(5)  # noqa: NPY002
    random.seed(7)
    path = save_checkpoint(tmp_path / "last", model=model, optimizer=opt,
                           state={"epoch": 3, "history": [{"miou": 0.5}]},
                           model_metadata={"class_names": ["cell", "membrane"],
                                           "palette": [[0, 0, 0], [255, 255, 255]]})
    expected = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    _one_step(model, opt)  # move away from the saved state
    torch.rand(5)

    model2 = tiny()
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    state = load_checkpoint(path, model=model2, optimizer=opt2)
    assert state["epoch"] == 3 and state["history"] == [{"miou": 0.5}]
    got = (torch.rand(3), np.random.rand(3), random.random())  # noqa: NPY002
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    # the checkpoint folder is also a model for load_model (no training code needed)
    loaded = unetlab.load_model(path)
    meta = unetlab.models.serialization.read_metadata(path)
    assert meta["class_names"] == ["cell", "membrane"]
    assert meta["palette"] == [[0, 0, 0], [255, 255, 255]]
    x = torch.randn(1, 1, 16, 16)
    model2.eval()
    assert torch.allclose(loaded(x), model2(x))
    # nothing pickled: only safetensors and JSON in the folder
    assert sorted(p.name for p in path.iterdir()) == [
        "model.safetensors", "optimizer.safetensors", "rng.safetensors", "state.json"]


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "ck", model=tiny(), state={})
    other = unetlab.create_model("resunet", in_channels=1, num_classes=2, channels=(4, 8))
    with pytest.raises(UnetlabError, match="holds a 'unet' model with name='unet'.*'resunet'"):
        load_checkpoint(path, model=other)
    wider = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 16))
    with pytest.raises(UnetlabError, match="weights do not match"):
        load_checkpoint(path, model=wider)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "ck", model=tiny(), state={})
    (path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(UnetlabError, match="model.safetensors"):
        load_checkpoint(path, model=tiny())
    (path / "state.json").write_text("{not json")
    with pytest.raises(UnetlabError, match="state.json is corrupt"):
        load_checkpoint(path)


def test_interrupted_swap_is_recovered_and_failed_write_keeps_old(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last", model=tiny(), state={"epoch": 1})
    # a crash between the two renames leaves only the old folder aside
    path.rename(tmp_path / ".last.old999")
    assert checkpoint_exists(tmp_path / "last") and not (tmp_path / "last").exists()
    assert read_checkpoint_state(tmp_path / "last")["epoch"] == 1   # recovered, no weights
    assert (tmp_path / "last").is_dir() and not list(tmp_path.glob(".last.old*"))
    path.rename(tmp_path / ".last.old999")
    assert load_checkpoint(tmp_path / "last")["epoch"] == 1
    assert not checkpoint_exists(tmp_path / "nothing")
    assert read_checkpoint_state(tmp_path / "nothing") is None
    # a full disk during the write: one-line error, previous checkpoint untouched
    import unetlab.training.checkpoint as ck

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck, "save_file", full_disk)
    with pytest.raises(UnetlabError, match="cannot write checkpoint .*No space left on device"):
        save_checkpoint(tmp_path / "last", model=tiny(), optimizer=None, state={"epoch": 2})
    assert load_checkpoint(tmp_path / "last")["epoch"] == 1
    assert not list(tmp_path.glob(".last.tmp*"))


def test_schedules_hand_computed():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    s = LRSchedule(opt, "poly", total_steps=10, warmup_steps=0, power=1.0)
    assert opt.param_groups[0]["lr"] == 1.0
    for _ in range(5):
        s.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)  # 1 - 5/10
    c = LRSchedule(opt, "cosine", total_steps=10, warmup_steps=2)
    assert c.factor_at(0) == pytest.approx(0.5) and c.factor_at(1) == pytest.approx(1.0)
    assert c.factor_at(6) == pytest.approx(0.5)  # halfway through the 8 decay steps
    assert c.factor_at(10) == pytest.approx(0.0)
    pl = LRSchedule(opt, "plateau", factor=0.1, patience=1, mode="max")
    for value in (0.5, 0.4, 0.4):
        pl.observe(value)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    state = json.loads(json.dumps(pl.state_dict()))
    pl2 = LRSchedule(opt, "plateau", factor=0.1, patience=1)
    pl2.load_state_dict(state)
    assert pl2.plateau_scale == pytest.approx(0.1) and pl2.best == 0.5
    timed = LRSchedule(opt, "cosine", by_time=True)
    timed.step(progress=0.5)
    assert timed.factor_at(1) == pytest.approx(0.5)  # half the time budget used
    with pytest.raises(UnetlabError, match="needs the total number of steps"):
        LRSchedule(opt, "poly")


def test_sampler_is_resumable_and_shards_like_one_process():
    one = EpochSampler(8, seed=3)
    one.set_epoch(2)
    order = list(one)
    assert sorted(order) == list(range(8))
    one.set_epoch(2, start=3)
    assert list(one) == order[3:]
    one.set_epoch(3)
    assert list(one) != order  # a new order each epoch
    ranks = [EpochSampler(8, seed=3, num_replicas=2, rank=r) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(2)
    shards = [list(r) for r in ranks]
    assert shards[0] == order[0::2] and shards[1] == order[1::2]
    # global batch 4 = two ranks with 2 each: the same images in each step
    assert set(shards[0][:2] + shards[1][:2]) == set(order[:4])
