"""Paths found by a review of the merged commands: --json, evaluate's default JSON, fit
--overwrite, a run that stopped before its first checkpoint, run folders as checkpoints,
NaN voxels and scales the card cannot hold."""

from __future__ import annotations

import json

import numpy as np
import pytest

import unetlab
from unetlab.cli import main
from unetlab.errors import UnetlabError
from unetlab.imageio import write_image


@pytest.fixture()
def model_file(tmp_path):
    net = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8))
    return unetlab.save_model(net.eval(), tmp_path / "m.safetensors")


def _err(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_json_never_replaces_an_input_or_an_earlier_file(tmp_path, model_file, capsys):
    image = tmp_path / "a.png"
    write_image(image, np.zeros((16, 16), np.uint8))
    before = image.read_bytes()
    args = ["predict", str(model_file), str(image), "--out", str(tmp_path / "o"),
            "--backend", "eager", "--no-progress"]
    assert main([*args, "--json", str(image)]) == 2
    assert "is an input" in _err(capsys) and image.read_bytes() == before
    earlier = tmp_path / "earlier.json"
    earlier.write_text("{}")
    assert main(["info", str(model_file), "--json", str(earlier)]) == 2
    assert "already exists" in _err(capsys) and earlier.read_text() == "{}"
    assert main([*args, "--json", str(tmp_path / "p.json")]) == 0


@pytest.mark.parametrize("argv, target", [
    (["export", "{m}", "--format", "onnx", "--out", "{t}/e.onnx"], "e.onnx"),
    (["export", "{m}", "--format", "onnx", "--out", "{t}/e.onnx"], "e.onnx.card.json"),
    (["export", "{m}", "--format", "openvino", "--out", "{t}/e.xml"], "e.bin"),
    (["plan", "--dataset", "membranes", "--budget", "1m", "--out", "{t}/p.yaml"], "p.yaml"),
    (["predict", "{m}", "{t}/a.png", "--out", "{t}/o"], "o/a_labels.png"),
    (["predict", "{m}", "{t}/a.png", "--out", "{t}/o"], "o/predict_manifest.json"),
    (["train", "--out", "{t}/r"], "r/summary.json"),
    (["train", "--out", "{t}/r"], "r/checkpoints/x.json"),
    (["fit", "--dataset", "membranes", "--budget", "20s", "--out", "{t}/f"], "f/fit.json"),
    (["compare", "--quick", "--out", "{t}/c"], "c/models/results.json"),
])
def test_json_is_never_a_file_the_command_itself_writes(tmp_path, model_file, capsys, argv,
                                                        target):
    """--json naming the model being exported, the plan, a prediction, the predict
    manifest or a run's state: the report replaced it and the command said it wrote it."""
    write_image(tmp_path / "a.png", np.zeros((16, 16), np.uint8))
    argv = [a.format(m=model_file, t=tmp_path) for a in argv]
    assert main([*argv, "--json", str(tmp_path / target)]) == 2
    err = _err(capsys)
    assert "--json" in err and "writes" in err and not (tmp_path / target).exists()


def test_json_beside_a_run_or_replacing_an_unrelated_file(tmp_path):
    """A report of one's own name inside the run folder is fine; --overwrite (the run's)
    does not let --json replace a file that is not an earlier report."""
    import argparse

    from unetlab.commands._common import check_json_target

    def args(json_path, **kw):
        return argparse.Namespace(command="train", out=tmp_path / "r", json=json_path,
                                  overwrite=True, **kw)

    check_json_target(args(tmp_path / "r" / "my_report.json"))
    earlier = tmp_path / "earlier.json"
    earlier.write_text("{}")
    check_json_target(args(earlier))                     # an earlier report: --overwrite
    victim = tmp_path / "photo.png"
    victim.write_bytes(b"png")
    with pytest.raises(UnetlabError, match="not a .json file"):
        check_json_target(args(victim))


def test_evaluate_keeps_its_earlier_results(tmp_path, capsys):
    net = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8))
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    unetlab.save_model(net.eval(), ckpt / "model.safetensors")
    args = ["evaluate", str(ckpt), "--dataset", "membranes", "--option", "num_images=1",
            "--option", "size=32", "--backend", "eager", "--no-boundary"]
    assert main(args) == 0 and main(args) == 0
    first, second = ckpt / "eval_membranes_val.json", ckpt / "eval_membranes_val-2.json"
    assert json.loads(first.read_text())["num_images"] == 1 and second.is_file()


def test_fit_overwrite_removes_only_its_own_outputs(tmp_path):
    from unetlab.commands.fit import _check_out

    out = tmp_path / "run"
    (out / "checkpoints" / "best").mkdir(parents=True)
    (out / "plan.yaml").write_text("x: 1\n")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UnetlabError, match="--overwrite"):
        _check_out(out, overwrite=False)
    _check_out(out, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine"
    assert not (out / "plan.yaml").exists() and not (out / "checkpoints").exists()


def test_a_run_that_stopped_before_its_first_checkpoint_may_be_retried(tmp_path):
    from unetlab.training.trainer import check_run_folder

    (tmp_path / "config.yaml").write_text("x: 1\n")
    check_run_folder(tmp_path, resume=False, overwrite=False)  # nothing of it to lose
    (tmp_path / "metrics.csv").write_text("epoch\n1\n")
    with pytest.raises(UnetlabError, match="already holds a run"):
        check_run_folder(tmp_path, resume=False, overwrite=False)


def test_a_training_run_folder_is_a_checkpoint(tmp_path):
    net = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8))
    best = tmp_path / "run" / "checkpoints" / "best"
    best.mkdir(parents=True)
    unetlab.save_model(net, best / "model.safetensors")
    assert unetlab.load_model(tmp_path / "run").unetlab_card["architecture"]["name"] == "unet"


def test_card_scale_outside_the_supported_range_is_refused(model_file):
    from unetlab.card import read_card, validate_card

    card = read_card(model_file)
    card["input"]["scale"] = 100
    with pytest.raises(UnetlabError, match=r"input.scale must be a number in \[1/32, 4\]"):
        validate_card(card, "x")
    card["input"]["scale"] = 1.0
    card["architecture"]["spatial_dims"] = 3
    card["input"]["scale"] = 0.5
    with pytest.raises(UnetlabError, match="2-D models only"):
        validate_card(card, "x")


def test_nan_voxels_in_a_nifti_volume_are_refused(tmp_path):
    nib = pytest.importorskip("nibabel")
    from unetlab.data.volumes import read_volume

    data = np.zeros((8, 8, 4), np.float32)
    data[1, 2, 3] = np.nan
    path = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    with pytest.raises(UnetlabError, match=r"nan.nii.gz: 1 NaN or infinite"):
        read_volume(path)


def test_saved_models_get_the_permissions_of_any_new_file(tmp_path, model_file):
    """safetensors wrote model files 0600: others on a shared runs folder could not read
    the models beside the (0644) cards and metrics."""
    import os

    from unetlab._io import _umask

    assert os.stat(model_file).st_mode & 0o777 == 0o666 & ~_umask()


def test_a_checkpoints_files_are_all_readable_as_any_new_file(tmp_path):
    """The optimizer and RNG files too: without them a colleague cannot resume."""
    import os

    from unetlab._io import _umask
    from unetlab.training.checkpoint import save_checkpoint

    net = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8))
    opt = __import__("torch").optim.Adam(net.parameters())
    path = save_checkpoint(tmp_path / "last", model=net, optimizer=opt, state={})
    for f in path.iterdir():
        assert os.stat(f).st_mode & 0o777 == 0o666 & ~_umask(), f.name
