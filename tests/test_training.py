"""The trainer on tiny synthetic runs: outputs, reproducibility, accumulation, NaN stop."""

from __future__ import annotations

import csv
import json
import multiprocessing

import pytest
import torch

import unetlab
from training_helpers import assert_same_weights, tiny_overrides, weights
from unetlab.config import load_config
from unetlab.errors import UnetlabError
from unetlab.training import Trainer, TrainingDiverged, train
from unetlab.training.trainer import crop_targets, flatten_metrics


def test_a_run_writes_everything_and_the_best_model_loads(tmp_path):
    out = tmp_path / "run"
    summary = train(load_config(None, tiny_overrides(out, epochs=2, boundary=True)))
    assert summary["reason"] == "finished" and summary["epochs"] == 2
    assert summary["steps"] == 4  # 8 images / batch 4 = 2 steps per epoch
    for name in ("config.yaml", "metrics.csv", "curves.png", "summary.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"train_loss", "val_loss", "miou", "dice.1", "pixel_error", "rand_error",
            "boundary_f1", "lr", "images_per_s"} <= set(rows[0])
    best = max(float(r["dice.1"]) for r in rows)
    assert summary["best_value"] == pytest.approx(best, abs=1e-5)
    model = unetlab.load_model(out / "checkpoints" / "best")
    card = model.unetlab_card
    assert card == unetlab.card.read_card(out / "checkpoints" / "best")
    assert len(card["classes"]["names"]) == 2 and len(card["classes"]["palette"]) == 2
    assert card["training"]["steps"] == 2 * card["training"]["epoch"]  # best: epoch 1 or 2
    assert card["training"]["best_value"] == pytest.approx(best, abs=1e-5)
    assert card["geometry"] == model.geometry().to_dict()
    assert model(torch.rand(1, 1, 32, 32)).shape == (1, 2, 32, 32)
    saved = load_config(out / "config.yaml")
    assert saved.train.epochs == 2 and saved.model.options["channels"] == [8, 16, 32]
    assert json.loads((out / "summary.json").read_text())["steps"] == 4


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    train(load_config(None, tiny_overrides(a, epochs=1)))
    train(load_config(None, tiny_overrides(b, epochs=1)))
    train(load_config(None, tiny_overrides(c, epochs=1, extra=["train.seed=1"])))
    assert_same_weights(weights(a), weights(b))
    wc = weights(c)
    assert any(not torch.equal(wc[k], weights(a)[k]) for k in wc)


def test_gradient_accumulation_equals_the_larger_batch(tmp_path):
    common = dict(norm="null", augment="none", epochs=1)
    sgd = ["optim.name=sgd", "optim.momentum=0.9", "optim.lr=0.1"]
    train(load_config(None, tiny_overrides(tmp_path / "big", batch=4, extra=sgd, **common)))
    train(load_config(None, tiny_overrides(tmp_path / "acc", batch=2,
                                           extra=[*sgd, "train.accumulate=2"], **common)))
    assert_same_weights(weights(tmp_path / "big"), weights(tmp_path / "acc"), atol=1e-6)
    big = json.loads((tmp_path / "big" / "summary.json").read_text())
    acc = json.loads((tmp_path / "acc" / "summary.json").read_text())
    assert big["steps"] == acc["steps"] == 2


def test_nan_loss_stops_names_the_step_and_keeps_last_good(tmp_path):
    out = tmp_path / "nan"
    trainer = Trainer(load_config(None, tiny_overrides(out, epochs=3)))
    real, calls = trainer.loss_fn, {"n": 0}

    def poisoned(logits, target, pixel_weight=None):
        loss = real(logits, target, pixel_weight=pixel_weight)
        if not logits.requires_grad:  # validation
            return loss
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == 3 else loss

    trainer.loss_fn = poisoned
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 3 \(epoch 2\).*kept "
                                               r"at .*checkpoints/last"):
        trainer.fit()
    state = json.loads((out / "checkpoints" / "last" / "state.json").read_text())
    assert state["epoch"] == 1 and state["step"] == 2  # the end of epoch 1, before the NaN
    for value in weights(out).values():
        assert torch.isfinite(value.float()).all()


def test_max_steps_and_early_stopping(tmp_path):
    s = train(load_config(None, tiny_overrides(tmp_path / "a", epochs=5,
                                               extra=["train.max_steps=3"])))
    assert s["steps"] == 3 and s["reason"] == "max_steps"
    # a metric that cannot improve after the first validation: stop after `patience` more
    s = train(load_config(None, tiny_overrides(
        tmp_path / "b", epochs=10, extra=["train.early_stop_patience=2",
                                          "train.best_metric=num_pixels",
                                          "train.best_mode=max"])))
    assert s["reason"] == "early_stop" and s["epochs"] == 3 and s["best_epoch"] == 1


def test_unknown_best_metric_names_the_valid_ones(tmp_path):
    with pytest.raises(UnetlabError, match="best_metric='mIoU' is not among.*miou"):
        train(load_config(None, tiny_overrides(tmp_path / "x", epochs=1,
                                                extra=["train.best_metric=mIoU"])))


def test_fp16_on_cpu_is_refused(tmp_path):
    with pytest.raises(UnetlabError, match="fp16.*needs a CUDA device"):
        Trainer(load_config(None, tiny_overrides(tmp_path / "x", extra=["train.amp=fp16"])))


def test_bf16_autocast_trains_on_cpu(tmp_path):
    s = train(load_config(None, tiny_overrides(tmp_path / "bf", epochs=1,
                                               extra=["train.amp=bf16"])))
    assert s["steps"] == 2
    assert all(torch.isfinite(v.float()).all() for v in weights(tmp_path / "bf").values())


def test_crop_targets_centres_masks_for_valid_padding():
    masks = torch.arange(36).reshape(1, 6, 6)
    logits = torch.zeros(1, 2, 2, 2)
    cropped, w = crop_targets(logits, masks, masks.float())
    assert cropped.tolist() == [[[14, 15], [20, 21]]] and w.shape == (1, 2, 2)


def test_flatten_metrics():
    assert flatten_metrics({"iou": [0.5, None], "miou": 0.5, "reduction": "dataset"}) == {
        "iou.0": 0.5, "miou": 0.5}


def test_last_every_s_writes_last_at_validations_and_the_end_only(tmp_path, monkeypatch):
    """Short epochs of a large model: ``train.last_every_s`` skips the per-epoch write of
    checkpoints/last, never the ones at validations or at the end, and the time spent
    writing counts in the budget."""
    out = tmp_path / "run"
    cfg = load_config(None, tiny_overrides(
        out, epochs=6, extra=["train.val_every=3", "train.last_every_s=3600"]))
    trainer = Trainer(cfg)
    saved = []
    real = trainer.save

    def spy(which):
        saved.append((which, trainer.epoch))
        real(which)

    monkeypatch.setattr(trainer, "save", spy)
    trainer.fit()
    lasts = [epoch for which, epoch in saved if which == "last"]
    assert lasts == [1, 3, 6]            # the first epoch, then validations (3, 6) only
    state = json.loads((out / "checkpoints" / "last" / "state.json").read_text())
    assert state["epoch"] == 6 and state["step"] == trainer.step


def test_last_every_s_must_be_positive():
    with pytest.raises(UnetlabError, match="train.last_every_s"):
        load_config(None, ["train.last_every_s=0"])


def test_preload_for_workers_fills_the_cache_it_is_allowed_to_keep():
    """With loader workers the trainer decodes once, before they fork: only a Subset's
    own items (train and val may be Subsets of two copies of one folder); a dataset told
    not to cache is left alone."""
    from torch.utils.data import Subset

    from unetlab.data import build_dataset
    from unetlab.training.trainer import preload_for_workers

    ds = build_dataset("membranes", num_images=5, size=32)
    assert preload_for_workers(Subset(ds, [1, 3]))       # the subset's items only
    assert ds.cache is True and sorted(ds._cache) == [1, 3]
    assert preload_for_workers(ds) and len(ds._cache) == 5
    off = build_dataset("membranes", num_images=5, size=32, cache=False)
    assert not preload_for_workers(off) and not off._cache
    assert not preload_for_workers(None)


def test_loader_workers_persist_and_a_mid_epoch_resume_is_exact(tmp_path):
    """With loader workers each item is seeded by its position in the epoch, so the
    number of workers does not change the run and a resume mid-epoch ends exactly like
    an uninterrupted run (workers live for the whole run). With dropout, so that any
    draw from the global RNG that a resumed run makes and the uninterrupted one does not
    (a loader's workers' seed) shows in the weights."""
    def cfg(out, workers, extra=()):
        return load_config(None, tiny_overrides(out, epochs=3, images=8, batch=2,
                                                augment="light",
                                                extra=[f"data.num_workers={workers}",
                                                       "model.options.dropout=0.3", *extra]))

    ref, one, part = tmp_path / "ref", tmp_path / "one", tmp_path / "part"
    train(cfg(ref, 2))
    train(cfg(one, 1))
    assert_same_weights(weights(ref), weights(one))
    # 4 steps per epoch: stopped in epoch 2, after the first validation started its workers
    stopped = train(cfg(part, 2, ["train.max_steps=6"]))
    assert stopped["reason"] == "max_steps" and stopped["steps"] == 6
    train(cfg(part, 2), resume=True)
    assert_same_weights(weights(ref), weights(part))
    assert not multiprocessing.active_children()             # every run ended its workers

    trainer = Trainer(cfg(tmp_path / "live", 2))
    loader = trainer._loader()
    assert trainer._loader() is loader                        # one loader for the run
    next(iter(loader))
    assert multiprocessing.active_children()
    trainer._close_workers()                                  # what _fit's finally calls
    assert not multiprocessing.active_children()


def test_validation_workers_live_for_the_fit_and_measure_the_same(tmp_path):
    """Inside a fit the validation loader's workers start once and are reused; the
    numbers equal those of a validation without workers; outside a fit (the comparison
    harness's final validation) no workers are left behind."""
    def trainer(workers):
        return Trainer(load_config(None, tiny_overrides(
            tmp_path / f"w{workers}", images=4, extra=[f"data.num_workers={workers}"])))

    plain = trainer(0).validate()
    live = trainer(2)
    try:
        live._fitting = True                                  # as inside _fit
        before = torch.random.get_rng_state()
        first = live.validate()
        assert torch.equal(torch.random.get_rng_state(), before)  # no draw from the global RNG
        loader = live._val_loader
        assert loader is not None and multiprocessing.active_children()
        assert live.validate() == first and live._val_loader is loader
        assert first == plain
        live._fitting = False
    finally:
        live._close_workers()
    assert not multiprocessing.active_children()
    assert live.validate() == plain and live._val_loader is None
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("at", [3, 4])
def test_ctrl_c_saves_the_step_and_the_resume_is_exact(tmp_path, monkeypatch, capsys, at):
    """The first Ctrl-C lets the step in progress finish, saves checkpoints/last there
    and exits 130 with the resume line; --resume then ends exactly where an
    uninterrupted run ends, with one metrics row per epoch. Mid-epoch (step 3 of 4) no
    validation runs and no partial row is logged; at an epoch's last step (4) the
    epoch's validation runs first (a resume would not run it again)."""
    import os
    import signal

    from unetlab.cli import main

    def argv(out):
        sets = [a for o in tiny_overrides(out, epochs=2, images=8, batch=2,
                                          extra=["data.num_workers=1"])
                for a in ("--set", o)]
        return ["train", *sets]

    ref, out = tmp_path / "ref", tmp_path / "cut"
    assert main(argv(ref)) == 0
    real = Trainer.train_step

    def step_then_ctrl_c(self, batch, **kw):
        value = real(self, batch, **kw)
        if self.step == at:
            os.kill(os.getpid(), signal.SIGINT)
        return value

    monkeypatch.setattr(Trainer, "train_step", step_then_ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    assert main(argv(out)) == 130
    assert signal.getsignal(signal.SIGINT) is before          # the handler is put back
    err = capsys.readouterr().err
    assert "stopping after this step" in err and "--resume" in err
    state = json.loads((out / "checkpoints/last/state.json").read_text())
    assert (state["step"], state["epoch"], state["batch_in_epoch"]) == \
        ((3, 0, 3) if at == 3 else (4, 1, 0))
    if at == 3:
        assert state["history"] == []                         # no partial row
    else:
        assert state["history"][-1]["val_loss"] is not None  # the epoch's validation ran
    monkeypatch.setattr(Trainer, "train_step", real)
    assert main(["train", "--out", str(out), "--resume"]) == 0
    assert_same_weights(weights(ref), weights(out))
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    ref_rows = list(csv.DictReader(open(ref / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert [r["val_loss"] for r in rows] == [r["val_loss"] for r in ref_rows]
    assert not multiprocessing.active_children()


@pytest.mark.parametrize("init", ["_worker_init", "_ignore_ctrl_c"])
def test_loader_workers_leave_ctrl_c_to_the_main_process(init):
    """A terminal's Ctrl-C reaches the loader workers too (training's and validation's);
    they ignore it so that the main process can finish its step and save (they end with
    the run)."""
    import signal

    from unetlab.training import trainer as trainer_module

    class Probe(torch.utils.data.Dataset):
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return signal.getsignal(signal.SIGINT) == signal.SIG_IGN

    loader = torch.utils.data.DataLoader(Probe(), num_workers=1,
                                         worker_init_fn=getattr(trainer_module, init))
    assert bool(next(iter(loader)))


def test_batch_norm_never_gets_a_last_batch_of_one_image(tmp_path):
    """A hand-written config whose tiles leave a 1 x 1 deepest map (tiles of 4, two
    poolings) with 5 images in batches of 2: the epoch's last batch would hold one
    image, a single value per channel that batch norm cannot normalise (it crashed at
    the end of the first epoch). The epoch repeats its first image instead."""
    from unetlab.training.sampler import EpochSampler

    run = train(load_config(None, tiny_overrides(tmp_path / "r", epochs=2, images=5, batch=2,
                                                 extra=["data.tile_size=4"])))
    assert run["steps"] == 6 and run["epochs"] == 2
    s = EpochSampler(5, seed=0, no_batch_of_one=2)
    s.set_epoch(1)
    order = list(s)
    assert len(order) == 6 and sorted(set(order)) == [0, 1, 2, 3, 4] and order[-1] == order[0]
    assert len(EpochSampler(6, no_batch_of_one=2)) == 6       # nothing added otherwise
    assert len(EpochSampler(5, no_batch_of_one=0)) == 5
    assert list(EpochSampler(1, no_batch_of_one=4)) == [0, 0]  # a one-image dataset
    s.set_epoch(1, start=4)                                   # a resume mid-epoch
    assert list(s) == order[4:]
