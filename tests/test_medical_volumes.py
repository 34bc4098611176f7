"""NIfTI reading/writing, the ``nifti`` dataset, resampling and 3-D augmentation."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from unetlab.data import build_dataset, build_transforms  # noqa: E402
from unetlab.data.synthetic3d import synthetic_affine, write_synthetic_volumes  # noqa: E402
from unetlab.data.volumes import (  # noqa: E402
    nifti_stem,
    read_volume,
    resample,
    resampled_shape,
    write_volume,
)
from unetlab.errors import UnetlabError  # noqa: E402

SHAPE, SPACING = (20, 18, 8), (0.8, 0.8, 2.5)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    root = tmp_path_factory.mktemp("vols")
    write_synthetic_volumes(root, num_cases=3, shape=SHAPE, spacing=SPACING, seed=1)
    return root


def _save(path, array, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([1.0, 1.0, 3.0, 1.0]) if affine is None
                             else affine), str(path))
    return path


def test_read_keeps_affine_spacing_and_voxel_order(volumes):
    vol = read_volume(volumes / "images" / "case_000.nii.gz")
    assert vol.array.shape == SHAPE and vol.array.dtype == np.float32
    assert vol.spacing == pytest.approx(SPACING)
    np.testing.assert_allclose(vol.affine, synthetic_affine(SPACING))
    lab = read_volume(volumes / "labels" / "case_000.nii.gz", labels=True)
    assert lab.array.dtype == np.int64 and set(np.unique(lab.array)) <= {0, 1, 2}
    assert nifti_stem("a/case_000.nii.gz") == "case_000" and nifti_stem("b.nii") == "b"


def test_write_like_keeps_the_input_grid_and_refuses_to_overwrite(tmp_path, volumes):
    vol = read_volume(volumes / "images" / "case_001.nii.gz")
    out = write_volume(tmp_path / "x_labels.nii.gz", np.ones(SHAPE, np.uint8), like=vol)
    back = nib.load(str(out))
    assert back.shape == SHAPE and back.get_data_dtype() == np.uint8
    np.testing.assert_allclose(back.affine, vol.affine)
    assert back.header.get_zooms() == pytest.approx(SPACING)
    with pytest.raises(UnetlabError, match="exists"):
        write_volume(out, np.zeros(SHAPE, np.uint8), like=vol)
    assert np.asarray(nib.load(str(out)).dataobj).min() == 1  # untouched
    write_volume(out, np.zeros(SHAPE, np.uint8), like=vol, overwrite=True)
    assert np.asarray(nib.load(str(out)).dataobj).max() == 0


def test_bad_files_are_one_line_errors_naming_them(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"not a nifti file")
    with pytest.raises(UnetlabError, match="broken.nii.gz"):
        read_volume(bad)
    frac = _save(tmp_path / "frac.nii.gz", np.full((4, 4, 4), 0.5, np.float32))
    with pytest.raises(UnetlabError, match="frac.nii.gz.*non-integer"):
        read_volume(frac, labels=True)
    flat = _save(tmp_path / "flat.nii.gz", np.zeros((4, 4), np.float32))
    with pytest.raises(UnetlabError, match="flat.nii.gz.*3-D"):
        read_volume(flat)


def test_missing_nibabel_names_the_extra(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def no_nibabel(name, *args, **kwargs):
        if name == "nibabel":
            raise ImportError("No module named 'nibabel'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nibabel)
    with pytest.raises(UnetlabError, match=r'pip install "unetlab\[medical\]"'):
        read_volume(tmp_path / "any.nii.gz")


def test_resampling_to_a_spacing_covers_the_same_extent():
    shape = resampled_shape((40, 40, 10), (0.8, 0.8, 2.5), (1.6, 1.6, 1.25))
    assert shape == (20, 20, 20)
    labels = np.zeros((40, 40, 10), np.uint8)
    labels[10:30, 10:30, 2:8] = 2
    small = resample(labels, shape, order=0)
    assert small.shape == shape and set(np.unique(small)) == {0, 2}  # nearest: no new values
    # the box keeps its physical place: voxels 10..30 at 0.8 mm = 5..15 at 1.6 mm
    assert small[5:15, 5:15, 4:16].min() == 2 and small[:4].max() == 0
    back = resample(small, (40, 40, 10), order=0)
    assert (back == labels).mean() > 0.97


def test_dataset_items_are_channels_first_volumes(volumes):
    ds = build_dataset("nifti", volumes, class_names=["background", "blob", "tube"])
    assert len(ds) == 3 and ds.in_channels == 1 and ds.num_classes == 3
    item = ds[0]
    assert tuple(item["image"].shape) == (1, *SHAPE) and tuple(item["mask"].shape) == SHAPE
    assert abs(float(item["image"].mean())) < 1e-4  # zscore per volume
    assert ds.voxel_spacing(0) == pytest.approx(SPACING)
    assert ds.card_extensions == {"medical": {"spacing": None, "intensity": "zscore",
                                              "axes": "voxel"}}
    # num_classes inferred from the label values when not declared
    assert build_dataset("nifti", volumes).num_classes == 3


def test_multimodal_channel_files_and_4d_volumes(tmp_path):
    write_synthetic_volumes(tmp_path / "files", num_cases=2, shape=SHAPE, modalities=2,
                            channel_files=True)
    write_synthetic_volumes(tmp_path / "four", num_cases=2, shape=SHAPE, modalities=2)
    assert sorted(p.name for p in (tmp_path / "files" / "images").iterdir())[:2] == \
        ["case_000_0000.nii.gz", "case_000_0001.nii.gz"]
    a = build_dataset("nifti", tmp_path / "files")
    b = build_dataset("nifti", tmp_path / "four")
    assert a.in_channels == b.in_channels == 2 and a.names == b.names == ["case_000", "case_001"]
    np.testing.assert_allclose(a[1]["image"].numpy(), b[1]["image"].numpy(), atol=1e-5)
    # a case with a missing channel file is a one-line error naming the case
    (tmp_path / "files" / "images" / "case_001_0001.nii.gz").unlink()
    with pytest.raises(UnetlabError, match="case_001"):
        build_dataset("nifti", tmp_path / "files")


def test_dataset_errors_name_the_file(tmp_path, volumes):
    root = tmp_path / "d"
    _save(root / "images" / "a.nii.gz", np.zeros((8, 8, 4), np.float32))
    _save(root / "images" / "b.nii.gz", np.zeros((8, 8, 4), np.float32))
    _save(root / "labels" / "a.nii.gz", np.zeros((8, 8, 4), np.uint8))
    with pytest.raises(UnetlabError, match="without a mask.*b.nii.gz"):
        build_dataset("nifti", root)
    _save(root / "labels" / "b.nii.gz", np.full((8, 8, 4), 7, np.uint8))
    with pytest.raises(UnetlabError, match=r"b.nii.gz: label values \[7\]"):
        build_dataset("nifti", root, num_classes=2)  # when built, not at the first load
    _save(root / "labels" / "b.nii.gz", np.ones((8, 8, 4), np.uint8))
    _save(root / "labels" / "a.nii.gz", np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(UnetlabError, match="a.nii.gz: label shape"):
        build_dataset("nifti", root, num_classes=2)[0]
    for bad, match in [({"target_spacing": [1, 1]}, "target_spacing"),
                       ({"intensity": "minmax"}, "intensity"),
                       ({"normalize": "imagenet"}, "intensity")]:
        with pytest.raises(UnetlabError, match=match):
            build_dataset("nifti", volumes, **bad)


def test_target_spacing_resamples_images_and_labels(volumes):
    ds = build_dataset("nifti", volumes, target_spacing=[1.6, 1.6, 2.5])
    item = ds[0]
    assert tuple(item["image"].shape) == (1, 10, 9, 8)
    assert tuple(item["mask"].shape) == (10, 9, 8)
    assert ds.voxel_spacing(0) == (1.6, 1.6, 2.5)
    assert ds.card_extensions["medical"]["spacing"] == [1.6, 1.6, 2.5]


def test_volume_augmentation_cuts_patches_and_oversamples_foreground(volumes):
    transform = build_transforms("light", [16, 16, 12], spatial_dims=3, foreground_p=1.0)
    transform.set_seed(0)
    ds = build_dataset("nifti", volumes, transform=transform)
    for i in range(3):
        item = ds[i]
        assert tuple(item["image"].shape) == (1, 16, 16, 12)  # z padded from 8 to 12
        assert tuple(item["mask"].shape) == (16, 16, 12)
        assert item["mask"].max() > 0  # centred on a labelled voxel
    with pytest.raises(UnetlabError, match="tile_size"):
        build_transforms("light", [16, 16], spatial_dims=3)
