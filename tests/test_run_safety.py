"""Runs and commands against careless and hostile input (issue 12): nothing overwritten
without --overwrite, resumed epochs log every batch, bad values are one-line errors."""

from __future__ import annotations

import csv
import json
import math
import shutil

import numpy as np
import pytest

from safety_helpers import grey_rows, png_bytes
from training_helpers import tiny_overrides
from unetlab.cli import main
from unetlab.config import load_config
from unetlab.errors import UnetlabError
from unetlab.imageio import write_image
from unetlab.training import Trainer, train
from unetlab.training.logger import write_csv


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny finished run (1 epoch, 2 steps) shared by the read-only tests."""
    out = tmp_path_factory.mktemp("safety") / "run"
    train(load_config(None, tiny_overrides(out, epochs=1, images=4, batch=2)))
    return out


def _copy(run_dir, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


# ---- train: an earlier run is never replaced silently ----------------------------------


def test_train_into_an_existing_run_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoints" / "best").mkdir(parents=True)
    (out / "checkpoints" / "best" / "model.safetensors").write_bytes(b"earlier best model")
    (out / "metrics.csv").write_text("epoch,miou\n1,0.9\n")
    (out / "notes.txt").write_text("mine")
    argv = ["train", *_sets(tiny_overrides(out, epochs=1, images=4, batch=2))]
    err = _cli_error(capsys, argv)
    assert str(out) in err and "--overwrite" in err and "--resume" in err
    assert (out / "metrics.csv").read_text() == "epoch,miou\n1,0.9\n"
    assert (out / "checkpoints/best/model.safetensors").read_bytes() == b"earlier best model"

    assert main([*argv, "--overwrite"]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert len(rows) == 1 and "val_loss" in rows[0]
    assert (out / "checkpoints/best/model.safetensors").read_bytes() != b"earlier best model"
    assert (out / "notes.txt").read_text() == "mine"  # not a run output: kept


def test_resume_logs_the_loss_of_every_batch_of_the_interrupted_epoch(tmp_path):
    over = dict(epochs=1, images=6, batch=2, augment="none")  # 3 batches, deterministic
    ref = train(load_config(None, tiny_overrides(tmp_path / "ref", **over)))
    out = tmp_path / "cut"
    first = train(load_config(None, tiny_overrides(out, **over, extra=["train.max_steps=1"])))
    assert first["reason"] == "max_steps" and first["epochs"] == 0
    state = json.loads((out / "checkpoints/last/state.json").read_text())
    assert state["batch_in_epoch"] == 1 and state["epoch_loss"][1] == 1
    resumed = train(load_config(None, tiny_overrides(out, **over)), resume=True)
    assert resumed["steps"] == 3
    assert resumed["last"]["train_loss"] == pytest.approx(ref["last"]["train_loss"], rel=1e-5)


@pytest.mark.parametrize("edit", [
    lambda s: s.update(epoch="two"),
    lambda s: s.update(history=5),
    lambda s: s.pop("step"),
    lambda s: s.update(rng={"numpy": [1]}),
    lambda s: s.update(optimizer={"state": [], "param_groups": 3}),
    lambda s: s.update(epoch_loss="x"),
])
def test_edited_state_json_is_a_one_line_error_naming_it(run_dir, tmp_path, capsys, edit):
    out = _copy(run_dir, tmp_path)
    path = out / "checkpoints/last/state.json"
    state = json.loads(path.read_text())
    edit(state)
    path.write_text(json.dumps(state))
    err = _cli_error(capsys, ["train", "--out", str(out), "--resume"])
    assert "state.json" in err or "checkpoints/last" in err


def test_state_json_that_is_not_an_object(run_dir, tmp_path):
    out = _copy(run_dir, tmp_path)
    (out / "checkpoints/last/state.json").write_text("[1, 2]")
    cfg = load_config(out / "config.yaml", [f"train.out_dir={out}"])
    with pytest.raises(UnetlabError, match=r"state.json is corrupt \(expected a JSON object"):
        Trainer(cfg, resume=True)


@pytest.mark.parametrize("value", [".nan", "nan", ".inf", "-.inf", "-1", "0"])
def test_time_budget_must_be_a_finite_positive_number(capsys, value):
    err = _cli_error(capsys, ["train", "--set", "train.epochs=null",
                              "--set", f"train.time_budget_s={value}", "--print-config"])
    assert "train.time_budget_s" in err


def test_val_items_of_the_wrong_type(capsys):
    err = _cli_error(capsys, ["train", "--set", "data.val_items=[[1]]", "--print-config"])
    assert "data.val_items[0]" in err and "[1]" in err


def test_metrics_csv_writes_an_empty_field_for_nan_and_none(tmp_path):
    path = write_csv(tmp_path / "m.csv", [{"epoch": 1, "val_loss": math.nan, "miou": None,
                                           "dice": math.inf, "lr": 0.5}])
    assert path.read_text().splitlines() == ["epoch,val_loss,miou,dice,lr", "1,,,,0.5"]


# ---- export, evaluate, predict ---------------------------------------------------------


def test_export_never_writes_over_the_checkpoint(run_dir, tmp_path, capsys):
    ckpt = _copy(run_dir, tmp_path) / "checkpoints" / "best"
    model = (ckpt / "model.safetensors").read_bytes()
    for out in (ckpt / "model.safetensors", ckpt, ckpt / "model.onnx"):
        err = _cli_error(capsys, ["export", str(ckpt), "--format", "torchscript",
                                  "--out", str(out), "--overwrite"])
        assert "would write over the input" in err
    assert (ckpt / "model.safetensors").read_bytes() == model
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"an earlier export")
    err = _cli_error(capsys, ["export", str(ckpt), "--format", "torchscript",
                              "--out", str(existing)])
    assert "already exists" in err and "--overwrite" in err
    assert existing.read_bytes() == b"an earlier export"
    assert main(["export", str(ckpt), "--format", "torchscript", "--out", str(existing),
                 "--overwrite"]) == 0
    assert existing.read_bytes() != b"an earlier export"


def test_evaluate_split_that_leaves_the_run_folder_is_refused(run_dir, tmp_path, capsys):
    ckpt = run_dir / "checkpoints" / "best"
    err = _cli_error(capsys, ["evaluate", str(ckpt), "--dataset", "membranes",
                              "--split", "x/../../.."])
    assert "--split 'x/../../..'" in err
    assert not list(run_dir.parent.glob("eval_*")) and not list(tmp_path.glob("eval_*"))


def test_evaluate_option_with_a_yaml_tag(run_dir, capsys):
    err = _cli_error(capsys, ["evaluate", str(run_dir / "checkpoints" / "best"), "--dataset",
                              "membranes", "--option", "seed=!!python/object/apply:os.getcwd []"])
    assert "--option" in err and "not a plain YAML value" in err


def test_predict_refuses_a_png_over_the_pixel_limit(run_dir, tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bytes(50000, 50000, grey_rows(8, 1)))
    ckpt = str(run_dir / "checkpoints" / "best")
    err = _cli_error(capsys, ["predict", ckpt, str(bomb), "--out", str(tmp_path / "p"),
                              "--no-progress"])
    assert "bomb.png" in err and "--max-pixels" in err
    small = tmp_path / "small.png"
    write_image(small, np.zeros((40, 40), np.uint8))
    err = _cli_error(capsys, ["predict", ckpt, str(small), "--out", str(tmp_path / "p"),
                              "--no-progress", "--max-pixels", "1599"])
    assert "1,600 pixels" in err
    assert main(["predict", ckpt, str(small), "--out", str(tmp_path / "p"), "--no-progress",
                 "--max-pixels", "1600"]) == 0


def test_predict_refuses_nan_pixels_in_a_float_tiff(run_dir, tmp_path, capsys):
    image = np.random.default_rng(0).random((48, 48), dtype=np.float32)
    image[30:34, 5:9] = np.nan
    write_image(tmp_path / "nan.tif", image)
    err = _cli_error(capsys, ["predict", str(run_dir / "checkpoints" / "best"),
                              str(tmp_path / "nan.tif"), "--out", str(tmp_path / "p"),
                              "--no-progress", "--tile-size", "32"])
    assert "nan.tif" in err and "NaN or infinite" in err and "(0, 30, 5)" in err


def test_train_max_pixels_reaches_the_datasets(tmp_path, capsys):
    data = tmp_path / "data"
    for name in "ab":
        write_image(data / "images" / f"{name}.png", np.zeros((16, 16), np.uint8))
        write_image(data / "masks" / f"{name}.png", np.eye(16, dtype=np.uint8))
    argv = ["train", "--set", "data.dataset=folder", "--set", f"data.root={data}",
            "--out", str(tmp_path / "run"), "--max-pixels", "100"]
    err = _cli_error(capsys, argv)
    assert "16 x 16 (256 pixels)" in err and "over the limit of 100" in err


def test_evaluate_refuses_a_png_bomb_in_the_data(run_dir, tmp_path, capsys):
    data = tmp_path / "data"
    write_image(data / "masks" / "a.png", np.eye(8, dtype=np.uint8))
    (data / "images").mkdir()
    (data / "images" / "a.png").write_bytes(png_bytes(50000, 50000, grey_rows(8, 1)))
    err = _cli_error(capsys, ["evaluate", str(run_dir / "checkpoints" / "best"), "--dataset",
                              "folder", "--data", str(data), "--json", str(tmp_path / "e.json")])
    assert "images/a.png" in err and "50000 x 50000" in err and "--max-pixels" in err
