"""The model card on disk: ``unetlab info``, files without a card, newer schemas and
malformed cards (one-line errors, nothing allocated)."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from safetensors.torch import save_file

import unetlab
from unetlab.card import CARD_KEY, CONFIG_KEY, build_card, read_card
from unetlab.cli import main
from unetlab.errors import UnetlabError
from unetlab.preprocess import Preprocessing


def _tiny(**options):
    torch.manual_seed(0)
    return unetlab.create_model("unet", in_channels=3, num_classes=2, channels=(4, 8),
                                **options).eval()


def _card(model, **kwargs):
    return build_card(model, preprocessing=Preprocessing(channels=3, normalize="imagenet"),
                      class_names=["road", "car"], **kwargs)


def _raw_file(path, model, meta: dict):
    """A safetensors file with the model's tensors and exactly ``meta`` (strings)."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={k: v if isinstance(v, str) else json.dumps(v)
                                          for k, v in meta.items()})
    return path


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"unetlab {command}: error:"), err
    return err[0]


def test_info_prints_the_card_and_writes_the_flat_json(tmp_path, capsys):
    model = _tiny()
    path = unetlab.save_model(model, tmp_path / "m.safetensors",
                              card=_card(model, training={"dataset": "camvid", "steps": 7}))
    assert main(["info", str(path), "--json", str(tmp_path / "card.json")]) == 0
    out = capsys.readouterr().out
    assert "unet (2-D)" in out and "road, car" in out and "imagenet" in out
    assert "steps 7" in out
    data = json.loads((tmp_path / "card.json").read_text())
    assert data["name"] == "unet" and data["in_channels"] == 3 and data["num_classes"] == 2
    assert data["class_names"] == ["road", "car"] and data["schema_version"] == 1
    assert data["normalize"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert data["normalize"]["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert data["geometry"]["divisor"] == 2 and data["training"]["dataset"] == "camvid"
    # a checkpoint folder works too
    (tmp_path / "ckpt").mkdir()
    unetlab.save_model(model, tmp_path / "ckpt", card=_card(model))
    assert main(["info", str(tmp_path / "ckpt")]) == 0


def test_info_one_line_errors_and_never_overwrites_the_model(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nope.safetensors")]) == 2
    assert "no model file at" in _one_line_error(capsys, "info")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    assert main(["info", str(bad)]) == 2
    assert str(bad) in _one_line_error(capsys, "info")
    model = _tiny()
    path = unetlab.save_model(model, tmp_path / "m.safetensors")
    before = path.read_bytes()
    assert main(["info", str(path), "--json", str(path)]) == 2
    assert "is an input of this command" in _one_line_error(capsys, "info")
    assert path.read_bytes() == before


def test_a_file_without_a_card_loads_with_a_warning(tmp_path, caplog, capsys):
    model = _tiny()
    path = _raw_file(tmp_path / "old.safetensors", model,
                     {CONFIG_KEY: model.unetlab_config, "class_names": ["road", "car"]})
    with caplog.at_level(logging.WARNING):
        loaded = unetlab.load_model(path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "no model card" in message and "no normalisation" in message
    assert "\n" not in message
    assert loaded.unetlab_card["assumed"] is True
    assert loaded.unetlab_card["classes"]["names"] == ["road", "car"]
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert main(["info", str(path)]) == 0
    assert "assumed" in capsys.readouterr().out


def test_a_newer_schema_is_a_one_line_error(tmp_path, capsys):
    model = _tiny()
    card = _card(model)
    card["schema_version"] = 2
    path = _raw_file(tmp_path / "new.safetensors", model,
                     {CONFIG_KEY: model.unetlab_config, CARD_KEY: card})
    with pytest.raises(UnetlabError, match="schema 2 is newer"):
        unetlab.load_model(path)
    assert main(["info", str(path)]) == 2
    assert "upgrade unetlab" in _one_line_error(capsys, "info")
    image = tmp_path / "a.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(image)
    assert main(["predict", str(path), str(image), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 2
    assert "newer" in _one_line_error(capsys, "predict")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("change, expected", [
    (lambda c: c["architecture"].update(options=[4, 8]), "architecture.options must be an object"),
    (lambda c: c["architecture"].pop("in_channels"), "architecture has no in_channels"),
    (lambda c: c["input"].update(normalize={"mean": [0.5], "std": [0.0]}), "std must be positive"),
    (lambda c: c["classes"].update(names=["a"]), "classes.names must list 2"),
    (lambda c: c["input"].update(scaling="log"), "input.scaling"),
])
def test_malformed_cards_are_one_line_errors(tmp_path, capsys, change, expected):
    model = _tiny()
    card = _card(model)
    change(card)
    path = _raw_file(tmp_path / "m.safetensors", model,
                     {CONFIG_KEY: model.unetlab_config, CARD_KEY: card})
    with pytest.raises(UnetlabError, match=expected):
        read_card(path)
    assert main(["info", str(path)]) == 2
    line = _one_line_error(capsys, "info")
    assert str(path) in line and expected.split()[0] in line


def test_a_huge_architecture_over_tiny_tensors_is_refused_before_allocation(tmp_path, monkeypatch,
                                                                             capsys):
    import unetlab.models.serialization as serialization

    model = _tiny()
    card = _card(model)
    card["architecture"]["options"]["channels"] = [4096, 8192, 16384]
    path = _raw_file(tmp_path / "m.safetensors", model,
                     {CONFIG_KEY: card["architecture"], CARD_KEY: card})
    devices = []
    real = serialization.create_model

    def spy(*args, **kwargs):
        devices.append(str(torch.get_default_device()))
        return real(*args, **kwargs)

    monkeypatch.setattr(serialization, "create_model", spy)
    with pytest.raises(UnetlabError, match="weights do not match"):
        unetlab.load_model(path)
    assert devices == ["meta"]  # only the shape probe was built, on the meta device
    assert main(["info", str(path)]) == 0  # the card itself is well formed
    capsys.readouterr()
    assert main(["evaluate", str(path), "--dataset", "shapes"]) == 2
    assert "weights do not match" in _one_line_error(capsys, "evaluate")


def test_wrappers_forward_geometry_and_card():
    from unetlab.inference import optimize_for_inference
    from unetlab.models.geometry import geometry_of

    model = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8, 16),
                                 padding="valid").eval()
    model.unetlab_card = build_card(model)
    fast = optimize_for_inference(model, winograd=False)
    assert geometry_of(fast) == model.geometry()
    assert geometry_of(fast).margin > 0 and fast.unetlab_card is model.unetlab_card
