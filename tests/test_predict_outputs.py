"""``unetlab predict`` output planning: unique mirrored names, nothing existing replaced
without --overwrite, an input never, checks before any work; the manifest and --resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import unetlab
from unetlab.cli import main
from unetlab.errors import UnetlabError
from unetlab.inference import manifest as M
from unetlab.inference.distributed import shard_by_pixels
from unetlab.inference.outputs import collect_inputs, plan_outputs


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = unetlab.create_model("unet", in_channels=1, num_classes=3, channels=(4, 8))
    return unetlab.save_model(model.eval(), tmp_path_factory.mktemp("m") / "m.safetensors")


def _png(path, h=20, w=24, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random((h, w)) * 255).astype(np.uint8)).save(path)
    return path


def _predict(ckpt, *args):
    return main(["predict", "--tile-size", "16", "--no-progress", str(ckpt), *map(str, args)])


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unetlab predict: error:"), err
    return err[0]


def test_outputs_mirror_relative_paths_and_same_names_collide(tmp_path):
    for d in ("a", "a/sub", "b"):
        _png(tmp_path / d / "x.png")
    items = collect_inputs([tmp_path / "a"], recursive=True)
    assert [k for _, k in items] == ["sub/x.png", "x.png"]
    plan = plan_outputs(items, tmp_path / "out")
    assert [p.outputs["labels"] for p in plan] == [tmp_path / "out/sub/x_labels.png",
                                                   tmp_path / "out/x_labels.png"]
    # a/x.png and b/x.png would both become out/x_labels.png: refused, naming both
    with pytest.raises(UnetlabError, match=r"a/x\.png and .*b/x\.png would both"):
        plan_outputs(collect_inputs([tmp_path / "a", tmp_path / "b"]), tmp_path / "out")
    # x.png and x.tif share the overlay name
    (tmp_path / "b" / "x.tif").write_bytes(b"")
    with pytest.raises(UnetlabError, match="x_overlay.png"):
        plan_outputs(collect_inputs([tmp_path / "b"]), tmp_path / "out")


def test_pixel_balanced_shards():
    # one 100-px image balances three 30-px ones, not two files per rank
    assert shard_by_pixels([30, 100, 30, 30], 2) == [1, 0, 1, 1]
    assert shard_by_pixels([5, 5, 5, 5], 2) == [0, 1, 0, 1]
    assert shard_by_pixels([None, 7], 3) == [1, 0]


def test_out_is_input_folder_keeps_ground_truth(tmp_path, ckpt, capsys):
    data = tmp_path / "data"
    _png(data / "X.png")
    truth = _png(data / "X_labels.png", seed=9)
    before = truth.read_bytes()
    # X_labels.png is X's ground truth: not an input, and not replaced without --overwrite
    assert _predict(ckpt, data, "--out", data) == 2
    assert "X_labels.png exists" in _error(capsys)
    assert truth.read_bytes() == before and not (data / "X_overlay.png").exists()
    assert [k for _, k in collect_inputs([data])] == ["X.png"]
    # an input is never an output, even with --overwrite
    assert _predict(ckpt, data / "X.png", data / "X_labels.png", "--out", data,
                    "--overwrite") == 2
    assert "is an input" in _error(capsys) and truth.read_bytes() == before


def test_existing_output_needs_overwrite_and_manifest_resume(tmp_path, ckpt, capsys):
    _png(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    _png(out / "a_labels.png", seed=3)
    assert _predict(ckpt, tmp_path / "in", "--out", out) == 2
    assert "a_labels.png exists" in _error(capsys)
    # not written by predict (no manifest records it): maybe ground truth; kept even with
    # --overwrite
    before = (out / "a_labels.png").read_bytes()
    assert _predict(ckpt, tmp_path / "in", "--out", out, "--overwrite") == 2
    assert "no earlier prediction" in _error(capsys)
    assert (out / "a_labels.png").read_bytes() == before
    (out / "a_labels.png").unlink()
    assert _predict(ckpt, tmp_path / "in", "--out", out) == 0
    # predict's own outputs, which its manifest records, are replaced with --overwrite
    assert _predict(ckpt, tmp_path / "in", "--out", out, "--overwrite") == 0
    # a second run into the same folder: the manifest of the first is not replaced
    capsys.readouterr()
    assert _predict(ckpt, tmp_path / "in", "--out", out) == 2
    assert "--resume" in _error(capsys)
    assert _predict(ckpt, tmp_path / "in", "--out", out, "--resume", "--tile-size", "32") == 2
    assert "tile_size=16" in _error(capsys)


def test_unwritable_out_fails_before_the_model_loads(tmp_path, ckpt, capsys, monkeypatch):
    import unetlab.models.serialization as serialization

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr(serialization, "load_model", no_load)
    _png(tmp_path / "a.png")
    (tmp_path / "file").write_text("x")
    assert _predict(ckpt, tmp_path / "a.png", "--out", tmp_path / "file") == 2
    assert "--out" in _error(capsys)
    assert _predict(ckpt, tmp_path / "a.png", "--out", tmp_path / "file" / "sub") == 2
    assert "cannot create" in _error(capsys)


def test_corrupt_input_recorded_others_written_then_resume(tmp_path, ckpt, capsys):
    data, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        _png(data / f"img{i}.png", seed=i)
    (data / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert _predict(ckpt, data, "--out", out) == 2
    err = _error(capsys)
    assert "1 of 4 input(s) failed" in err and "bad.png" in err
    doc = json.loads((out / M.MANIFEST).read_text())
    status = {e["key"]: e["status"] for e in doc["inputs"]}
    assert status == {"bad.png": "failed", "img0.png": "complete", "img1.png": "complete",
                      "img2.png": "complete"}
    assert doc["counts"] == {"pending": 0, "complete": 3, "failed": 1}
    assert not (out / "bad_labels.png").exists()
    written = {p.name: p.read_bytes() for p in out.glob("img*")}
    assert len(written) == 6
    # the user repairs the file; --resume predicts only it and keeps the others
    _png(data / "bad.png", seed=7)
    capsys.readouterr()
    assert _predict(ckpt, data, "--out", out, "--resume") == 0
    lines = capsys.readouterr().out
    assert "bad.png: " in lines and "img0.png:" not in lines and "3 of 4" in lines
    assert {p.name: p.read_bytes() for p in out.glob("img*")} == written
    doc = json.loads((out / M.MANIFEST).read_text())
    assert doc["counts"] == {"pending": 0, "complete": 4, "failed": 0}


def test_resume_after_a_kill_uses_the_journals(tmp_path, ckpt, capsys):
    data, out = tmp_path / "in", tmp_path / "out"
    for i in range(3):
        _png(data / f"img{i}.png", seed=i)
    assert _predict(ckpt, data, "--out", out) == 0
    reference = {p.name: p.read_bytes() for p in out.glob("img*")}
    # as if killed after img0: the manifest still says pending, rank 1's journal says
    # img0 is complete, and img2's half-written label map is on disk
    doc = json.loads((out / M.MANIFEST).read_text())
    first = next(e for e in doc["inputs"] if e["key"] == "img0.png")
    M.append_journal(out, 1, {"input": first["input"], "status": "complete",
                              "outputs": dict(first["outputs"])})
    for e in doc["inputs"]:
        e.update(status="pending", outputs=None)
    (out / M.MANIFEST).write_text(json.dumps(doc))
    (out / "img2_labels.png").write_bytes(b"partial")
    capsys.readouterr()
    assert _predict(ckpt, data, "--out", out, "--resume") == 0
    lines = capsys.readouterr().out
    assert "img0.png:" not in lines and "img1.png:" in lines and "img2.png:" in lines
    assert {p.name: p.read_bytes() for p in out.glob("img*")} == reference
    assert not M.journals(out)


def test_overwrite_knows_every_earlier_run_into_the_folder(tmp_path, ckpt, capsys,
                                                           monkeypatch):
    """Runs A, B, then A again with --overwrite, the last from another working folder:
    the manifest's cumulative record (relative to --out) lets each replace its own."""
    _png(tmp_path / "in1" / "a.png")
    _png(tmp_path / "in2" / "b.png", seed=1)
    out = tmp_path / "out"
    monkeypatch.chdir(tmp_path)
    assert _predict(ckpt, "in1", "--out", "out") == 0
    assert _predict(ckpt, "in2", "--out", "out", "--overwrite") == 0
    monkeypatch.chdir(tmp_path / "in2")
    assert _predict(ckpt, tmp_path / "in1", "--out", out, "--overwrite") == 0
    # a file no prediction wrote stays refused
    _png(out / "c_labels.png", seed=3)
    _png(tmp_path / "in3" / "c.png", seed=2)
    capsys.readouterr()
    assert _predict(ckpt, tmp_path / "in3", "--out", out, "--overwrite") == 2
    assert "no earlier prediction" in _error(capsys)
