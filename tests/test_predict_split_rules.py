"""Under torchrun, one huge image may be split in row bands across ranks, which write one
plain TIFF: a raster or a volume must go whole to one rank so that its output keeps the
CRS or the affine."""

import numpy as np
import tifffile

from unetlab.commands.predict import _can_split


def test_plain_images_may_be_split_but_rasters_and_volumes_may_not(tmp_path):
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((32, 32), np.uint8))
    assert _can_split(str(plain), None)
    assert _can_split(str(tmp_path / "a.png"), None)
    assert not _can_split(str(tmp_path / "case.nii.gz"), None)
    # any TIFF given to a model trained on rasters goes through rasterio
    assert not _can_split(str(plain), {"bands": [1]})


def test_a_georeferenced_tiff_is_not_split(tmp_path):
    import pytest

    pytest.importorskip("rasterio")
    from unetlab.data.synthetic_geo import write_geo_scene

    write_geo_scene(tmp_path, size=64, seed=0)
    scene = next(p for p in tmp_path.glob("*.tif") if "label" not in p.name)
    assert not _can_split(str(scene), None)
