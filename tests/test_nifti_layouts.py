"""NIfTI layouts and label values as medical data comes: nnU-Net's one file per modality
in ``predict``, stray label values when the classes are inferred, and label values
outside the declared classes found when the dataset is built (validation cases too)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

nib = pytest.importorskip("nibabel")

import unetlab  # noqa: E402
from unetlab.card import build_card  # noqa: E402
from unetlab.cli import main  # noqa: E402
from unetlab.data import build_dataset  # noqa: E402
from unetlab.data.synthetic3d import write_synthetic_volumes  # noqa: E402
from unetlab.errors import UnetlabError  # noqa: E402
from unetlab.inference.volume import predict_nifti  # noqa: E402

SHAPE = (20, 18, 8)
MEDICAL = {"spacing": None, "intensity": "zscore", "axes": "voxel"}
ARGS = ["--no-progress", "--tile-size", "16"]


def _save(path, array, affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.diag([1.0, 1.0, 3.0, 1.0]) if affine is None
                             else affine), str(path))
    return path


def _model(path, in_channels):
    """A tiny untrained 3-D model file whose card carries the medical extension."""
    torch.manual_seed(0)
    net = unetlab.create_model("unet", spatial_dims=3, in_channels=in_channels,
                               num_classes=3, channels=(4, 8), norm="instance").eval()
    card = build_card(net, extensions={"medical": MEDICAL})
    return unetlab.save_model(net, path, card=card)


def _err(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture()
def modalities(tmp_path):
    """Two cases of two modalities, as channel files and (the same data) as 4-D files."""
    write_synthetic_volumes(tmp_path / "files", num_cases=2, shape=SHAPE, modalities=2,
                            channel_files=True, seed=2)
    write_synthetic_volumes(tmp_path / "four", num_cases=2, shape=SHAPE, modalities=2,
                            seed=2)
    return tmp_path


# 1. predict reads nnU-Net's one file per modality, as training does

def test_predict_joins_the_modality_files_of_a_case(modalities, tmp_path, capsys):
    model = _model(tmp_path / "m2.safetensors", 2)
    images, out = modalities / "files" / "images", tmp_path / "out"
    assert main(["predict", str(model), str(images), "--out", str(out), *ARGS]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "case_000_labels.nii.gz", "case_001_labels.nii.gz", "predict_manifest.json"]
    net = unetlab.load_model(model)
    for case in ("case_000", "case_001"):
        ref = predict_nifti(net, modalities / "four" / "images" / f"{case}.nii.gz",
                            tmp_path / "ref", tile_size=16, medical=MEDICAL)
        got, first = (nib.load(str(out / f"{case}_labels.nii.gz")),
                      nib.load(str(images / f"{case}_0000.nii.gz")))
        np.testing.assert_array_equal(np.asarray(got.dataobj),
                                      np.asarray(nib.load(str(ref["labels"])).dataobj))
        assert got.shape == SHAPE
        np.testing.assert_allclose(got.affine, first.affine)  # the case's grid
    entries = json.loads((out / "predict_manifest.json").read_text())["inputs"]
    assert [(e["status"], [p.rsplit("/", 1)[-1] for p in e["channels"]]) for e in entries] == \
        [("complete", ["case_000_0000.nii.gz", "case_000_0001.nii.gz"]),
         ("complete", ["case_001_0000.nii.gz", "case_001_0001.nii.gz"])]
    capsys.readouterr()
    # the manifest's bookkeeping holds for cases: resume skips them, overwrite redoes them
    assert main(["predict", str(model), str(images), "--out", str(out), *ARGS,
                 "--resume"]) == 0
    assert "resuming: 2 of 2" in capsys.readouterr().out
    assert main(["predict", str(model), str(images), "--out", str(out), *ARGS,
                 "--overwrite"]) == 0
    # predicted into the images folder itself: its outputs are not read as inputs later
    assert main(["predict", str(model), str(images), "--out", str(images), *ARGS]) == 0
    assert main(["predict", str(model), str(images), "--out", str(images), *ARGS,
                 "--overwrite"]) == 0


def test_a_case_missing_a_modality_is_refused_in_one_line(modalities, tmp_path, capsys):
    model = _model(tmp_path / "m2.safetensors", 2)
    images, out = modalities / "files" / "images", tmp_path / "out"
    (images / "case_001_0001.nii.gz").unlink()
    assert main(["predict", str(model), str(images), "--out", str(out), *ARGS]) == 2
    err = _err(capsys)
    assert "'case_001' has channel files [0]" in err and "_0001" in err
    assert not list(out.glob("*.nii.gz"))


@pytest.mark.parametrize("change", ["affine", "shape"])
def test_modality_files_on_different_grids_are_refused(modalities, tmp_path, capsys,
                                                       change):
    model = _model(tmp_path / "m2.safetensors", 2)
    images, out = modalities / "files" / "images", tmp_path / "out"
    bad = images / "case_001_0001.nii.gz"
    vol = nib.load(str(bad))
    data, affine = vol.get_fdata(dtype=np.float32), vol.affine.copy()
    if change == "affine":
        affine[:3, 3] += 5.0  # the same voxels, 5 mm elsewhere
    else:
        data = data[:, :, :-1]
    nib.save(nib.Nifti1Image(data, affine), str(bad))
    assert main(["predict", str(model), str(images), "--out", str(out), *ARGS]) != 0
    err = _err(capsys)
    assert "case_001_0001.nii.gz" in err and \
        ("affine differs" if change == "affine" else "shape (20, 18, 7) differs") in err
    assert (out / "case_000_labels.nii.gz").is_file()  # the good case is written
    assert not (out / "case_001_labels.nii.gz").exists()
    # training reads the case the same way: refused too, naming the file
    with pytest.raises(UnetlabError, match="case_001_0001.nii.gz: "):
        build_dataset("nifti", modalities / "files")[1]


def test_a_one_channel_model_names_nnunet_outputs_after_the_case(tmp_path):
    model = _model(tmp_path / "m1.safetensors", 1)
    rng = np.random.default_rng(0)
    for name in ("a_0000", "b_0000"):  # one-modality nnU-Net data
        _save(tmp_path / "nn" / f"{name}.nii.gz", rng.normal(size=SHAPE).astype(np.float32))
    for name in ("scan_0000", "scan_0001"):  # a numbered series: each file its own case
        _save(tmp_path / "series" / f"{name}.nii.gz",
              rng.normal(size=SHAPE).astype(np.float32))
    for folder, names in [("nn", ["a_labels.nii.gz", "b_labels.nii.gz"]),
                          ("series", ["scan_0000_labels.nii.gz", "scan_0001_labels.nii.gz"])]:
        out = tmp_path / f"out_{folder}"
        assert main(["predict", str(model), str(tmp_path / folder), "--out", str(out),
                     *ARGS]) == 0
        assert sorted(p.name for p in out.glob("*.nii.gz")) == names


def test_a_single_file_for_a_multichannel_model_says_how_to_name_modalities(tmp_path):
    net = unetlab.load_model(_model(tmp_path / "m2.safetensors", 2))
    path = _save(tmp_path / "x.nii.gz", np.zeros(SHAPE, np.float32))
    with pytest.raises(UnetlabError, match=r"1 channel\(s\), the model expects 2; a case "
                       r"stored one file per modality \(CASE_0000.nii.gz.* its folder is "
                       "given"):
        predict_nifti(net, path, tmp_path / "out", tile_size=16)


# 2. inferred classes: a stray label value does not silently add classes

def _labelled(root, labels):
    """Cases ``c0``, ``c1`` ... with these label volumes (and zero images)."""
    for i, lab in enumerate(labels):
        _save(root / "images" / f"c{i}.nii.gz", np.zeros(lab.shape, np.float32))
        _save(root / "labels" / f"c{i}.nii.gz", lab.astype(np.uint8))
    return root


def _classes(shape=(40, 40, 20)):
    lab = np.zeros(shape, np.uint8)
    lab[5:15, 5:15, 5:10] = 1
    lab[20:30, 20:30, 5:10] = 2
    return lab


def test_a_stray_label_value_is_refused_naming_value_file_and_voxels(tmp_path):
    stray = _classes()
    stray[0, 0, :3] = 7  # three voxels of 7 in one file: 3..7 would become classes
    root = _labelled(tmp_path / "d", [_classes(), stray])
    with pytest.raises(UnetlabError) as info:
        build_dataset("nifti", root)
    msg = str(info.value)
    assert "\n" not in msg and "7 (3 voxel(s) in" in msg and "c1.nii.gz" in msg
    assert "no label volume holds 3..6" in msg and "num_classes=3" in msg
    assert "ignore_index=7" in msg
    # declared, the value is left out as the message says
    ds = build_dataset("nifti", root, num_classes=3, ignore_index=7)
    assert ds.num_classes == 3 and int((ds[1]["mask"] == 7).sum()) == 3


def test_a_rare_top_value_in_one_file_is_named_in_a_warning(tmp_path, caplog):
    """3 voxels of 64,000 in one file, contiguous with the others: a stray or a real
    small class; said, not refused."""
    rare = _classes()
    rare[0, 0, :3] = 3
    with caplog.at_level("WARNING", logger="unetlab.data.nifti"):
        ds = build_dataset("nifti", _labelled(tmp_path / "d", [_classes(), rare]))
    assert ds.num_classes == 4
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "[3]" in said and "3 in" in said and "c1.nii.gz" in said
    assert "num_classes=3" in said and "ignore_index=3" in said


def test_gapped_labels_are_refused_and_legitimate_ones_are_read(tmp_path):
    binary = np.where(_classes() > 0, 2, 0)  # 0/2: class 1 is in no volume
    with pytest.raises(UnetlabError, match=r"2 \([\d,]+ voxel\(s\) in .*no label volume "
                       r"holds \[1\]"):
        build_dataset("nifti", _labelled(tmp_path / "gap", [binary, binary]))
    # a small class present in every file, and one class absent from one file: fine
    only01 = np.where(_classes() == 2, 0, _classes())
    ds = build_dataset("nifti", _labelled(tmp_path / "ok", [_classes(), only01]))
    assert ds.num_classes == 3
    # ignore_index voxels are not classes
    ignored = _classes()
    ignored[0, 0, 0] = 255
    assert build_dataset("nifti", _labelled(tmp_path / "ign", [_classes(), ignored]),
                         ignore_index=255).num_classes == 3


# 3. declared classes: every case's label values are checked when the dataset is built

def test_values_outside_the_declared_classes_fail_when_built(tmp_path, monkeypatch):
    import unetlab.data.nifti as N

    bad = _classes((12, 12, 6))
    bad[1, 1, 1] = 5
    root = _labelled(tmp_path / "d", [_classes((12, 12, 6))] * 3 + [bad])
    # the last case is the one data.val_split=0.25 holds out for validation
    with pytest.raises(UnetlabError, match=r"c3.nii.gz: label values \[5\] outside 0..2"):
        build_dataset("nifti", root, class_names=["bg", "a", "b"])
    # a fixed validation split is checked when it is built, too
    _labelled(tmp_path / "s" / "val", [bad])
    _labelled(tmp_path / "s" / "train", [_classes((12, 12, 6))])
    build_dataset("nifti", tmp_path / "s", split="train", num_classes=3)
    with pytest.raises(UnetlabError, match=r"val/labels/c0.nii.gz: label values \[5\]"):
        build_dataset("nifti", tmp_path / "s", split="val", num_classes=3)
    # one label volume in memory at a time: each is released before the next is read
    import weakref

    alive, reads = [], []
    real = N.read_volume

    def spy(path, **kw):
        vol = real(path, **kw)
        if kw.get("labels"):
            reads.append(sum(r() is not None for r in alive))
            alive.append(weakref.ref(vol.array))
        return vol

    monkeypatch.setattr(N, "read_volume", spy)
    bad[1, 1, 1] = 0
    _labelled(root, [_classes((12, 12, 6))] * 3 + [bad])
    build_dataset("nifti", root, num_classes=3)
    assert len(reads) == 4 and max(reads) == 0


def _lab(values):
    a = np.zeros((12, 12, 6), np.uint8)
    for i, v in enumerate(values):
        a[i * 2:i * 2 + 2, :4, :3] = v
    return a


def test_brats_labels_are_offered_every_value_as_a_class(tmp_path):
    """0, 1, 2, 4 (BraTS: 4 is the enhancing tumour on thousands of voxels): the error
    offers num_classes=5, which keeps 4; ignore_index only as the stray-value way."""
    for i in range(2):
        _save(tmp_path / "images" / f"c{i}.nii.gz", np.zeros((12, 12, 6), np.float32))
        _save(tmp_path / "labels" / f"c{i}.nii.gz", _lab([1, 2, 4]))
    with pytest.raises(UnetlabError, match="num_classes=5") as info:
        build_dataset("nifti", tmp_path)
    assert "stray value" in str(info.value)
    assert build_dataset("nifti", tmp_path, num_classes=5).num_classes == 5


def test_a_validation_split_lacking_a_class_takes_the_training_classes(tmp_path):
    """Undeclared classes are counted on the training labels (0-3); the validation
    split's own few volumes (0, 1, 3) were counted alone and refused for the gap."""
    from unetlab.config import load_config
    from unetlab.training.builder import build_datasets

    for split, values in (("train", [1, 2, 3]), ("val", [1, 3])):
        _save(tmp_path / split / "images" / "c0.nii.gz", np.zeros((12, 12, 6), np.float32))
        _save(tmp_path / split / "labels" / "c0.nii.gz", _lab(values))
    cfg = load_config(None, ["data.dataset=nifti", f"data.root={tmp_path}",
                             "data.val_split=val", "model.options.channels=[4,8]",
                             "data.tile_size=null"])
    data = build_datasets(cfg)
    assert data.train.num_classes == 4 and data.val.num_classes == 4
