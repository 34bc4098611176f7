"""The ``geotiff`` dataset, the synthetic scene and band-first / band-last TIFF layouts."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from unetlab.data import build_dataset
from unetlab.errors import UnetlabError

rasterio = pytest.importorskip("rasterio")

from unetlab.data.synthetic_geo import (  # noqa: E402
    GEO_CLASSES,
    GEO_PALETTE,
    make_geo_scene,
    write_geo_scene,
    write_geo_tiles,
)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return write_geo_scene(tmp_path_factory.mktemp("geo"), size=128, seed=3)


def _scene_ds(scene, split="train", **options):
    image, labels = scene
    return build_dataset("geotiff", image.parent, split=split, scene=image.name,
                         scene_labels=labels.name, window=64, **options)


def test_synthetic_scene_is_deterministic_with_every_class_and_a_nodata_corner():
    a, la = make_geo_scene(96, seed=1)
    b, lb = make_geo_scene(96, seed=1)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert a.shape == (4, 96, 96) and a.dtype == np.uint16 and la.dtype == np.uint8
    nodata = la == 255
    assert nodata[0, 0] and not nodata[-1, -1]
    assert (a[:, nodata] == 0).all() and (a[:, ~nodata] > 0).all()
    assert set(np.unique(la[~nodata])) <= set(range(len(GEO_CLASSES)))
    big, lbig = make_geo_scene(256, seed=0)
    assert set(np.unique(lbig)) == {0, 1, 2, 3, 4, 255}
    # vegetation is bright in the near infrared and dark in red; water dark in both
    nir, red = big[3].astype(float), big[0].astype(float)
    assert nir[lbig == 4].mean() > 3 * red[lbig == 4].mean()
    assert nir[lbig == 3].mean() < 0.2 * nir[lbig == 4].mean()


def test_written_scene_is_georeferenced_with_band_names_and_a_colour_table(scene):
    image, labels = scene
    with rasterio.open(image) as src:
        assert src.crs.to_epsg() == 32633 and src.nodata == 0
        assert src.descriptions == ("red", "green", "blue", "nir")
        assert src.transform.a == 1.0 and src.dtypes[0] == "uint16"
    with rasterio.open(labels) as lab:
        assert lab.nodata == 255 and lab.colormap(1)[2][:3] == tuple(GEO_PALETTE[2])
    with pytest.raises(UnetlabError, match="exists"):
        write_geo_scene(image.parent, size=128, seed=3)


def test_scene_split_is_spatial_and_statistics_come_from_the_training_rows(scene):
    train = _scene_ds(scene, "train")
    val = _scene_ds(scene, "val")
    assert train.in_channels == 4 and train.num_classes == 5
    train_rows = {r for s in train.samples for r in range(s[3].start, s[3].stop)}
    val_rows = {r for s in val.samples for r in range(s[3].start, s[3].stop)}
    assert not train_rows & val_rows and max(train_rows) < min(val_rows)
    assert len(val_rows) == round(128 * 0.2)
    # per-band mean / std over valid training pixels, in units of the dtype's maximum
    with rasterio.open(scene[0]) as src:
        data = src.read()[:, : min(val_rows)].astype(np.float64) / 65535
    valid = (data > 0).all(0)
    mean, std = data[:, valid].mean(1), data[:, valid].std(1)
    for ds in (train, val):  # validation uses the training statistics
        np.testing.assert_allclose(ds.normalize["mean"], mean, rtol=1e-5)
        np.testing.assert_allclose(ds.normalize["std"], std, rtol=1e-4)
    geo = train.card_extensions["geo"]
    assert geo["bands"] == [1, 2, 3, 4] and geo["band_names"] == ["red", "green", "blue", "nir"]
    assert geo["crs"] == "EPSG:32633" and geo["dtype"] == "uint16"
    assert train.channel_names == ["red", "green", "blue", "nir"]
    assert train.palette.tolist() == GEO_PALETTE.tolist()  # from the colour table


def test_nodata_pixels_are_ignored_and_images_are_normalised(scene):
    ds = _scene_ds(scene, "train", cache=False)
    item = ds[0]  # the top-left window holds the no-data corner
    mask, image = item["mask"].numpy(), item["image"].numpy()
    assert image.shape == (4, 64, 64) and mask.shape == (64, 64)
    with rasterio.open(scene[1]) as lab:
        raw = lab.read(1)[:64, :64]
    assert ((mask == 255) == (raw == 255)).all() and (mask == 255).any()
    assert np.abs(image[:, mask == 255]).max() < 1e-5  # filled with the band means
    everything = np.concatenate([ds[i]["image"].numpy().reshape(4, -1) for i in range(len(ds))],
                                axis=1)
    assert np.abs(everything.mean(1)).max() < 0.1  # standardised per band
    assert np.abs(everything.std(1) - 1).max() < 0.1


def test_folder_of_tiles_holds_out_the_last_files_and_selects_bands_by_name(tmp_path):
    write_geo_tiles(tmp_path, count=5, size=48, seed=2)
    train = build_dataset("geotiff", tmp_path, split="train", bands=["nir", "red"],
                          num_classes=5)
    val = build_dataset("geotiff", tmp_path, split="val", bands=["nir", "red"], num_classes=5)
    assert train.names == ["tile_00", "tile_01", "tile_02", "tile_03"]
    assert val.names == ["tile_04"]
    assert train.in_channels == 2 and train.channel_names == ["nir", "red"]
    assert train.card_extensions["geo"]["bands"] == [4, 1]
    with rasterio.open(tmp_path / "images" / "tile_04.tif") as src:
        nir = src.read(4).astype(np.float32) / 65535
    image = val.load(0)[0]
    valid = nir > 0
    np.testing.assert_allclose(image[..., 0][valid], nir[valid], rtol=1e-6)


def test_bad_inputs_are_one_line_errors(tmp_path, scene):
    with pytest.raises(UnetlabError, match="band 7 does not exist"):
        _scene_ds(scene, bands=[7])
    with pytest.raises(UnetlabError, match="no band named 'swir'"):
        _scene_ds(scene, bands=["swir"])
    with pytest.raises(UnetlabError, match=r"outside classes 0\.\.2"):
        _scene_ds(scene, num_classes=3)
    with pytest.raises(UnetlabError, match="labels directory not found|label directory"):
        (tmp_path / "images").mkdir()
        build_dataset("geotiff", tmp_path)
    with pytest.raises(UnetlabError, match="give both scene and scene_labels"):
        build_dataset("geotiff", scene[0].parent, scene="scene.tif")


def test_missing_rasterio_names_the_extra(monkeypatch, scene):
    monkeypatch.setitem(sys.modules, "rasterio", None)
    with pytest.raises(UnetlabError, match=r'pip install "unetlab\[geo\]"') as err:
        _scene_ds(scene)
    assert "\n" not in str(err.value)


def test_band_first_and_band_last_tiffs_read_the_same(tmp_path):
    import tifffile

    from unetlab.imageio import read_image, tiff_axes

    bands = np.random.default_rng(0).integers(1, 60000, (4, 24, 40)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "first.tif", bands)                     # (4, H, W)
    tifffile.imwrite(tmp_path / "last.tif", bands.transpose(1, 2, 0))   # (H, W, 4)
    assert tiff_axes(tmp_path / "first.tif") == "SYX"
    assert tiff_axes(tmp_path / "last.tif") == "YXS"
    for name in ("first", "last"):
        assert np.array_equal(read_image(tmp_path / f"{name}.tif"), bands.transpose(1, 2, 0))
        with rasterio.open(tmp_path / f"{name}.tif") as src:
            assert np.array_equal(src.read(), bands)


def test_remote_sensing_figure_trains_briefly(tmp_path):
    from PIL import Image

    from unetlab.figures._plot import DPI
    from unetlab.figures.geo import remote_sensing, train_tiny_geo_unet

    image, labels, prediction, miou, cut = train_tiny_geo_unet(steps=2, size=64)
    assert prediction.shape == labels.shape and cut == 51
    assert ((prediction == 255) == (labels == 255)).all() and 0.0 <= miou <= 1.0
    path = remote_sensing(tmp_path / "r.png", steps=2, size=64)
    with Image.open(path) as png:
        assert png.size == (8 * DPI, round(2.6 * DPI))
