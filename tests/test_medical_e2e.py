"""3-D end to end on tiny synthetic NIfTI volumes: train, predict (affine kept), evaluate
(Dice and HD95 in mm), with and without resampling to a target spacing."""

from __future__ import annotations

import json

import numpy as np
import pytest

nib = pytest.importorskip("nibabel")

from unetlab import create_model, load_model  # noqa: E402
from unetlab.card import read_card  # noqa: E402
from unetlab.cli import main  # noqa: E402
from unetlab.data import build_dataset  # noqa: E402
from unetlab.data.synthetic3d import write_synthetic_volumes  # noqa: E402
from unetlab.errors import UnetlabError  # noqa: E402
from unetlab.inference.volume import predict_nifti  # noqa: E402
from unetlab.metrics import hausdorff95_per_class  # noqa: E402
from unetlab.training.evaluation import predict_logits  # noqa: E402

SHAPE, SPACING = (24, 20, 8), (0.8, 0.8, 2.5)


def _train(root, out, extra=()):
    sets = ["model.options.channels=[4,8]", "model.options.norm=instance",
            "data.dataset=nifti", f"data.root={root}", "data.val_split=0.25",
            "data.tile_size=[16,16,8]", "data.batch_size=2", "data.augment=light",
            "data.options.class_names=[background,blob,tube]", "loss.name=dice_ce",
            "optim.lr=0.01", "train.epochs=1", "train.progress=false", "train.device=cpu",
            "train.best_metric=mdice", "train.boundary_metric=false", f"train.out_dir={out}",
            *extra]
    assert main(["train", *[a for s in sets for a in ("--set", s)]]) == 0
    return out / "checkpoints" / "best"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("med") / "data"
    write_synthetic_volumes(root, num_cases=4, shape=SHAPE, spacing=SPACING, seed=3)
    return root


@pytest.fixture(scope="module")
def trained(data):
    return _train(data, data.parent / "run")


def test_training_saves_a_3d_model_with_the_medical_card_extension(trained):
    model = load_model(trained)
    assert model.spatial_dims == 3 and model.in_channels == 1 and model.num_classes == 3
    card = read_card(trained)
    assert card["extensions"]["medical"] == {"spacing": None, "intensity": "zscore",
                                             "axes": "voxel"}
    assert card["classes"]["names"] == ["background", "blob", "tube"]
    assert card["input"]["scaling"] == "none" and card["architecture"]["spatial_dims"] == 3


def test_predict_keeps_the_input_affine_shape_and_spacing(trained, data, tmp_path, capsys):
    src = data / "images" / "case_002.nii.gz"
    assert main(["predict", str(trained), str(src), "--out", str(tmp_path), "--no-progress",
                 "--tile-size", "16", "--probabilities"]) == 0
    inp, out = nib.load(str(src)), nib.load(str(tmp_path / "case_002_labels.nii.gz"))
    assert out.shape == inp.shape == SHAPE
    np.testing.assert_allclose(out.affine, inp.affine)
    assert out.header.get_zooms() == pytest.approx(SPACING)
    assert out.get_data_dtype() == np.uint8
    labels = np.asarray(out.dataobj)
    probs = nib.load(str(tmp_path / "case_002_probs.nii.gz")).get_fdata()
    assert probs.shape == (*SHAPE, 3)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(labels, probs.argmax(-1))
    # the same prediction as the model on the preprocessed dataset volume (whole pass
    # vs tiles: same argmax almost everywhere)
    ds = build_dataset("nifti", data, class_names=["background", "blob", "tube"])
    whole = predict_logits(load_model(trained), ds[2]["image"]).argmax(0).numpy()
    assert (whole == labels).mean() > 0.95
    # a second run does not replace the outputs
    assert main(["predict", str(trained), str(src), "--out", str(tmp_path),
                 "--no-progress"]) == 2
    assert "exists" in capsys.readouterr().err


def test_evaluate_reports_dice_and_hd95_in_mm(trained, data, tmp_path):
    js = tmp_path / "eval.json"
    assert main(["evaluate", str(trained), "--dataset", "nifti", "--data", str(data),
                 "--split", "train", "--json", str(js)]) == 0
    result = json.loads(js.read_text())
    assert result["class_names"] == ["background", "blob", "tube"]
    assert {"dice", "mdice", "hd95", "mhd95"} <= set(result) and result["hd95"][0] is None
    # HD95 recomputed by hand from the predictions and the file spacing
    model, ds = load_model(trained), build_dataset("nifti", data, num_classes=3)
    sums, counts = np.zeros(3), np.zeros(3)
    for i in range(len(ds)):
        item = ds[i]
        pred = predict_logits(model, item["image"]).argmax(0)
        per = hausdorff95_per_class(pred[None], item["mask"][None], 3, spacing=SPACING)
        for c in (1, 2):
            if per[c] is not None:
                sums[c] += per[c]
                counts[c] += 1
    for c in (1, 2):
        expected = sums[c] / counts[c] if counts[c] else None
        assert result["hd95"][c] == pytest.approx(expected)


def test_resampled_training_predicts_back_on_the_input_grid(data, tmp_path):
    ckpt = _train(data, tmp_path / "run",
                  ["data.options.target_spacing=[1.6,1.6,2.5]", "data.tile_size=[8,8,8]"])
    medical = read_card(ckpt)["extensions"]["medical"]
    assert medical["spacing"] == [1.6, 1.6, 2.5]
    src = data / "images" / "case_001.nii.gz"
    res = predict_nifti(load_model(ckpt), src, tmp_path / "pred", tile_size=16,
                        medical=medical)
    out, inp = nib.load(str(res["labels"])), nib.load(str(src))
    assert out.shape == inp.shape and res["shape"] == list(SHAPE)
    np.testing.assert_allclose(out.affine, inp.affine)


def test_a_2d_model_on_a_volume_is_a_one_line_error(data, tmp_path):
    net = create_model("unet", in_channels=1, num_classes=2, channels=(4, 8)).eval()
    with pytest.raises(UnetlabError, match="3-D model"):
        predict_nifti(net, data / "images" / "case_000.nii.gz", tmp_path)
