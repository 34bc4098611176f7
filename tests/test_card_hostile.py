"""Hostile or absurd model cards: refused quickly with a one-line error naming the file,
never a hang, a huge build, a bare RecursionError or a prediction on infinite inputs."""

from __future__ import annotations

import contextlib
import json
import signal
import time

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import unetlab
from unetlab.card import CARD_KEY, CONFIG_KEY, MAX_LEVELS, build_card, read_card
from unetlab.cli import main
from unetlab.errors import UnetlabError
from unetlab.inference.scaled import _native_multiple
from unetlab.preprocess import Preprocessing


@contextlib.contextmanager
def _deadline(seconds: float):
    """Turn a hang into a test failure (SIGALRM; pytest runs tests in the main thread)."""
    def _raise(signum, frame):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _model():
    torch.manual_seed(0)
    return unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8)).eval()


def _card(model):
    return build_card(model, preprocessing=Preprocessing(
        channels=1, normalize={"mean": [0.5], "std": [0.25]}), class_names=["bg", "fg"])


def _file(path, model, card, *, raw_card: str | None = None):
    """The model's tensors with ``card`` (or the text ``raw_card``) as its card, the way
    the red-team scripts rewrite a checkpoint's metadata."""
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {CONFIG_KEY: json.dumps(model.unetlab_config),
            CARD_KEY: raw_card if raw_card is not None else json.dumps(card)}
    save_file(state, str(path), metadata=meta)
    return path


def _one_line_error(capsys, command: str, path) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"unetlab {command}: error:"), err
    assert str(path) in err[0]
    return err[0]


# ---- 1. input.scale ------------------------------------------------------------------


def test_native_multiple_is_immediate_for_any_scale():
    with _deadline(2.0):
        start = time.perf_counter()
        for scale in (1e-9, 1e-6, 5e-324, 1 / 3, 0.37, 0.5):
            _native_multiple(16, scale)
        assert time.perf_counter() - start < 0.5
    # the same answers as the former search where that one was quick
    assert _native_multiple(16, 0.5) == 32 and _native_multiple(16, 0.375) == 128
    assert _native_multiple(16, 0.25) == 64 and _native_multiple(16, 1.0) == 16
    assert _native_multiple(16, 0.37) == 16 and _native_multiple(4, 2.0) == 2
    assert _native_multiple(16, 1 / 3) == 48 and _native_multiple(16, 0.75) == 64


def test_a_tiny_input_scale_is_refused_and_predict_does_not_hang(tmp_path, capsys):
    model = _model()
    card = _card(model)
    card["input"]["scale"] = 1e-9
    path = _file(tmp_path / "m.safetensors", model, card)
    with pytest.raises(UnetlabError, match="input.scale"):
        read_card(path)
    image = tmp_path / "x.npy"
    np.save(image, np.zeros((16, 16), np.float32))
    with _deadline(20.0):
        assert main(["predict", str(path), str(image), "--out", str(tmp_path / "out"),
                     "--no-progress", "--backend", "torch"]) == 2
    assert "input.scale" in _one_line_error(capsys, "predict", path)


@pytest.mark.parametrize("scale", [1 / 32, 0.25, 0.375, 0.5, 0.75, 1.0, 2.0, 4.0])
def test_the_planner_scales_and_the_floor_are_accepted(tmp_path, scale):
    model = _model()
    card = _card(model)
    card["input"]["scale"] = scale
    assert read_card(_file(tmp_path / "m.safetensors", model, card))["input"]["scale"] == scale


# ---- 2. a card with thousands of levels -----------------------------------------------


def test_a_card_with_thousands_of_levels_is_refused_before_building(tmp_path, monkeypatch,
                                                                   capsys):
    import unetlab.models.serialization as serialization

    model = _model()
    card = _card(model)
    card["architecture"]["options"]["channels"] = [8] * 2000
    path = _file(tmp_path / "m.safetensors", model, card)
    built = []
    monkeypatch.setattr(serialization, "create_model", lambda *a, **k: built.append(a))
    with _deadline(5.0), pytest.raises(UnetlabError, match="2000 levels") as info:
        unetlab.load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert built == []  # nothing was built, not even on the meta device
    assert main(["info", str(path)]) == 2
    assert "levels" in _one_line_error(capsys, "info", path)


def test_the_deepest_allowed_card_still_validates(tmp_path):
    model = _model()
    card = _card(model)
    card["architecture"]["options"]["channels"] = [4] * MAX_LEVELS
    path = _file(tmp_path / "m.safetensors", model, card)
    assert len(read_card(path)["architecture"]["options"]["channels"]) == MAX_LEVELS
    with pytest.raises(UnetlabError, match="weights do not match"):  # the shapes check
        unetlab.load_model(path)


# ---- 3. deeply nested card JSON --------------------------------------------------------


def test_a_deeply_nested_card_is_a_one_line_error_naming_the_file(tmp_path, capsys):
    model = _model()
    path = _file(tmp_path / "m.safetensors", model, None,
                 raw_card="[" * 100_000 + "]" * 100_000)
    with pytest.raises(UnetlabError, match="nested too deeply") as info:
        read_card(path)
    assert str(path) in str(info.value)
    assert main(["info", str(path)]) == 2
    assert "nested" in _one_line_error(capsys, "info", path)


def test_a_card_nested_below_the_json_limit_is_refused_too(tmp_path):
    model = _model()
    card = _card(model)
    deep: list = []
    for _ in range(500):  # decodes fine, but deepcopy / repr of it would recurse
        deep = [deep]
    card["extensions"]["x"] = deep
    path = _file(tmp_path / "m.safetensors", model, card)
    with pytest.raises(UnetlabError, match="nested more than") as info:
        read_card(path)
    assert str(path) in str(info.value)


# ---- 4. normalisation std/mean that are zero or infinite in float32 -------------------


@pytest.mark.parametrize("normalize, expected", [
    ({"mean": [0.5], "std": [1e-300]}, "std must be at least"),
    ({"mean": [0.5], "std": [1e-20]}, "std must be at least"),
    ({"mean": [0.5], "std": [1e300]}, "finite in float32"),
    ({"mean": [1e300], "std": [0.25]}, "finite in float32"),
    ({"mean": [float("inf")], "std": [0.25]}, "mean must be finite"),
])
def test_a_float32_degenerate_normalisation_is_refused(tmp_path, capsys, normalize, expected):
    model = _model()
    card = _card(model)
    card["input"]["normalize"] = {"name": "custom", **normalize}
    path = _file(tmp_path / "m.safetensors", model, card)
    with pytest.raises(UnetlabError, match=expected):
        read_card(path)
    image = tmp_path / "x.npy"
    np.save(image, np.zeros((16, 16), np.float32))
    assert main(["predict", str(path), str(image), "--out", str(tmp_path / "out"),
                 "--no-progress", "--backend", "torch"]) == 2
    _one_line_error(capsys, "predict", path)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*labels*"))


def test_small_but_float32_safe_std_values_are_accepted(tmp_path):
    model = _model()
    card = _card(model)
    # GeoTIFF band statistics keep any std > 1e-12 (stored as float32)
    std = float(np.float32(1.0000001e-12))
    card["input"]["normalize"] = {"name": "band_statistics", "mean": [0.5], "std": [std]}
    path = _file(tmp_path / "m.safetensors", model, card)
    assert read_card(path)["input"]["normalize"]["std"] == [std]
