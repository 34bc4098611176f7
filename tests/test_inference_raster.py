"""Raster prediction: georeferenced label GeoTIFFs, no-data, windowed writes, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import unetlab
from unetlab.errors import UnetlabError
from unetlab.inference import predict_file, predict_tiled
from unetlab.inference.predictor import _layout
from unetlab.preprocess import Preprocessing

rasterio = pytest.importorskip("rasterio")

from unetlab.data.synthetic_geo import geo_transform, make_geo_scene, write_scene_pair  # noqa: E402

NORM = {"mean": [0.02, 0.02, 0.015, 0.045], "std": [0.01, 0.005, 0.005, 0.015]}
PREP = Preprocessing(channels=4, normalize=NORM)
GEO = {"bands": [1, 2, 3, 4], "dtype": "uint16"}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return unetlab.create_model("unet", in_channels=4, num_classes=5,
                                channels=(4, 8, 16)).eval()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 300 x 280 scene (not a multiple of the 256 output blocks) with a no-data corner,
    an odd origin and 0.5 m pixels."""
    image, labels = make_geo_scene(300, seed=5)
    image, labels = image[:, :, :280], labels[:, :280]
    folder = tmp_path_factory.mktemp("raster")
    return write_scene_pair(image, labels, folder / "scene.tif", folder / "scene_labels.tif",
                            transform=geo_transform((431_000.5, 4_300_123.0), 0.5),
                            crs="EPSG:32610")


@pytest.fixture(scope="module")
def small(geo_scene_64):
    """A 64 x 64 scene for the tests that only need a raster."""
    return geo_scene_64


@pytest.fixture(scope="module")
def predicted(tmp_path_factory, model, scene):
    return predict_file(model, scene[0], tmp_path_factory.mktemp("out"), tile_size=64,
                        preprocessing=PREP, geo=GEO, probabilities=True,
                        class_names=["a", "b", "c", "d", "e"])


def test_labels_keep_crs_transform_size_and_nodata(predicted, scene):
    res = predicted
    assert res["labels"].name == "scene_labels.tif" and res["num_classes"] == 5
    with rasterio.open(scene[0]) as src, rasterio.open(res["labels"]) as out:
        assert out.crs == src.crs and out.transform == src.transform
        assert (out.width, out.height, out.count) == (src.width, src.height, 1)
        assert out.dtypes[0] == "uint8" and out.nodata == 255
        assert out.profile["tiled"] and out.compression.name.lower() == "deflate"
        assert out.block_shapes[0] == (256, 256)
        assert out.colormap(1)[1][:3] == (230, 25, 75)
        assert out.tags()["CLASS_4"] == "e"
        labels = out.read(1)
        nodata = src.read_masks(1) == 0
    assert nodata.any() and (labels[nodata] == 255).all()
    assert (labels[~nodata] < 5).all()
    with rasterio.open(res["probabilities"]) as probs:
        p = probs.read()
        assert probs.crs == src.crs and probs.transform == src.transform
        assert probs.descriptions == ("a", "b", "c", "d", "e") and p.dtype == np.float32
    assert np.isnan(p[:, nodata]).all()
    np.testing.assert_allclose(p[:, ~nodata].sum(0), 1.0, atol=1e-5)
    assert np.array_equal(p[:, ~nodata].argmax(0), labels[~nodata])


def test_streamed_raster_equals_whole_image_prediction(predicted, model, scene):
    res = predicted
    with rasterio.open(scene[0]) as src:
        data = src.read().astype(np.float32)
        valid = src.dataset_mask() > 0
    fill = np.asarray(NORM["mean"], np.float32) * 65535
    data[:, ~valid] = fill[:, None]
    prep = PREP.band_function(np.uint16)
    expected = predict_tiled(model, prep(data), tile_size=64, output="probabilities")
    expected = expected.argmax(0).numpy()
    expected[~valid] = 255
    with rasterio.open(res["labels"]) as out:
        assert np.array_equal(out.read(1), expected)


def test_outputs_are_never_overwritten_without_asking(tmp_path, model, small):
    predict_file(model, small[0], tmp_path, tile_size=64, geo=GEO)
    with pytest.raises(UnetlabError, match="exists; pass --overwrite"):
        predict_file(model, small[0], tmp_path, tile_size=64, geo=GEO)
    predict_file(model, small[0], tmp_path, tile_size=64, geo=GEO, overwrite=True)
    # the scene's folder holds its ground truth, scene_labels.tif: never replaced silently
    with pytest.raises(UnetlabError, match="scene_labels.tif exists"):
        predict_file(model, small[0], small[0].parent, tile_size=64, geo=GEO)


def test_band_count_mismatch_is_a_one_line_error(tmp_path, small):
    three = unetlab.create_model("unet", in_channels=3, num_classes=2, channels=(4, 8)).eval()
    with pytest.raises(UnetlabError, match=r"4 band\(s\) selected .*expects 3"):
        predict_file(three, small[0], tmp_path, tile_size=64)
    res = predict_file(three, small[0], tmp_path, tile_size=64, geo={"bands": ["nir", 1, 2]})
    with rasterio.open(res["labels"]) as out:
        assert out.count == 1 and out.height == 64


def test_band_first_tiff_is_four_bands_not_four_slices(tmp_path, model):
    import tifffile

    image = make_geo_scene(64, seed=1, nodata_corner=False)[0]  # (4, 64, 64) uint16
    tifffile.imwrite(tmp_path / "first.tif", image, photometric="minisblack",
                     planarconfig="separate")
    tifffile.imwrite(tmp_path / "pages.tif", image, photometric="minisblack")  # 4 pages
    tifffile.imwrite(tmp_path / "last.tif", image.transpose(1, 2, 0))
    outputs = {}
    for name in ("first", "pages", "last"):
        res = predict_file(model, tmp_path / f"{name}.tif", tmp_path / name, tile_size=32,
                           preprocessing=PREP, write_overlay=False)
        assert res["shape"] == [64, 64]
        outputs[name] = tifffile.imread(res["labels"])
    assert outputs["first"].shape == (64, 64)
    assert np.array_equal(outputs["first"], outputs["last"])
    assert np.array_equal(outputs["pages"], outputs["last"])
    # the layout rule itself: the same (4, H, W) is a stack for a one-channel model
    assert _layout((4, 64, 64), 4, 2, "x", "SYX") == ((), 0)
    assert _layout((4, 64, 64), 4, 2, "x", "QYX") == ((), 0)
    assert _layout((4, 64, 64), 1, 2, "x", "QYX") == ((4,), None)
    assert _layout((64, 64, 4), 4, 2, "x", "YXS") == ((), 2)


def test_predict_command_on_a_geotiff(tmp_path, model, small, capsys):
    from unetlab.card import build_card
    from unetlab.cli import main
    from unetlab.models.serialization import save_model

    card = build_card(model, preprocessing=PREP,
                      class_names=["ground", "road", "building", "water", "vegetation"],
                      palette=[[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12], [13, 14, 15]],
                      extensions={"geo": GEO})
    ckpt = save_model(model, tmp_path / "m.safetensors", card=card)
    out = tmp_path / "pred"
    args = ["predict", str(ckpt), str(small[0]), "--out", str(out), "--tile-size", "64",
            "--no-progress", "--backend", "eager"]
    assert main([*args, "--json", str(tmp_path / "p.json")]) == 0
    with rasterio.open(out / "scene_labels.tif") as lab:
        assert lab.colormap(1)[3][:3] == (10, 11, 12) and lab.tags()["CLASS_1"] == "road"
    assert json.loads((tmp_path / "p.json").read_text())["outputs"]
    capsys.readouterr()
    assert main(args) == 2  # exists: refused, one line
    err = capsys.readouterr().err.strip()
    assert "exists" in err and len(err.splitlines()) == 1


def test_a_four_band_uint16_scene_trains_and_predicts(tmp_path, scene):
    """``unetlab train`` on the geotiff dataset, then ``unetlab predict`` on the scene: the
    band statistics and the geo extension travel in the checkpoint."""
    from unetlab.card import read_card
    from unetlab.cli import main

    run = tmp_path / "run"
    sets = ["model.options.channels=[4,8]", "data.dataset=geotiff",
            f"data.root={scene[0].parent}", "data.options.scene=scene.tif",
            "data.options.scene_labels=scene_labels.tif", "data.options.window=96",
            "data.tile_size=64", "data.augment=flips", "data.batch_size=4", "loss.name=ce",
            "schedule.name=none", "train.epochs=2", "train.progress=false",
            "train.device=cpu", "train.boundary_metric=false", f"train.out_dir={run}"]
    assert main(["train", *[a for s in sets for a in ("--set", s)]]) == 0
    ckpt = run / "checkpoints" / "best"
    card = read_card(ckpt)
    assert card["extensions"]["geo"]["bands"] == [1, 2, 3, 4]
    assert card["input"]["channels"] == ["red", "green", "blue", "nir"]
    norm = card["input"]["normalize"]
    assert norm["name"] == "band_statistics" and len(norm["mean"]) == 4
    assert min(norm["std"]) > 0
    assert main(["predict", str(ckpt), str(scene[0]), "--out", str(tmp_path / "pred"),
                 "--tile-size", "64", "--no-progress"]) == 0
    with rasterio.open(scene[0]) as src, \
            rasterio.open(tmp_path / "pred" / "scene_labels.tif") as out:
        assert (out.crs, out.transform, out.shape) == (src.crs, src.transform, src.shape)
        labels, valid = out.read(1), src.dataset_mask() > 0
    assert (labels[~valid] == 255).all() and (labels[valid] < 5).all()


def test_without_rasterio_a_geotiff_is_a_plain_tiff_or_a_one_line_error(tmp_path, model, small,
                                                                       monkeypatch):
    import sys

    import tifffile

    monkeypatch.setitem(sys.modules, "rasterio", None)
    res = predict_file(model, small[0], tmp_path / "plain", tile_size=64, write_overlay=False)
    assert tifffile.imread(res["labels"]).shape == (64, 64)  # predicted, not georeferenced
    with pytest.raises(UnetlabError, match=r'pip install "unetlab\[geo\]"'):
        predict_file(model, small[0], tmp_path / "geo", tile_size=64, geo=GEO)


def test_a_raster_over_the_pixel_limit_is_refused_from_its_header(model, small, tmp_path):
    """Rasters are streamed, but their outputs grow with them: the header's size meets
    the pixel limit like every other image's (a tiny VRT can declare 10^10 pixels)."""
    from unetlab.limits import pixel_limit

    with pixel_limit(1000), pytest.raises(UnetlabError, match="over the limit of 1,000"):
        predict_file(model, small[0], tmp_path / "out", tile_size=64, preprocessing=PREP,
                     geo=GEO)
    assert not list((tmp_path / "out").glob("*_labels.tif"))


def test_bands_in_another_order_are_read_by_the_names_the_model_was_trained_on(
        model, small, tmp_path, caplog):
    """The same scene with its bands written nir, red, green, blue: read by name it gives
    the labels of the original (by position it gave other labels without a word)."""
    import logging

    geo = {**GEO, "band_names": ["red", "green", "blue", "nir"]}
    with rasterio.open(small[0]) as src:
        data, profile = src.read(), src.profile
    order = [3, 0, 1, 2]
    with rasterio.open(tmp_path / "reordered.tif", "w", **profile) as dst:
        dst.write(data[order])
        for i, k in enumerate(order, start=1):
            dst.set_band_description(i, ["red", "green", "blue", "nir"][k])
    base = predict_file(model, small[0], tmp_path / "a", tile_size=64, preprocessing=PREP,
                        geo=geo)
    with caplog.at_level(logging.WARNING):
        moved = predict_file(model, tmp_path / "reordered.tif", tmp_path / "b", tile_size=64,
                             preprocessing=PREP, geo=geo)
    assert "read by name" in caplog.text
    with rasterio.open(base["labels"]) as a, rasterio.open(moved["labels"]) as b:
        assert np.array_equal(a.read(1), b.read(1))
    # a band the model needs is missing by name: one line naming it
    with rasterio.open(tmp_path / "renamed.tif", "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(["red", "green", "blue", "swir"], start=1):
            dst.set_band_description(i, name)
    with pytest.raises(UnetlabError, match="no band named 'nir'"):
        predict_file(model, tmp_path / "renamed.tif", tmp_path / "c", tile_size=64,
                     preprocessing=PREP, geo=geo)


def test_repeated_band_names_are_read_by_position(small):
    """Three bands all described NDVI: matching by name would read band 1 three times."""
    from types import SimpleNamespace

    from unetlab.georaster import bands_for_model

    src = SimpleNamespace(descriptions=("ndvi", "ndvi", "ndvi"), count=3)
    geo = {"bands": [1, 2, 3], "band_names": ["ndvi", "ndvi", "ndvi"]}
    assert bands_for_model(src, geo, "x.tif") == [1, 2, 3]
    partly = SimpleNamespace(descriptions=("red", None, None, None), count=4)
    named = {"bands": [1, 2, 3, 4], "band_names": ["red", "green", "blue", "nir"]}
    assert bands_for_model(partly, named, "y.tif") == [1, 2, 3, 4]
