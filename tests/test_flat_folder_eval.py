"""`unetlab evaluate` on a folder without val/: the images training held out, not every
image under the name "val"; other data is evaluated whole and called "all"."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from unetlab.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _flat_folder(root, count=10, size=32):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        y, x = rng.integers(4, size - 12, 2)
        mask[y:y + 8, x:x + 8] = 1
        image = np.clip(60 + 120 * mask + rng.normal(0, 20, mask.shape), 0, 255)
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"c{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"c{i}.png")


def _train(data, run, *extra):
    assert main(["train", "--set", "data.dataset=folder", "--set", f"data.root={data}",
                 "--set", "data.tile_size=32", "--set", "model.options.channels=[4, 8]",
                 "--set", "train.epochs=1", "--set", f"train.out_dir={run}",
                 "--set", "train.progress=false", *extra]) == 0
    return run / "checkpoints" / "last"


def _evaluated(checkpoint, data, out):
    assert main(["evaluate", str(checkpoint), "--dataset", "folder", "--data", str(data),
                 "--no-boundary", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    return result["split"], result["num_images"]


def test_evaluate_repeats_the_hold_out_of_a_flat_folder(tmp_path, capsys):
    data = tmp_path / "data"
    _flat_folder(data)
    run = tmp_path / "run"
    _train(data, run)
    out = tmp_path / "val.json"
    assert main(["evaluate", str(run / "checkpoints" / "last"), "--dataset", "folder",
                 "--data", str(data), "--no-boundary", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["num_images"] == 2                   # the last 20 %, as training held out
    assert result["split"] == "val (held out of 10)"
    assert "evaluating the 2 of 10 images training held out" in capsys.readouterr().out
    train_json = tmp_path / "train.json"
    assert main(["evaluate", str(run / "checkpoints" / "last"), "--dataset", "folder",
                 "--data", str(data), "--split", "train", "--no-boundary",
                 "--json", str(train_json)]) == 0
    assert json.loads(train_json.read_text())["num_images"] == 8
    # the same images somewhere else are other data: every image, called "all"
    other = tmp_path / "other"
    shutil.copytree(data, other)
    all_json = tmp_path / "all.json"
    assert main(["evaluate", str(run / "checkpoints" / "last"), "--dataset", "folder",
                 "--data", str(other), "--no-boundary", "--json", str(all_json)]) == 0
    result = json.loads(all_json.read_text())
    assert result["num_images"] == 10 and result["split"] == "all"
    # a split name the folder does not have is an error, not every image
    capsys.readouterr()
    assert main(["evaluate", str(run / "checkpoints" / "last"), "--dataset", "folder",
                 "--data", str(data), "--split", "tset", "--no-boundary"]) == 2
    err = capsys.readouterr().err
    assert "has no tset/ folder" in err and "Traceback" not in err


def test_per_image_csv_never_replaces_a_file(tmp_path, capsys):
    data = tmp_path / "data"
    _flat_folder(data, count=3)
    run = tmp_path / "run"
    _train(data, run)
    curve = run / "metrics.csv"
    before = curve.read_bytes()
    capsys.readouterr()
    assert main(["evaluate", str(run / "checkpoints" / "last"), "--dataset", "folder",
                 "--data", str(data), "--no-boundary", "--per-image-csv", str(curve)]) == 2
    assert "--per-image-csv" in capsys.readouterr().err and curve.read_bytes() == before


def test_stats_refuses_a_split_a_flat_folder_does_not_have(tmp_path, capsys):
    data = tmp_path / "data"
    _flat_folder(data, count=3)
    assert main(["stats", "--dataset", "folder", "--data", str(data), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["stats", "--dataset", "folder", "--data", str(data), "--split", "tset",
                 "--no-progress"]) == 2
    assert "has no tset/ folder" in capsys.readouterr().err


def test_evaluate_takes_every_image_when_nothing_was_held_out_or_the_data_changed(
        tmp_path, monkeypatch):
    data = tmp_path / "data"
    _flat_folder(data)
    # trained on every image (val_split null): none of them is held out
    every = _train(data, tmp_path / "every", "--set", "data.val_split=null")
    assert _evaluated(every, data, tmp_path / "a.json") == ("all", 10)
    # a relative root, evaluated from elsewhere with the absolute path: the same data
    monkeypatch.chdir(tmp_path)
    relative = _train("data", tmp_path / "rel")
    monkeypatch.chdir(data)
    assert _evaluated(relative, data, tmp_path / "b.json") == ("val (held out of 10)", 2)
    # an image added since training: the hold-out cannot be repeated
    shutil.copy(data / "images" / "c0.png", data / "images" / "c10.png")
    shutil.copy(data / "masks" / "c0.png", data / "masks" / "c10.png")
    assert _evaluated(relative, data, tmp_path / "c.json") == ("all", 11)
