"""Datasets against careless input (issue 12): stray mask values, no val split, a RGBA
image among grey ones, NaN pixels, names that leave the output folder."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from torch.utils.data import Subset

from unetlab.config import load_config
from unetlab.data import build_dataset
from unetlab.data.splits import DEFAULT_VAL_FRACTION, holdout_indices, holdout_items
from unetlab.errors import UnetlabError
from unetlab.imageio import write_image
from unetlab.training.builder import build_datasets


def _pair(root, name, mask, image=None):
    write_image(root / "images" / f"{name}.png",
                np.zeros(mask.shape, np.uint8) if image is None else image)
    write_image(root / "masks" / f"{name}.png", mask)


def _one_line(exc) -> str:
    assert "\n" not in str(exc.value)
    return str(exc.value)


def test_one_stray_mask_pixel_is_listed_with_its_file(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[:4] = 1
    _pair(tmp_path, "a", mask)
    stray = mask.copy()
    stray[7, 7] = 7
    _pair(tmp_path, "b", stray)
    with pytest.raises(UnetlabError) as exc:
        build_dataset("folder", tmp_path)
    text = _one_line(exc)
    assert "7 (1 pixel(s) in " in text and "masks/b.png" in text and "[0, 1]" in text
    assert "masks/a.png" not in text
    # declared classes: the value is taken as a class id
    assert build_dataset("folder", tmp_path, num_classes=8).num_classes == 8


def test_masks_of_0_65535_mixed_with_0_255_are_an_error(tmp_path):
    _pair(tmp_path, "a", np.array([[0, 255], [255, 0]], np.uint8))
    _pair(tmp_path, "b", np.array([[0, 255], [0, 0]], np.uint8))
    _pair(tmp_path, "c", np.array([[0, 65535], [0, 0]], np.uint16))
    with pytest.raises(UnetlabError) as exc:
        build_dataset("folder", tmp_path)
    text = _one_line(exc)
    assert "65535" in text and "masks/c.png" in text and "[0, 255]" in text


def test_a_stray_colour_in_colour_masks_is_listed_with_its_file(tmp_path):
    mask = np.zeros((100, 120, 3), np.uint8)
    mask[:50] = (200, 0, 0)
    mask[50:, :60] = (0, 0, 200)
    _pair(tmp_path, "a", mask)
    assert build_dataset("folder", tmp_path).num_classes == 3  # black, red, blue
    stray = mask.copy()
    stray[99, 119] = (100, 0, 100)  # one anti-aliased pixel
    _pair(tmp_path, "b", stray)
    with pytest.raises(UnetlabError) as exc:
        build_dataset("folder", tmp_path)
    text = _one_line(exc)
    assert "[100, 0, 100] (1 pixel(s) in " in text and "masks/b.png" in text
    assert "masks/a.png" not in text
    # a declared mapping takes the masks as they are
    mapping = {"#000000": 0, "#c80000": 1, "#0000c8": 2, "#640064": 0}
    assert build_dataset("folder", tmp_path, mapping=mapping).num_classes == 3


@pytest.mark.parametrize("values", [(0, 255), (0, 65535), (0, 1, 2, 3), (0,)])
def test_consistent_undeclared_masks_still_work(tmp_path, values):
    dtype = np.uint16 if max(values) > 255 else np.uint8
    mask = np.array(values * (16 // len(values)), dtype).reshape(4, 4)
    _pair(tmp_path, "a", mask)
    ds = build_dataset("folder", tmp_path)
    assert ds.num_classes == len(values)
    assert sorted(np.unique(ds[0]["mask"].numpy()).tolist()) == list(range(len(values)))


def test_rgba_image_in_a_grey_folder_names_the_file(tmp_path):
    mask = np.zeros((4, 4), np.uint8)
    _pair(tmp_path, "a", mask)
    _pair(tmp_path, "b", mask, image=np.zeros((4, 4, 4), np.uint8))
    ds = build_dataset("folder", tmp_path)
    assert ds.in_channels == 1 and ds[0]["image"].shape == (1, 4, 4)
    with pytest.raises(UnetlabError) as exc:
        ds[1]
    text = _one_line(exc)
    assert "images/b.png" in text and "4 channel(s)" in text and "image_mode" in text
    assert build_dataset("folder", tmp_path, image_mode="L")[1]["image"].shape == (1, 4, 4)


def test_nan_pixels_in_training_data_name_the_file(tmp_path):
    image = np.ones((4, 4), np.float32)
    for name in "ab":
        write_image(tmp_path / "images" / f"{name}.tif", image)
        write_image(tmp_path / "masks" / f"{name}.png", np.zeros((4, 4), np.uint8))
        image = image.copy()
        image[1, 1] = np.nan
    ds = build_dataset("folder", tmp_path, num_classes=1)
    assert ds[0]["image"].isfinite().all()
    with pytest.raises(UnetlabError) as exc:
        ds[1]
    assert "images/b.tif" in _one_line(exc) and "NaN" in str(exc.value)


def _folder_config(root, out, extra=()):
    return load_config(None, ["data.dataset=folder", f"data.root={root}",
                              f"train.out_dir={out}", *extra])


def test_folder_without_val_split_holds_out_a_stated_fraction(tmp_path, caplog):
    for i in range(10):
        _pair(tmp_path / "data", f"{i:02d}", np.full((4, 4), i % 2, np.uint8))
    with caplog.at_level(logging.WARNING):
        data = build_datasets(_folder_config(tmp_path / "data", tmp_path / "run"))
    assert isinstance(data.val, Subset) and isinstance(data.train, Subset)
    assert list(data.val.indices) == [8, 9] and list(data.train.indices) == list(range(8))
    assert DEFAULT_VAL_FRACTION == 0.2
    assert any("holding out the last 2 of 10" in r.getMessage() for r in caplog.records)
    # an explicit val/ folder is used as it is
    for i in range(2):
        _pair(tmp_path / "data" / "val", f"v{i}", np.zeros((4, 4), np.uint8))
    for i in range(3):
        _pair(tmp_path / "data" / "train", f"t{i}", np.eye(4, dtype=np.uint8))
    data = build_datasets(_folder_config(tmp_path / "data", tmp_path / "run"))
    assert len(data.val) == 2 and data.val.names == ["v0", "v1"] and len(data.train) == 3


def test_single_image_says_validation_is_on_the_training_image(tmp_path, caplog):
    _pair(tmp_path / "data", "a", np.zeros((4, 4), np.uint8))
    with caplog.at_level(logging.WARNING):
        data = build_datasets(_folder_config(tmp_path / "data", tmp_path / "run"))
    assert len(data.val) == 1
    assert any("validation runs on the training images" in r.getMessage()
               for r in caplog.records)


def test_holdout_functions():
    assert holdout_indices(10, 0.25) == (list(range(8)), [8, 9])
    assert holdout_items(5, [0, -1]) == ([1, 2, 3], [0, 4])
    with pytest.raises(UnetlabError, match="out of range"):
        holdout_items(5, [5])
    with pytest.raises(UnetlabError, match="item indices"):
        holdout_items(5, [[1]])
    with pytest.raises(UnetlabError, match="holds out all 2"):
        holdout_items(2, [0, 1])


@pytest.mark.parametrize("label", ["../../../x", "a/b", "..", "/tmp/x", "a\\b"])
def test_compare_labels_that_leave_the_output_folder_are_refused(label):
    from unetlab.compare.spec import spec_from_dict

    with pytest.raises(UnetlabError, match="cannot name a folder inside --out"):
        spec_from_dict({"models": [{"label": label, "name": "unet"}]})
    spec = spec_from_dict({"models": [{"label": "unet-16.v2", "name": "unet"}]})
    assert spec.suites["models"][0].label == "unet-16.v2"


def test_class_ids_with_255_suggest_ignoring_it(tmp_path):
    """0, 1, 2 and 255: the hint names ignore_values, not only a mapping that would make
    no-data a class."""
    mask = np.array([[0, 1, 2, 255]] * 4, np.uint8)
    _pair(tmp_path, "a", mask)
    with pytest.raises(UnetlabError) as exc:
        build_dataset("folder", tmp_path)
    assert "ignore_values=[255]" in _one_line(exc)
    assert build_dataset("folder", tmp_path, ignore_values=[255]).num_classes == 3


def test_a_mask_with_swapped_sides_mentions_exif_orientation(tmp_path):
    _pair(tmp_path, "a", np.zeros((6, 4), np.uint8), image=np.zeros((4, 6), np.uint8))
    with pytest.raises(UnetlabError) as exc:
        build_dataset("folder", tmp_path)[0]
    assert "EXIF orientation" in _one_line(exc)
