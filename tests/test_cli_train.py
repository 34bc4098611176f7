"""``unetlab train``, ``evaluate`` and ``demo`` through ``unetlab.cli.main``."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
import torch

import unetlab
from training_helpers import tiny_overrides
from unetlab.card import read_card
from unetlab.cli import main
from unetlab.data import build_dataset
from unetlab.imageio import write_image
from unetlab.metrics import SegmentationMetrics, challenge_scores, pixel_error


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    args = [a for o in tiny_overrides(out, epochs=1) for a in ("--set", o)]
    assert main(["train", *args, "--json", str(out / "train.json")]) == 0
    return out


def test_train_writes_the_summary_json(trained):
    summary = json.loads((trained / "train.json").read_text())
    assert summary["steps"] == 2 and summary["best_metric"] == "dice.1"
    assert (trained / "checkpoints" / "best" / "model.safetensors").is_file()


def test_evaluate_matches_metrics_computed_by_hand(trained, tmp_path, capsys):
    ckpt = trained / "checkpoints" / "best"
    js, per_image = tmp_path / "eval.json", tmp_path / "images.csv"
    opts = ["--option", "num_images=3", "--option", "size=32"]
    assert main(["evaluate", str(ckpt), "--dataset", "membranes", "--split", "val", *opts,
                 "--json", str(js), "--per-image-csv", str(per_image)]) == 0
    printed = capsys.readouterr().out
    assert "membrane" in printed and "IoU" in printed and "pixel error" in printed
    result = json.loads(js.read_text())
    for key in ("iou", "miou", "dice", "mdice", "pixel_accuracy", "class_accuracy",
                "boundary_f1", "pixel_error", "rand_error"):
        assert key in result, key
    # the same numbers, computed here directly
    model = unetlab.load_model(ckpt)
    ds = build_dataset("membranes", split="val", num_images=3, size=32)
    ref = SegmentationMetrics(2)
    errors, probs = [], []
    with torch.no_grad():
        for i in range(3):
            logits = model(ds[i]["image"][None])
            pred = logits.argmax(1)
            ref.update(pred, ds[i]["mask"][None])
            errors.append(pixel_error(pred[0], ds[i]["mask"]))
            probs.append(torch.softmax(logits[0], 0)[1])
    expected = ref.compute()
    board = challenge_scores(torch.stack(probs), torch.stack([ds[i]["mask"] for i in range(3)]))
    assert result["challenge_pixel_error"] == pytest.approx(board["pixel_error"], abs=1e-6)
    assert result["challenge_rand_error"] == pytest.approx(board["rand_error"], abs=1e-6)
    assert "ISBI leaderboard" in printed
    assert result["miou"] == pytest.approx(expected["miou"])
    assert result["dice"] == pytest.approx(expected["dice"])
    assert result["pixel_error"] == pytest.approx(sum(errors) / 3)  # equal-size images
    rows = list(csv.DictReader(open(per_image)))
    assert [float(r["pixel_error"]) for r in rows] == pytest.approx(errors)


def test_evaluate_with_tta_on_any_image_size(tmp_path, capsys):
    # same-padding 5-level model (pooling factor 16), whole-image TTA of 30-px images:
    # neither 30 nor the overlap-tile default 572 is a multiple of 16
    path = tmp_path / "deep.safetensors"
    unetlab.save_model(unetlab.create_model("unet", in_channels=1, num_classes=2,
                                            channels=(4, 4, 8, 8, 8)), path)
    js = tmp_path / "tta.json"
    argv = ["evaluate", str(path), "--dataset", "membranes",
            "--split", "val", "--option", "num_images=2", "--option", "size=30", "--tta",
            "--json", str(js)]
    assert main(argv) == 0, capsys.readouterr().err
    result = json.loads(js.read_text())
    assert 0.0 <= result["pixel_error"] <= 1.0 and 0.0 <= result["challenge_pixel_error"] <= 1.0


def test_tta_uses_the_views_the_card_says_training_showed(tmp_path, capsys, caplog):
    # trained with `upright` (left-right flips only): bare --tta averages the image and
    # its mirror, the same as --tta hflip, not the 8 views of --tta dihedral
    out = tmp_path / "upright"
    args = [a for o in tiny_overrides(out, epochs=1, augment="upright") for a in ("--set", o)]
    assert main(["train", *args]) == 0
    best = out / "checkpoints" / "best"
    training = read_card(best / "model.safetensors")["training"]
    assert training["augment"] == "upright" and training["tta"] == "hflip"
    results = {}
    for mode in ("auto", "hflip"):
        js = tmp_path / f"{mode}.json"
        argv = ["evaluate", str(best), "--dataset", "membranes", "--option", "num_images=2",
                "--option", "size=32", "--no-boundary", "--json", str(js), "--tta"]
        assert main(argv + ([] if mode == "auto" else [mode])) == 0
        results[mode] = json.loads(js.read_text())
    assert results["auto"]["miou"] == results["hflip"]["miou"]
    image = tmp_path / "in" / "a.png"
    image.parent.mkdir()
    rng = np.random.default_rng(0)
    write_image(image, (rng.random((32, 32)) * 255).astype(np.uint8))
    probs = {}
    for mode in ("auto", "hflip", "dihedral"):
        out_dir = tmp_path / f"pred_{mode}"
        argv = ["predict", str(best), str(image), "--out", str(out_dir), "--probabilities",
                "--tta"]
        assert main(argv + ([] if mode == "auto" else [mode])) == 0
        probs[mode] = tifffile.imread(str(out_dir / "a_probs.tif"))
    assert np.array_equal(probs["auto"], probs["hflip"])
    assert np.abs(probs["auto"] - probs["dihedral"]).max() > 1e-6
    assert "never did" in caplog.text                # dihedral was asked for: warned


def test_evaluate_in_bf16_measures_what_it_costs(trained, tmp_path, capsys):
    ckpt = trained / "checkpoints" / "best"
    opts = ["--dataset", "membranes", "--split", "val", "--option", "num_images=2",
            "--option", "size=32"]
    out = {}
    for precision in ("fp32", "bf16"):
        js = tmp_path / f"{precision}.json"
        assert main(["evaluate", str(ckpt), *opts, "--precision", precision,
                     "--json", str(js)]) == 0
        out[precision] = json.loads(js.read_text())
    assert out["bf16"]["pixel_error"] == pytest.approx(out["fp32"]["pixel_error"], abs=0.02)
    assert main(["evaluate", str(ckpt), *opts, "--precision", "fp16", "--device", "cpu"]) == 2
    assert "CUDA" in capsys.readouterr().err


def test_evaluate_errors_are_one_line(trained, tmp_path, capsys):
    ckpt = trained / "checkpoints" / "best"
    cases = [
        (["evaluate", str(ckpt), "--dataset", "isbi2012", "--data", str(tmp_path / "nope")],
         "nope"),
        (["evaluate", str(ckpt), "--dataset", "shapes", "--option", "num_images=1"],
         "predicts 2 classes but the dataset has 5"),
        (["evaluate", str(tmp_path / "missing"), "--dataset", "membranes"],
         "no such file or directory"),
    ]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    cases.append((["evaluate", str(bad), "--dataset", "membranes"], "bad.safetensors"))
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("unetlab evaluate: error:") and "\n" not in err, err
        assert needle in err, err


def test_train_with_missing_data_is_a_one_line_error(tmp_path, capsys):
    args = [a for o in tiny_overrides(tmp_path / "r") for a in ("--set", o)]
    argv = ["train", *args, "--set", "data.dataset=isbi2012", "--set", "data.options={}",
            "--set", "data.val_options={}",
            "--set", f"data.root={tmp_path / 'no_data'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unetlab train: error:") and "no_data" in err and "\n" not in err


def test_demo_quick_runs_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert f"run folder: {out}" in printed
    for name in ("metrics.csv", "curves.png", "demo.json", "config.yaml",
                 "predictions/synthetic_test_overlay.png",
                 "predictions/synthetic_test_labels.png", "checkpoints/best/model.safetensors"):
        assert (out / name).is_file(), name
    report = json.loads((out / "demo.json").read_text())
    assert 0.0 <= report["synthetic_test"]["pixel_error"] <= 1.0
    assert "miou" in report["synthetic_val"] and "isbi2012" not in report
    before = (out / "demo.json").read_bytes()
    assert main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err                   # demo has no --resume: not offered
    assert "already holds a run" in err and "--overwrite" in err and "--resume" not in err
    assert (out / "demo.json").read_bytes() == before


def test_demo_rejects_a_nonpositive_budget(capsys):
    assert main(["demo", "--minutes", "0"]) == 2
    assert "--minutes must be positive" in capsys.readouterr().err


def test_demo_checks_its_data_before_training_and_never_shares_a_folder(tmp_path, capsys):
    from unetlab.commands.demo import _new_folder

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--data", str(tmp_path / "nowhere"), "--out",
                 str(out)]) == 2
    assert "nowhere" in capsys.readouterr().err and not out.exists()
    first = _new_folder(tmp_path / "runs" / "demo-x")
    second = _new_folder(tmp_path / "runs" / "demo-x")   # the same second: its own folder
    assert first.is_dir() and second == tmp_path / "runs" / "demo-x-2" and second.is_dir()
