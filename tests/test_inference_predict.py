"""Streaming file prediction and the ``unetlab predict`` command."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import unetlab
from unetlab.cli import main
from unetlab.inference import predict_file, predict_tiled
from unetlab.inference.palette import default_palette, overlay


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return unetlab.create_model("unet", in_channels=1, num_classes=3, channels=(4, 8)).eval()


def _one_line_error(capsys, command="predict"):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"unetlab {command}: error:")
    return err[0]


def test_streamed_tiff_equals_in_memory_prediction(tmp_path, tiny):
    rng = np.random.default_rng(0)
    image = (rng.random((600, 904)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "big.tif", image)
    res = predict_file(tiny, tmp_path / "big.tif", tmp_path / "out", tile_size=128,
                       overlap=0.25, probabilities=True)
    labels = tifffile.imread(res["labels"])
    probs = tifffile.imread(res["probabilities"])
    expected = predict_tiled(tiny, image[None] / 255.0, tile_size=128, overlap=0.25,
                             output="probabilities")
    assert labels.shape == (600, 904) and labels.dtype == np.uint8
    assert probs.shape == (3, 600, 904)
    assert np.allclose(probs, expected.numpy(), atol=1e-5)
    assert (labels == expected.argmax(0).numpy()).all()
    assert res["overlay"].is_file()


def test_tiff_stack_predicted_slice_by_slice(tmp_path, tiny):
    stack = (np.random.default_rng(1).random((3, 40, 52)) * 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    res = predict_file(tiny, tmp_path / "stack.tif", tmp_path, tile_size=32)
    labels = tifffile.imread(res["labels"])
    second = predict_tiled(tiny, stack[1][None] / 255.0, tile_size=32).argmax(0).numpy()
    assert labels.shape == (3, 40, 52) and (labels[1] == second).all()


def test_five_band_tiff_written_as_plain_array_is_predicted(tmp_path):
    """``tifffile.imwrite(path, (H, W, 5))`` stores axes QYX (no "samples" axis): predict
    reads it as 5 bands, channels last, as training does (it refused it before)."""
    torch.manual_seed(0)
    five = unetlab.create_model("unet", in_channels=5, num_classes=2, channels=(4, 8)).eval()
    bands = (np.random.default_rng(2).random((40, 52, 5)) * 4000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "five.tif", bands)
    res = predict_file(five, tmp_path / "five.tif", tmp_path / "out", tile_size=32)
    labels = tifffile.imread(res["labels"])
    expected = predict_tiled(five, np.moveaxis(bands, -1, 0) / 65535.0, tile_size=32)
    assert labels.shape == (40, 52)
    assert (labels == expected.argmax(0).numpy()).mean() > 0.99


def test_an_array_with_bands_first_and_last_is_an_ambiguity_error(tmp_path):
    from unetlab.errors import UnetlabError
    from unetlab.inference.predictor import _layout

    with pytest.raises(UnetlabError) as exc:
        _layout((6, 40, 6), 6, 2, tmp_path / "x.tif")
    assert "first or last" in str(exc.value)
    assert _layout((40, 52, 6), 6, 2, tmp_path / "x.tif") == ((), 2)
    assert _layout((6, 40, 52), 6, 2, tmp_path / "x.tif") == ((), 0)


def test_overlay_and_default_palette():
    pal = default_palette(5)
    assert pal.shape == (5, 3) and (pal[0] == 0).all() and len({tuple(c) for c in pal}) == 5
    img = np.full((2, 2), 100, np.uint8)
    img[0, 0] = 200
    out = overlay(img, np.array([[0, 1], [1, 0]]), np.array([[0, 0, 0], [255, 0, 0]]),
                  alpha=0.5)
    # class 0 keeps the (rescaled) image; class 1 mixes half red
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [0, 0, 0]
    assert out[0, 1].tolist() == [128, 0, 0]


def test_predict_command_png(tmp_path, tiny, capsys):
    from unetlab.card import build_card

    card = build_card(tiny, palette=[[0, 0, 0], [255, 0, 0], [0, 0, 255]])
    ckpt = unetlab.save_model(tiny, tmp_path / "m.safetensors", card=card)
    Image.fromarray((np.random.default_rng(2).random((50, 70)) * 255).astype(np.uint8)).save(
        tmp_path / "a.png")
    rc = main(["predict", str(ckpt), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
               "--tile-size", "32", "--tta", "--no-progress"])
    assert rc == 0
    # bf16 gives (nearly) the same label map
    rc = main(["predict", str(ckpt), str(tmp_path / "a.png"), "--out", str(tmp_path / "b"),
               "--tile-size", "32", "--tta", "--no-progress", "--precision", "bf16"])
    assert rc == 0
    same = (np.asarray(Image.open(tmp_path / "b" / "a_labels.png")) ==
            np.asarray(Image.open(tmp_path / "o" / "a_labels.png"))).mean()
    assert same > 0.98
    lab = Image.open(tmp_path / "o" / "a_labels.png")
    assert lab.mode == "P" and lab.size == (70, 50)
    assert lab.getpalette()[:9] == [0, 0, 0, 255, 0, 0, 0, 0, 255]
    assert (tmp_path / "o" / "a_overlay.png").is_file()


def test_predict_errors_are_one_line(tmp_path, tiny, capsys):
    ckpt = unetlab.save_model(tiny, tmp_path / "m.safetensors")
    out = str(tmp_path / "o")
    assert main(["predict", str(tmp_path / "missing.safetensors"), "x.png", "--out", out]) == 2
    assert "missing.safetensors" in _one_line_error(capsys)
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    assert main(["predict", str(ckpt), str(tmp_path / "bad.png"), "--out", out]) == 2
    assert "bad.png" in _one_line_error(capsys)
    out = str(tmp_path / "o2")
    rgb = unetlab.save_model(unetlab.create_model("unet", in_channels=3, num_classes=2,
                                                  channels=(4, 8)), tmp_path / "rgb.safetensors")
    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "gray.png")
    assert main(["predict", str(rgb), str(tmp_path / "gray.png"), "--out", out]) == 2
    assert "expects 3" in _one_line_error(capsys)
    out = str(tmp_path / "o3")
    for extra, needle in ((["--backend", "eager", "--precision", "bf16"], "--backend torch"),
                          (["--precision", "fp16", "--device", "cpu"], "CUDA")):
        assert main(["predict", str(ckpt), str(tmp_path / "gray.png"), "--out", out,
                     *extra]) == 2
        assert needle in _one_line_error(capsys)
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 20)
    assert main(["predict", str(tmp_path / "corrupt.safetensors"), str(tmp_path / "gray.png"),
                 "--out", out]) == 2
    _one_line_error(capsys)


@pytest.mark.data
def test_predict_real_isbi_slice(tmp_path, tiny, isbi_root, capsys):
    image = isbi_root / "test" / "image" / "00.png"
    ckpt = unetlab.save_model(tiny, tmp_path / "m.safetensors")
    assert main(["predict", str(ckpt), str(image), "--out", str(tmp_path),
                 "--tile-size", "128", "--no-progress"]) == 0
    labels = np.asarray(Image.open(tmp_path / "00_labels.png"))
    assert labels.shape == np.asarray(Image.open(image)).shape[:2]
    assert labels.max() < 3
