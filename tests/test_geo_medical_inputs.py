"""Users' own GeoTIFF and NIfTI files: label rasters on another grid, fractional labels,
band selection at evaluation, GCP georeferencing, damaged rasters, NIfTI qform/sform
codes, and 3-D datasets in stats / plan."""

from __future__ import annotations

import numpy as np
import pytest

from unetlab.errors import UnetlabError


# -- GeoTIFF ------------------------------------------------------------------------------
def _geo_pair(root, name="t0", *, label_transform=None, label_crs="EPSG:32633",
              label_dtype="uint8", labels=None, seed=0, size=64):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    from unetlab.data.synthetic_geo import make_geo_scene

    image, lab = make_geo_scene(size, seed)
    transform = from_origin(500_000, 5_100_000, 1.0, 1.0)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=size, height=size, count=4, dtype="uint16",
                   crs="EPSG:32633", transform=transform, nodata=0)
    with rasterio.open(root / "images" / f"{name}.tif", "w", **profile) as dst:
        dst.write(image)
        for i, band in enumerate(("red", "green", "blue", "nir")):
            dst.set_band_description(i + 1, band)
    values = (lab if labels is None else labels).astype(label_dtype)
    with rasterio.open(root / "labels" / f"{name}.tif", "w", driver="GTiff", width=size,
                       height=size, count=1, dtype=label_dtype, crs=label_crs,
                       transform=transform if label_transform is None else label_transform,
                       nodata=255) as dst:
        dst.write(values[None])
    return root


def _geo_ds(root, **options):
    from unetlab.data import build_dataset

    return build_dataset("geotiff", root, split="test" if (root / "test").is_dir() else "train",
                         val_fraction=0.5, **options)


def test_labels_on_another_grid_are_a_one_line_error(tmp_path):
    pytest.importorskip("rasterio")
    from rasterio.transform import from_origin

    _geo_pair(tmp_path / "ok", "a")
    _geo_pair(tmp_path / "ok", "b", seed=1)
    assert len(_geo_ds(tmp_path / "ok")) == 1
    cases = {"shift": dict(label_transform=from_origin(500_016, 5_100_000, 1.0, 1.0)),
             "res": dict(label_transform=from_origin(500_000, 5_100_000, 2.0, 2.0)),
             "crs": dict(label_crs="EPSG:32634")}
    for case, kwargs in cases.items():
        root = tmp_path / case
        _geo_pair(root, "a", **kwargs)
        _geo_pair(root, "b", seed=1)
        with pytest.raises(UnetlabError, match="labels") as err:
            _geo_ds(root)
        assert "a.tif" in str(err.value) and "\n" not in str(err.value)


def test_a_label_raster_without_georeferencing_is_read_pixel_for_pixel(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from rasterio.transform import Affine

    root = _geo_pair(tmp_path, "a", label_transform=Affine.identity(), label_crs=None)
    _geo_pair(tmp_path, "b", seed=1)
    with rasterio.open(root / "labels" / "a.tif") as lab:
        assert lab.crs is None and lab.transform.is_identity
    ds = _geo_ds(root)
    assert len(ds) == 1


def test_fractional_label_values_are_an_error_not_truncated(tmp_path):
    pytest.importorskip("rasterio")
    from unetlab.data.synthetic_geo import make_geo_scene

    _, lab = make_geo_scene(64, 0)
    root = _geo_pair(tmp_path, "a", label_dtype="float32", labels=lab + 0.5)
    _geo_pair(tmp_path, "b", seed=1)
    with pytest.raises(UnetlabError, match="non-integer"):
        _geo_ds(root)
    # whole float values (and the no-data value) are fine
    whole = _geo_pair(tmp_path / "whole", "a", label_dtype="float32", labels=lab)
    _geo_pair(tmp_path / "whole", "b", seed=1)
    ds = _geo_ds(whole)
    _, mask, _ = ds.load(0)
    assert set(np.unique(mask)) <= {0, 1, 2, 3, 4, 255}


def test_evaluate_reads_the_bands_the_model_was_trained_on(tmp_path, monkeypatch, capsys):
    pytest.importorskip("rasterio")
    import unetlab.data as data
    from unetlab.card import read_card
    from unetlab.cli import main

    root = tmp_path / "data"
    for i in range(3):
        _geo_pair(root, f"t{i}", seed=i)
    run = tmp_path / "run"
    sets = ["model.options.channels=[4,8]", "data.dataset=geotiff", f"data.root={root}",
            "data.options.bands=[nir,blue,green,red]", "data.tile_size=32",
            "data.augment=none", "data.batch_size=2", "data.val_split=val", "loss.name=ce",
            "schedule.name=none", "train.epochs=1", "train.progress=false",
            "train.device=cpu", "train.boundary_metric=false", f"train.out_dir={run}"]
    assert main(["train", *[a for s in sets for a in ("--set", s)]]) == 0
    ckpt = run / "checkpoints" / "best"
    assert read_card(ckpt)["extensions"]["geo"]["bands"] == [4, 3, 2, 1]
    seen = []
    real = data.build_dataset

    def spy(name, *args, **kwargs):
        ds = real(name, *args, **kwargs)
        seen.append(list(ds.bands))
        return ds

    monkeypatch.setattr(data, "build_dataset", spy)
    assert main(["evaluate", str(ckpt), "--dataset", "geotiff", "--data", str(root),
                 "--split", "val", "--no-boundary", "--backend", "eager",
                 "--json", str(tmp_path / "ev.json")]) == 0
    assert seen == [[4, 3, 2, 1]]  # not the file's order [1, 2, 3, 4]


def test_gcp_georeferencing_is_kept_in_the_prediction(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    import torch
    from rasterio.control import GroundControlPoint as GCP

    import unetlab
    from unetlab.data.synthetic_geo import make_geo_scene
    from unetlab.inference import predict_file

    image, _ = make_geo_scene(64, 0)
    gcps = [GCP(0, 0, 500_000, 5_100_000), GCP(0, 64, 500_064, 5_100_000),
            GCP(64, 0, 500_000, 5_099_936), GCP(64, 64, 500_064, 5_099_936)]
    path = tmp_path / "gcp.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=4,
                       dtype="uint16", gcps=gcps, crs="EPSG:32633") as dst:
        dst.write(image)
    torch.manual_seed(0)
    model = unetlab.create_model("unet", in_channels=4, num_classes=3, channels=(4, 8)).eval()
    with _no_warning(rasterio):
        out = predict_file(model, path, tmp_path / "out", tile_size=64,
                           geo={"bands": [1, 2, 3, 4], "dtype": "uint16"})
    with rasterio.open(out["labels"]) as lab:
        got, crs = lab.gcps
        assert len(got) == 4 and crs.to_epsg() == 32633
        assert [(g.row, g.col, g.x, g.y) for g in got] == [(g.row, g.col, g.x, g.y)
                                                           for g in gcps]


class _no_warning:
    """No NotGeoreferencedWarning (a multi-line Python warning on the console)."""

    def __init__(self, rasterio):
        self.category = rasterio.errors.NotGeoreferencedWarning

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings(record=True)
        self.caught = self._ctx.__enter__()
        warnings.simplefilter("always")

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        assert not [w for w in self.caught if issubclass(w.category, self.category)]


def test_a_truncated_raster_is_a_one_line_error_naming_it(tmp_path):
    rasterio = pytest.importorskip("rasterio")
    from unetlab.georaster import open_raster, read_window

    image = np.random.default_rng(0).integers(0, 60000, (4, 300, 300), dtype=np.uint16)
    full = tmp_path / "full.tif"
    with rasterio.open(full, "w", driver="GTiff", width=300, height=300, count=4,
                       dtype="uint16", tiled=True, blockxsize=128, blockysize=128) as dst:
        dst.write(image)
    broken = tmp_path / "broken.tif"
    broken.write_bytes(full.read_bytes()[:5000])
    with open_raster(broken) as src, pytest.raises(UnetlabError, match="truncated") as err:
        read_window(src, [1, 2, 3, 4])
    assert "broken.tif" in str(err.value) and "\n" not in str(err.value)


# -- NIfTI --------------------------------------------------------------------------------
def test_written_labels_keep_the_inputs_qform_and_sform_with_their_codes(tmp_path):
    nib = pytest.importorskip("nibabel")
    from unetlab.data.volumes import read_volume, write_volume

    data = np.random.default_rng(0).normal(size=(12, 10, 6)).astype(np.float32)
    ras = np.diag([0.8, 0.8, 3.0, 1.0])
    ras[:3, 3] = [-10, 20, 30]
    th = np.deg2rad(20)
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    lps = np.eye(4)
    lps[:3, :3] = rot @ np.diag([-0.8, -0.8, 3.0])
    lps[:3, 3] = [100, 80, -50]
    cases = {"mni_sform": (ras, 4, ras, 1), "oblique": (lps, 2, lps, 1),
             "qform_only": (lps, 0, lps, 1), "both_differ": (ras, 2, lps, 1)}
    for name, (saff, scode, qaff, qcode) in cases.items():
        img = nib.Nifti1Image(data, saff)
        img.set_sform(saff, code=scode)
        img.set_qform(qaff, code=qcode)
        src = tmp_path / f"{name}.nii.gz"
        nib.save(img, str(src))
        vol = read_volume(src)
        out = write_volume(tmp_path / f"{name}_labels.nii.gz",
                           np.zeros(vol.spatial_shape, np.uint8), like=vol)
        a, b = nib.load(str(src)), nib.load(str(out))
        assert int(b.header["sform_code"]) == scode and int(b.header["qform_code"]) == qcode
        np.testing.assert_array_equal(b.affine, a.affine)
        np.testing.assert_array_equal(b.get_qform(), a.get_qform())
        np.testing.assert_array_equal(b.get_sform(), a.get_sform())
    # a NIfTI-2 input gives a NIfTI-2 output (float64 affine kept exactly)
    img2 = nib.Nifti2Image(data, lps)
    nib.save(img2, str(tmp_path / "two.nii.gz"))
    vol = read_volume(tmp_path / "two.nii.gz")
    out = write_volume(tmp_path / "two_labels.nii.gz", np.zeros(vol.spatial_shape, np.uint8),
                       like=vol)
    back = nib.load(str(out))
    assert isinstance(back, nib.Nifti2Image)
    np.testing.assert_array_equal(back.affine, img2.affine)


def test_volumes_in_stats_and_plan_are_clear(tmp_path, capsys):
    pytest.importorskip("nibabel")
    from unetlab.cli import main
    from unetlab.data.synthetic3d import write_synthetic_volumes

    write_synthetic_volumes(tmp_path / "v", num_cases=2, shape=(12, 10, 6))
    assert main(["stats", "--dataset", "nifti", "--data", str(tmp_path / "v"),
                 "--no-progress", "--json", str(tmp_path / "s.json")]) == 0
    assert (tmp_path / "s.json").is_file()
    capsys.readouterr()
    assert main(["plan", "--dataset", "nifti", "--data", str(tmp_path / "v"), "--budget",
                 "20s", "--out", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "3-D volumes" in err and len(err.splitlines()) == 1


def test_two_volumes_with_one_name_are_an_error_not_a_silent_choice(tmp_path):
    from unetlab.data.nifti import group_channels

    for name in ("case.nii", "case.nii.gz", "other.nii.gz"):
        (tmp_path / name).write_bytes(b"")
    files = sorted(tmp_path.iterdir())
    with pytest.raises(UnetlabError) as exc:
        group_channels(files)
    assert "\n" not in str(exc.value) and "case.nii" in str(exc.value)
    assert set(group_channels([tmp_path / "other.nii.gz"])) == {"other"}
