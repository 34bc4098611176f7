"""Multi-channel TIFF layouts in predict: band-first images keep their overlay, and
stacks of multi-channel pages (pages first, bands last or second) are predicted page by
page exactly as each page alone."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

import unetlab
from unetlab.inference import predict_file

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return unetlab.create_model("unet", in_channels=3, num_classes=4,
                                channels=(4, 8, 16)).eval()


def test_a_band_first_tiff_keeps_its_labels_and_overlay(model, tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (3, 40, 56), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "bf.tif", image, photometric="minisblack")
    tifffile.imwrite(tmp_path / "bl.tif", np.moveaxis(image, 0, -1), photometric="rgb")
    first = predict_file(model, tmp_path / "bf.tif", tmp_path / "out", tile_size=32)
    last = predict_file(model, tmp_path / "bl.tif", tmp_path / "out", tile_size=32)
    assert first["overlay"] is not None and first["overlay"].is_file()
    assert np.array_equal(tifffile.imread(first["labels"]), tifffile.imread(last["labels"]))


@pytest.mark.parametrize("bands_last", [True, False])
def test_a_stack_of_multi_channel_pages_is_predicted_page_by_page(model, tmp_path,
                                                                  bands_last):
    rng = np.random.default_rng(1)
    pages = rng.integers(0, 255, (3, 40, 56, 3), dtype=np.uint8)
    stack = pages if bands_last else np.moveaxis(pages, -1, 1)     # (Z, H, W, S) / (Z, S, H, W)
    tifffile.imwrite(tmp_path / "stack.tif", stack,
                     photometric="rgb" if bands_last else "minisblack",
                     metadata={"axes": "ZYXS" if bands_last else "ZSYX"})
    res = predict_file(model, tmp_path / "stack.tif", tmp_path / "out", tile_size=32)
    labels = tifffile.imread(res["labels"])
    assert labels.shape == (3, 40, 56)
    for z in range(3):
        tifffile.imwrite(tmp_path / f"p{z}.tif", pages[z], photometric="rgb")
        one = predict_file(model, tmp_path / f"p{z}.tif", tmp_path / "one", tile_size=32)
        assert np.array_equal(labels[z], tifffile.imread(one["labels"]))


def test_a_planar_rgb_tiff_keeps_its_overlay(model, tmp_path):
    """Band-sequential (SYX) TIFFs are read bands-last already: not moved twice."""
    image = np.random.default_rng(2).integers(0, 255, (3, 40, 56), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "planar.tif", image, photometric="rgb",
                     planarconfig="separate")
    res = predict_file(model, tmp_path / "planar.tif", tmp_path / "out", tile_size=32)
    assert res["overlay"] is not None and res["overlay"].is_file()
