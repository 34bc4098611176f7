"""Inputs that must not exhaust the machine: a mistyped tile size, a volume whose header
voxel size asks for a huge resampled grid, and predict's options checked before any
output folder is made."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import unetlab
from unetlab.cli import main
from unetlab.data.volumes import resampled_shape
from unetlab.errors import UnetlabError
from unetlab.inference.tiling import cap_tiles, plan_tiles

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiles_larger_than_the_image_needs_are_capped():
    # same padding: never beyond max(256, the longest side rounded to the pooling factor)
    assert cap_tiles((10**9, 10**9), (130, 117), align=8) == (256, 256)
    assert cap_tiles((512,), (1000,), align=8) == (512,)
    assert cap_tiles((4000, 4000), (600, 1000), align=16) == (1008, 1008)  # square kept
    assert cap_tiles((96,), (40,), align=8) == (96,)        # under the floor: as asked
    # valid padding: the smallest input whose output covers the longest side
    from unetlab.models.unet import valid_input_size, valid_output_size

    cap = cap_tiles((10**6 + 4,), (300,), padding="valid", levels=3)[0]
    assert cap == valid_input_size(300, 3) and valid_output_size(cap, 3) >= 300
    model = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8, 16))
    plans = plan_tiles((130, 117), 10**9, model=model)
    assert [p.in_tile for p in plans] == [256, 256]


def _image_and_model(tmp_path):
    torch.manual_seed(0)
    model = unetlab.create_model("unet", in_channels=1, num_classes=2,
                                 channels=(4, 8, 16)).eval()
    unetlab.save_model(model, tmp_path / "m.safetensors")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (130, 117), dtype=np.uint8)).save(tmp_path / "a.png")
    return tmp_path / "m.safetensors", tmp_path / "a.png"


def test_a_mistyped_tile_size_gives_the_same_labels_as_a_sane_one(tmp_path):
    checkpoint, image = _image_and_model(tmp_path)
    for name, tile in (("huge", "1000000000"), ("sane", "256")):
        assert main(["predict", str(checkpoint), str(image), "--out", str(tmp_path / name),
                     "--tile-size", tile, "--backend", "torch", "--precision", "fp32",
                     "--no-progress"]) == 0
    huge = np.asarray(Image.open(tmp_path / "huge" / "a_labels.png"))
    sane = np.asarray(Image.open(tmp_path / "sane" / "a_labels.png"))
    assert huge.shape == (130, 117) and np.array_equal(huge, sane)


@pytest.mark.parametrize("option, value, message", [
    ("--overlap", "1.5", "--overlap 1.5: must be at least 0 and below 1"),
    ("--overlap", "-0.1", "--overlap -0.1: must be at least 0"),
    ("--overlap", "nan", "--overlap nan"),
    ("--batch-size", "0", "--batch-size 0: must be at least 1"),
    ("--tile-size", "-4", "--tile-size -4: must be positive"),
])
def test_bad_options_are_one_line_before_any_output(tmp_path, capsys, option, value,
                                                     message):
    checkpoint, image = _image_and_model(tmp_path)
    assert main(["predict", str(checkpoint), str(image), "--out", str(tmp_path / "out"),
                 option, value, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_resampled_volume_grid_meets_the_pixel_limit():
    """20 x 20 x 10 voxels of 100 mm, for a model trained at 1.6 x 1.6 x 2.5 mm, is a grid
    of 625 million voxels: refused before anything is allocated."""
    args = ((20, 20, 10), (100.0, 100.0, 100.0), (1.6, 1.6, 2.5))
    assert resampled_shape(*args) == (1250, 1250, 400)      # no path: the plain arithmetic
    with pytest.raises(UnetlabError, match="resampled from 20x20x10 .*over the limit"):
        resampled_shape(*args, "zoom.nii.gz")
    assert resampled_shape((20, 20, 10), (1.0, 1.0, 1.0), (1.6, 1.6, 2.5), "ok.nii.gz") == \
        (12, 12, 4)
