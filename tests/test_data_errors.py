"""Bad input: one-line errors naming the file, through the library and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from unetlab.cli import main
from unetlab.data import build_dataset, build_transforms
from unetlab.errors import UnetlabError
from unetlab.imageio import write_image


def _pair(root, name="a", shape=(4, 4), mask=None):
    write_image(root / "images" / f"{name}.png", np.zeros(shape, np.uint8))
    write_image(root / "masks" / f"{name}.png",
                np.zeros(shape, np.uint8) if mask is None else mask)


def _one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_truncated_image_names_file(tmp_path):
    _pair(tmp_path)
    path = tmp_path / "images" / "a.png"
    path.write_bytes(path.read_bytes()[:30])
    ds = build_dataset("folder", tmp_path, num_classes=1, image_mode="L")
    with pytest.raises(UnetlabError) as exc:
        ds[0]
    assert str(path) in _one_line(exc)


def test_unreadable_image_cli(tmp_path, capsys):
    _pair(tmp_path)
    (tmp_path / "masks" / "a.png").write_bytes(b"not an image at all")
    code = main(["stats", "--dataset", "folder", "--data", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("unetlab stats: error:") and "a.png" in err


def test_size_mismatch(tmp_path):
    write_image(tmp_path / "images" / "a.png", np.zeros((4, 5), np.uint8))
    write_image(tmp_path / "masks" / "a.png", np.zeros((4, 4), np.uint8))
    ds = build_dataset("folder", tmp_path, num_classes=1)
    with pytest.raises(UnetlabError) as exc:
        ds[0]
    text = _one_line(exc)
    assert "a.png" in text and "4x5" in text and "4x4" in text


def test_values_outside_mapping_are_listed(tmp_path):
    _pair(tmp_path, mask=np.array([[0, 255, 7, 9]] * 4, np.uint8))
    ds = build_dataset("folder", tmp_path, mapping={0: 0, 255: 1})
    with pytest.raises(UnetlabError) as exc:
        ds[0]
    text = _one_line(exc)
    assert "masks/a.png" in text and "7, 9" in text


def test_isbi_label_with_grey_values(tmp_path):
    write_image(tmp_path / "train" / "image" / "00.png", np.zeros((4, 4), np.uint8))
    write_image(tmp_path / "train" / "label" / "00.png", np.full((4, 4), 128, np.uint8))
    ds = build_dataset("isbi2012", tmp_path, "all")
    with pytest.raises(UnetlabError, match=r"label/00.png: mask values outside .*: 128"):
        ds[0]


def test_missing_and_empty_directories(tmp_path, capsys):
    with pytest.raises(UnetlabError, match="data directory not found"):
        build_dataset("folder", tmp_path / "nope")
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(UnetlabError) as exc:
        build_dataset("folder", tmp_path)
    assert str(tmp_path / "images") in _one_line(exc) and "no images" in str(exc.value)
    code = main(["stats", "--dataset", "camvid", "--data", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "train: images directory not found" in err


def test_images_without_masks_lists_first_few(tmp_path):
    for i in range(8):
        write_image(tmp_path / "images" / f"im{i}.png", np.zeros((2, 2), np.uint8))
    write_image(tmp_path / "masks" / "im0.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(UnetlabError) as exc:
        build_dataset("folder", tmp_path, num_classes=1)
    text = _one_line(exc)
    assert text.startswith("7 image(s) without a mask")
    assert "im1.png, im2.png, im3.png, im4.png, im5.png (+2 more)" in text


def test_bad_names_and_options():
    with pytest.raises(UnetlabError, match="did you mean 'shapes'"):
        build_dataset("shape")
    with pytest.raises(UnetlabError, match="unknown option.*num_imgs.*valid:.*num_images"):
        build_dataset("membranes", num_imgs=3)
    with pytest.raises(UnetlabError,
                       match="choose from none, flips, light, paper, strong, upright"):
        build_transforms("heavy")
    with pytest.raises(UnetlabError, match="unknown transform option.*rotation"):
        build_transforms("light", rotation=10)
