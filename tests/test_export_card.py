"""What a caller of an exported model must do: the normalisation inside the graph, the
card in the ONNX metadata and beside the file, and no silent overwrite."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import unetlab
from unetlab.card import build_card
from unetlab.cli import main
from unetlab.preprocess import Preprocessing


def _checkpoint(tmp_path, normalize="imagenet"):
    torch.manual_seed(0)
    model = unetlab.create_model("unet", in_channels=3, num_classes=2, channels=(4, 8)).eval()
    card = build_card(model, preprocessing=Preprocessing(channels=3, normalize=normalize),
                      class_names=["bg", "fg"])
    return model, unetlab.save_model(model, tmp_path / "m.safetensors", card=card)


def test_onnx_export_embeds_the_normalisation_and_carries_the_card(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "m.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out)]) == 0
    assert "m.onnx.card.json" in capsys.readouterr().out
    # the caller scales a uint8 image to [0, 1] and nothing else
    image = np.random.default_rng(0).integers(0, 256, (1, 3, 24, 32), dtype=np.uint8)
    x = image.astype(np.float32) / 255
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"image": x})
    prep = Preprocessing(channels=3, normalize="imagenet")
    with torch.no_grad():
        ref = model(torch.from_numpy(prep(image[0]))[None]).numpy()
    assert np.abs(y - ref).max() < 1e-4
    proto = onnx.load(str(out))
    (first,) = [n for n in proto.graph.node if "image" in n.input]  # the graph's input
    assert first.op_type == "Sub"
    (second,) = [n for n in proto.graph.node if first.output[0] in n.input]
    assert second.op_type == "Div"
    meta = {p.key: p.value for p in proto.metadata_props}
    card = json.loads(meta["unetlab_card"])
    assert card == json.loads((tmp_path / "m.onnx.card.json").read_text())
    assert card["input"]["normalize"] is None  # nothing left for the caller to normalise
    export = card["extensions"]["export"]
    assert export["normalization_in_graph"]["name"] == "imagenet"
    assert "uint8 /255" in export["caller_prepares"] and export["input"] == "image"
    assert card["classes"]["names"] == ["bg", "fg"]
    assert Preprocessing.from_card(card).normalize is None


def test_export_without_embedding_tells_the_caller_to_normalise(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model, ckpt = _checkpoint(tmp_path, normalize={"mean": [0.2, 0.3, 0.4],
                                                   "std": [0.5, 0.5, 0.5]})
    out = tmp_path / "raw.onnx"
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out),
                 "--no-embed-normalize"]) == 0
    card = json.loads((tmp_path / "raw.onnx.card.json").read_text())
    assert card["input"]["normalize"]["mean"] == [0.2, 0.3, 0.4]
    assert card["extensions"]["export"]["normalization_in_graph"] is None
    assert "(x - [0.2, 0.3, 0.4])" in card["extensions"]["export"]["caller_prepares"]
    x = np.random.default_rng(1).random((1, 3, 16, 16)).astype(np.float32)
    prep = Preprocessing.from_card(card)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"image": prep(x[0])[None]})
    with torch.no_grad():
        ref = model(torch.from_numpy(prep(x[0]))[None]).numpy()
    assert np.abs(y - ref).max() < 1e-4


def test_torchscript_export_embeds_the_normalisation(tmp_path):
    model, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "m.pt"
    assert main(["export", str(ckpt), "--format", "torchscript", "--out", str(out)]) == 0
    x = torch.rand(1, 3, 16, 16)
    prep = Preprocessing(channels=3, normalize="imagenet")
    with torch.no_grad():
        got = torch.jit.load(str(out))(x)
        ref = model(prep.normalize_tensor(x[0])[None])
    assert (got - ref).abs().max() < 1e-5
    assert (tmp_path / "m.pt.card.json").is_file()


def test_export_never_overwrites_without_overwrite(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    _, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "m.onnx"
    out.write_bytes(b"an earlier export")
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
    assert out.read_bytes() == b"an earlier export"
    assert not (tmp_path / "m.onnx.card.json").exists()
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(out),
                 "--overwrite"]) == 0
    assert out.read_bytes() != b"an earlier export"
    before = ckpt.read_bytes()
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(ckpt),
                 "--overwrite"]) == 2
    assert "would write over the input" in capsys.readouterr().err
    assert ckpt.read_bytes() == before
