"""`unetlab export` refuses a calibration crop the model cannot take, caps one larger than
the images need, leaves nothing behind when it fails, and tells the caller of the exported
file every step `unetlab predict` takes (the resolution scale included)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import unetlab
from unetlab.card import build_card
from unetlab.cli import main
from unetlab.preprocess import Preprocessing

NORM = {"mean": [0.5], "std": [0.25]}


def _checkpoint(tmp_path, *, scale=1.0, normalize=None, **options):
    torch.manual_seed(0)
    options = {"channels": (4, 8), **options}
    model = unetlab.create_model("unet", in_channels=1, num_classes=2, **options).eval()
    card = build_card(model, preprocessing=Preprocessing(channels=1, normalize=normalize),
                      scale=scale)
    return model, unetlab.save_model(model, tmp_path / "m.safetensors", card=card)


def _images(folder, n=2, shape=(40, 52)):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _files(folder):
    return sorted(p.name for p in folder.rglob("*"))


# ---- the calibration crop size ------------------------------------------------------------

@pytest.mark.parametrize("options,tile,says", [
    ({}, 3, "not a multiple of 2"),                  # the red-team's MaxPool failure
    ({}, 0, "must be positive"),
    ({"channels": (4, 8, 16), "padding": "valid"}, 30, "not valid"),
])
def test_a_calibration_tile_the_model_cannot_take_is_one_line_and_writes_nothing(
        tmp_path, capsys, options, tile, says):
    _, ckpt = _checkpoint(tmp_path, **options)
    calib = _images(tmp_path / "calib")
    out = tmp_path / "out" / "m.xml"
    before = _files(tmp_path)
    rc = main(["export", str(ckpt), "--format", "openvino", "--int8", "--calibration",
               str(calib), "--tile-size", str(tile), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert f"--tile-size {tile}" in err[0] and says in err[0], err
    assert _files(tmp_path) == before


def test_calibration_crops_are_no_larger_than_the_images_need(tmp_path):
    from unetlab.inference.calibration import calibration_tile, load_calibration
    from unetlab.models.unet import valid_input_size

    model, _ = _checkpoint(tmp_path)
    calib = _images(tmp_path / "calib")                 # 40 x 52 pixels
    batches = load_calibration(calib, model, tile_size=4096)
    assert [tuple(b.shape) for b in batches] == [(1, 1, 256, 256)] * 2  # as predict's tiles
    assert [tuple(b.shape) for b in load_calibration(calib, model, tile_size=64)] == \
        [(1, 1, 64, 64)] * 2                            # a size the images need: as asked
    assert calibration_tile(model, 100_000, 52) == 256  # no 9.3 GiB crop
    valid = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8, 16),
                                 padding="valid")
    assert calibration_tile(valid, 100_001, 52) == valid_input_size(52, 3)


def test_export_int8_calibrates_on_crops_capped_to_the_images(tmp_path, capsys, monkeypatch):
    """Up to the quantization (faked here: no OpenVINO needed): the crops of a mistyped
    --tile-size are the images' size, and the failure leaves no file."""
    from unetlab.commands import _common
    from unetlab.inference import openvino

    seen = []

    def fake_optimized(model, **options):
        seen.extend(tuple(b.shape) for b in options["calibration"])
        raise RuntimeError("quantization stopped by the test")

    monkeypatch.setattr(openvino, "require_openvino", lambda: None)
    monkeypatch.setattr(_common, "optimized", fake_optimized)
    _, ckpt = _checkpoint(tmp_path)
    calib = _images(tmp_path / "calib")
    before = _files(tmp_path)
    rc = main(["export", str(ckpt), "--format", "openvino", "--int8", "--calibration",
               str(calib), "--tile-size", "4096", "--out", str(tmp_path / "m.xml")])
    assert rc == 2 and "stopped by the test" in capsys.readouterr().err
    assert seen == [(1, 1, 256, 256)] * 2
    assert _files(tmp_path) == before


def test_tile_size_without_int8_is_refused(tmp_path, capsys):
    _, ckpt = _checkpoint(tmp_path)
    rc = main(["export", str(ckpt), "--format", "openvino", "--tile-size", "64",
               "--out", str(tmp_path / "m.xml")])
    assert rc == 2 and "only used with --int8" in capsys.readouterr().err
    assert not (tmp_path / "m.xml").exists()


# ---- a failed export leaves nothing behind ------------------------------------------------

def test_a_failed_onnx_export_leaves_nothing_and_keeps_earlier_files(tmp_path, capsys,
                                                                     monkeypatch):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")

    class Wrong:
        def __init__(self, *args, **kwargs):
            pass

        def run(self, *args, **kwargs):
            return [np.zeros((1, 1, 2, 2), np.float32)]

    monkeypatch.setattr(ort, "InferenceSession", Wrong)
    _, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "new" / "deeper" / "m.onnx"        # folders made for it go too
    before = _files(tmp_path)
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out)]) == 2
    assert "exported model gives shape" in capsys.readouterr().err
    assert _files(tmp_path) == before
    # --overwrite: the earlier export and its card stay as they were until one succeeds
    out = tmp_path / "m.onnx"
    out.write_bytes(b"an earlier export")
    (tmp_path / "m.onnx.card.json").write_text("{}")
    before = _files(tmp_path)
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out),
                 "--overwrite"]) == 2
    assert _files(tmp_path) == before
    assert out.read_bytes() == b"an earlier export"
    assert (tmp_path / "m.onnx.card.json").read_text() == "{}"


def test_a_failed_openvino_export_leaves_nothing_and_keeps_earlier_files(tmp_path, capsys,
                                                                         monkeypatch):
    pytest.importorskip("openvino")
    from unetlab.inference import openvino

    def refuse(path, **kwargs):
        assert path.is_file() and path.with_suffix(".bin").is_file()  # written, not moved
        raise RuntimeError("the check failed")

    monkeypatch.setattr(openvino, "load_openvino", refuse)
    _, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "ov" / "m.xml"
    before = _files(tmp_path)
    assert main(["export", str(ckpt), "--format", "openvino", "--out", str(out)]) == 2
    assert "the check failed" in capsys.readouterr().err
    assert _files(tmp_path) == before                   # no .xml, .bin, card or folder
    out.parent.mkdir()
    earlier = {out: b"<xml/>", out.with_suffix(".bin"): b"bin",
               out.with_name("m.xml.card.json"): b"{}"}
    for path, data in earlier.items():
        path.write_bytes(data)
    assert main(["export", str(ckpt), "--format", "openvino", "--out", str(out),
                 "--overwrite"]) == 2
    assert {p: p.read_bytes() for p in earlier} == earlier
    assert _files(out.parent) == sorted(p.name for p in earlier)


# ---- what the caller of an exported file must do ------------------------------------------

def _follow(card, run, image_u8):
    """The card's caller_prepares, step by step, for a (H, W) uint8 image: class logits at
    the image's size."""
    steps = card["extensions"]["export"]["caller_prepares"]
    x = torch.from_numpy(image_u8.astype(np.float32) / 255)[None, None]
    norm = card["input"]["normalize"]
    if norm:
        assert f"(x - {norm['mean']}) / {norm['std']}" in steps
        x = (x - norm["mean"][0]) / norm["std"][0]
    scale = card["input"]["scale"]
    if scale != 1.0:
        assert f"resized by the card's input.scale {scale:g}" in steps and "area" in steps
        x = F.interpolate(x, size=tuple(round(s * scale) for s in x.shape[2:]), mode="area")
    h, w = x.shape[2:]
    divisor = card["geometry"]["divisor"]
    if f"multiple of {divisor}" in steps:
        x = F.pad(x, (0, (-w) % divisor, 0, (-h) % divisor), mode="reflect")
    y = torch.from_numpy(np.asarray(run(x.contiguous().numpy())))[:, :, :h, :w]
    if scale != 1.0:
        assert "logits resized back to the image's own size (bilinear" in steps
        y = F.interpolate(y, size=image_u8.shape, mode="bilinear", align_corners=False)
    return y


def _predicts(model, image_u8, scale, normalize):
    """What unetlab predict's model computes on the whole image (ScaledModel)."""
    from unetlab.inference.scaled import ScaledModel

    x = torch.from_numpy(Preprocessing(channels=1, normalize=normalize)(image_u8[None]))
    with torch.no_grad():
        return ScaledModel(model, scale)(x[None])


def test_the_onnx_card_of_a_scaled_model_says_to_resize(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, ckpt = _checkpoint(tmp_path, scale=0.5, normalize=NORM)
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out)]) == 0
    card = json.loads((tmp_path / "m.onnx.card.json").read_text())
    assert card["input"]["normalize"] is None          # inside the graph
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(1).integers(0, 256, (42, 38), dtype=np.uint8)
    y = _follow(card, lambda a: session.run(None, {"image": a})[0], image)
    assert (y - _predicts(model, image, 0.5, NORM)).abs().max() < 1e-4
    # at scale 1 the note has no resizing
    _, plain = _checkpoint(tmp_path / "plain")
    assert main(["export", str(plain), "--format", "onnx", "--out",
                 str(tmp_path / "p.onnx")]) == 0
    note = json.loads((tmp_path / "p.onnx.card.json").read_text())["extensions"]["export"]
    assert "resized" not in note["caller_prepares"]


def test_the_openvino_ir_card_says_what_the_caller_does(tmp_path):
    """The IR is the bare network: no normalisation, no resizing, no padding inside; its
    card says all three, and following it gives predict's logits."""
    ov = pytest.importorskip("openvino")
    model, ckpt = _checkpoint(tmp_path, scale=0.5, normalize=NORM)
    out = tmp_path / "m.xml"
    assert main(["export", str(ckpt), "--format", "openvino", "--out", str(out)]) == 0
    card = json.loads((tmp_path / "m.xml.card.json").read_text())
    note = card["extensions"]["export"]
    assert note["format"] == "openvino" and note["normalization_in_graph"] is None
    assert card["input"]["normalize"]["mean"] == NORM["mean"]
    assert "multiple of 2" in note["caller_prepares"]
    assert card["extensions"]["optimization"]["precision"] == "fp32"
    # (f32: OpenVINO's default on CPUs with AMX is bf16)
    compiled = ov.Core().compile_model(str(out), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    image = np.random.default_rng(2).integers(0, 256, (42, 38), dtype=np.uint8)  # 21 x 19
    y = _follow(card, lambda a: compiled(a)[0], image)
    assert (y - _predicts(model, image, 0.5, NORM)).abs().max() < 1e-4
