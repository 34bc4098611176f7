"""Raster inputs whose units or no-data differ from the training rasters', and label
values outside the classes anywhere in a geotiff dataset's label rasters."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import unetlab
from unetlab.errors import UnetlabError
from unetlab.inference import predict_file
from unetlab.preprocess import Preprocessing

rasterio = pytest.importorskip("rasterio")

from unetlab.data.synthetic_geo import make_geo_scene, write_scene_pair  # noqa: E402

NAMES = ["ground", "road", "building", "water", "vegetation"]
NORM = {"mean": [0.02, 0.02, 0.015, 0.045], "std": [0.01, 0.005, 0.005, 0.015]}
PREP = Preprocessing(channels=4, normalize=NORM)
GEO = {"bands": [1, 2, 3, 4], "dtype": "uint16", "nodata": 0}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return unetlab.create_model("unet", in_channels=4, num_classes=5,
                                channels=(4, 8)).eval()


@pytest.fixture(scope="module")
def scene(geo_scene_64):
    return geo_scene_64


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, model):
    """The model saved with the card of one trained on uint16 rasters with no-data 0."""
    from unetlab.card import build_card
    from unetlab.models.serialization import save_model

    card = build_card(model, preprocessing=PREP, class_names=NAMES,
                      extensions={"geo": GEO})
    return save_model(model, tmp_path_factory.mktemp("ckpt") / "m.safetensors", card=card)


def _rewrite(src_path, path, data=None, **changes):
    """A copy of ``src_path`` with other pixels (``data``) and profile (``changes``)."""
    with rasterio.open(src_path) as src:
        profile, descriptions = src.profile, src.descriptions
        data = src.read() if data is None else data
    profile.update(count=data.shape[0], dtype=data.dtype.name, **changes)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(descriptions, start=1):
            dst.set_band_description(i, name or "")
    return path


def _reflectance(scene, path, dtype="float32"):
    """The scene as reflectance (counts / 10000, as Sentinel-2 L2A floats), no-data NaN."""
    with rasterio.open(scene[0]) as src:
        counts = src.read()
    refl = (counts / 10000.0).astype(dtype)
    refl[:, (counts == 0).any(0)] = np.nan
    return _rewrite(scene[0], path, refl, nodata=float("nan"))


def _labels(path) -> np.ndarray:
    with rasterio.open(path) as lab:
        return lab.read(1)


# -- 1. a dtype with other units than the training rasters' --------------------------------
def test_bands_in_other_units_are_a_one_line_error_unless_any_dtype(tmp_path, model, scene,
                                                                    caplog):
    refl = _reflectance(scene, tmp_path / "refl.tif")
    with pytest.raises(UnetlabError) as err:
        predict_file(model, refl, tmp_path / "a", tile_size=64, preprocessing=PREP, geo=GEO)
    message = str(err.value)
    assert "\n" not in message and "refl.tif" in message and "--any-dtype" in message
    assert "float32 (read as stored)" in message and "uint16" in message
    assert "value / 65535" in message
    assert not list((tmp_path / "a").glob("*.tif"))
    with caplog.at_level(logging.WARNING):
        res = predict_file(model, refl, tmp_path / "b", tile_size=64, preprocessing=PREP,
                           geo=GEO, any_dtype=True)
    assert "going on anyway" in caplog.text
    assert _labels(res["labels"]).shape == (64, 64)


def test_dtypes_with_the_same_units_pass_without_a_word(tmp_path, model, scene, caplog):
    from unetlab.inference.raster import check_dtype

    refl64 = _reflectance(scene, tmp_path / "refl64.tif", "float64")
    with caplog.at_level(logging.WARNING):
        predict_file(model, refl64, tmp_path / "out", tile_size=64, preprocessing=PREP,
                     geo={**GEO, "dtype": "float32"})
    assert "float64" not in caplog.text
    check_dtype("x.tif", "uint8", "uint16", "none")  # scaling none: values as stored
    with pytest.raises(UnetlabError, match=r"uint8 \(read as value / 255\).*uint16"):
        check_dtype("x.tif", "uint8", "uint16")


def test_predict_and_evaluate_commands_refuse_other_units_and_take_any_dtype(
        tmp_path, scene, checkpoint, capsys):
    from unetlab.cli import main

    refl = _reflectance(scene, tmp_path / "data" / "refl.tif")
    _rewrite(scene[1], tmp_path / "data" / "refl_labels.tif")
    args = ["predict", str(checkpoint), str(refl), "--tile-size", "64", "--no-progress",
            "--backend", "eager"]
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "p1")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--any-dtype" in err and "float32" in err
    assert main([*args, "--out", str(tmp_path / "p2"), "--any-dtype"]) == 0
    assert (tmp_path / "p2" / "refl_labels.tif").is_file()

    ev = ["evaluate", str(checkpoint), "--dataset", "geotiff", "--data",
          str(tmp_path / "data"), "--option", "scene=refl.tif", "--option",
          "scene_labels=refl_labels.tif", "--option", "window=32", "--no-boundary",
          "--backend", "eager", "--device", "cpu"]
    capsys.readouterr()
    assert main([*ev, "--json", str(tmp_path / "e1.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--any-dtype" in err and "uint16" in err
    assert main([*ev, "--json", str(tmp_path / "e2.json"), "--any-dtype"]) == 0
    assert (tmp_path / "e2.json").is_file()


def test_predict_help_names_the_new_flags(capsys):
    from unetlab.cli import main

    for command in ("predict", "evaluate"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--any-dtype" in text
        assert ("--nodata VALUE raster inputs" in text) == (command == "predict")


# -- 2. a raster without a no-data tag ------------------------------------------------------
def test_nodata_declares_the_inputs_no_data_like_a_tag(tmp_path, model, scene, caplog):
    """Without a tag and without --nodata: one warning, nothing masked (0 may be data);
    --nodata 0 masks exactly what the tag masks, in any band."""
    with rasterio.open(scene[0]) as src:
        data = src.read()
    data[2, 10:14, 40:50] = 0  # no-data in one band only
    tagged = _rewrite(scene[0], tmp_path / "tagged.tif", data, nodata=0)
    bare = _rewrite(scene[0], tmp_path / "bare.tif", data, nodata=None)
    with rasterio.open(bare) as src:
        assert src.nodata is None
    zero = (data == 0).any(0)
    assert zero[10:14, 40:50].all()
    expected = predict_file(model, tagged, tmp_path / "t", tile_size=64,
                            preprocessing=PREP, geo=GEO, probabilities=True)
    with caplog.at_level(logging.WARNING):
        unmasked = predict_file(model, bare, tmp_path / "u", tile_size=64,
                                preprocessing=PREP, geo=GEO)
    assert caplog.text.count("--nodata 0") == 1 and "bare.tif" in caplog.text
    assert (_labels(unmasked["labels"]) != 255).all()  # the card's value is not applied
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        declared = predict_file(model, bare, tmp_path / "d", tile_size=64,
                                preprocessing=PREP, geo=GEO, nodata=0, probabilities=True)
    assert "--nodata" not in caplog.text
    labels = _labels(declared["labels"])
    assert (labels[zero] == 255).all() and (labels[~zero] != 255).all()
    assert np.array_equal(labels, _labels(expected["labels"]))
    with rasterio.open(declared["probabilities"]) as a, \
            rasterio.open(expected["probabilities"]) as b:
        np.testing.assert_array_equal(a.read(), b.read())  # NaN where no-data, as tagged


def test_nodata_overrides_the_files_tag_and_must_fit_its_dtype(tmp_path, model, scene):
    with rasterio.open(scene[0]) as src:
        data = src.read()
    zero = (data == 0).any(0)
    data[:, 50:, :8] = 7  # a block of 7s: no-data when declared so
    moved = _rewrite(scene[0], tmp_path / "sevens.tif", data, nodata=0)
    res = predict_file(model, moved, tmp_path / "o", tile_size=64, preprocessing=PREP,
                       geo=GEO, nodata=7)
    labels = _labels(res["labels"])
    sevens = (data == 7).any(0)
    assert (labels[sevens] == 255).all()
    assert (labels[zero & ~sevens] != 255).all()  # the tag's 0 is data now
    with pytest.raises(UnetlabError, match=r"--nodata 0.5 is not a uint16 value"):
        predict_file(model, moved, tmp_path / "x", tile_size=64, preprocessing=PREP,
                     geo=GEO, nodata=0.5)


def test_predict_command_takes_nodata(tmp_path, scene, checkpoint):
    import json

    from unetlab.cli import main

    bare = _rewrite(scene[0], tmp_path / "bare.tif", nodata=None)
    out = tmp_path / "pred"
    assert main(["predict", str(checkpoint), str(bare), "--out", str(out), "--tile-size",
                 "64", "--no-progress", "--backend", "eager", "--nodata", "0"]) == 0
    with rasterio.open(scene[0]) as src:
        zero = src.dataset_mask() == 0
    labels = _labels(out / "bare_labels.tif")
    assert zero.any() and (labels[zero] == 255).all() and (labels[~zero] != 255).all()
    manifest = json.loads((out / "predict_manifest.json").read_text())
    assert manifest["settings"]["nodata"] == 0.0  # --resume continues only with the same


# -- 3. label values outside the classes, anywhere in the label rasters -------------------
def _bad_val_scene(folder, value=9):
    """The scene with ``value`` in its bottom rows only (the validation area)."""
    image, labels = make_geo_scene(64, seed=6)
    labels[60:, 20:24] = value
    return write_scene_pair(image, labels, folder / "scene.tif", folder / "scene_labels.tif")


def _scene_ds(scene, split="train", **options):
    from unetlab.data import build_dataset

    image, labels = scene
    return build_dataset("geotiff", image.parent, split=split, scene=image.name,
                         scene_labels=labels.name, window=32, **options)


def test_a_bad_label_value_in_the_validation_rows_fails_when_the_dataset_is_built(
        tmp_path):
    scene = _bad_val_scene(tmp_path)
    for split in ("train", "val"):
        with pytest.raises(UnetlabError) as err:
            _scene_ds(scene, split, class_names=NAMES)
        message = str(err.value)
        assert "\n" not in message and "scene_labels.tif" in message
        assert "label values [9]" in message and "0..4" in message
        assert "declared" in message and "ignore_values [255]" in message
    with pytest.raises(UnetlabError, match=r"\[9\].*found in the training area"):
        _scene_ds(scene)  # classes inferred from the training rows: 0..4
    ds = _scene_ds(scene, class_names=NAMES, ignore_values=[255, 9])  # the way out
    assert ds.num_classes == 5


def test_bad_label_values_in_a_held_out_file_fail_when_the_dataset_is_built(tmp_path):
    for i in range(2):
        image, labels = make_geo_scene(32, seed=i)
        if i == 1:  # the last file by name: held out as val
            labels[:2, :2] = 12
        write_scene_pair(image, labels, tmp_path / "images" / f"t{i}.tif",
                         tmp_path / "labels" / f"t{i}.tif")
    from unetlab.data import build_dataset

    with pytest.raises(UnetlabError, match=r"t1\.tif: label values \[12\] outside classes"):
        build_dataset("geotiff", tmp_path, split="train", val_fraction=0.5)


def test_the_label_scan_reads_in_blocks(tmp_path, monkeypatch):
    """One pass over the label raster, in blocks of about LABEL_BLOCK pixels (flat
    memory whatever the scene's size), and the training rows' values as before."""
    import unetlab.data.geotiff as G

    image, labels = make_geo_scene(64, seed=6)
    scene = write_scene_pair(image, labels, tmp_path / "scene.tif",
                             tmp_path / "scene_labels.tif")
    monkeypatch.setattr(G, "LABEL_BLOCK", 64 * 8)
    heights, real = [], G.GeoTiffDataset._read_labels

    def spy(self, sample, valid=None):
        if sample[0] is None:  # the scan's reads, not a window's
            heights.append(sample[3].stop - sample[3].start)
        return real(self, sample, valid)

    monkeypatch.setattr(G.GeoTiffDataset, "_read_labels", spy)
    ds = _scene_ds(scene)
    assert max(heights) <= 8 and sum(heights) == 64  # every row, once
    train_rows = labels[:51]  # val_fraction 0.2: the bottom 13 rows are held out
    assert ds.num_classes == int(train_rows[train_rows != 255].max()) + 1
