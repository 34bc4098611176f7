"""The Python API as a careless user calls it (a red-team of session 30): what gave
silent wrong answers, replaced a file or failed deep inside torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import unetlab
from unetlab.errors import UnetlabError
from unetlab.imageio import read_image, write_image
from unetlab.inference import predict_file, predict_tiled
from unetlab.metrics import SegmentationMetrics


def _net(**kw):
    torch.manual_seed(0)
    return unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8),
                                **kw).eval()


def test_predict_file_prepares_the_image_as_the_models_card_says(tmp_path):
    """A model trained with normalisation, loaded back: predict_file applied dtype
    scaling only, so the model saw raw units (0 % foreground on a real run)."""
    net = _net()
    card_norm = {"mean": [0.6], "std": [0.2]}
    path = unetlab.save_model(net, tmp_path / "m.safetensors")
    from unetlab.card import read_card  # a card with normalisation, as training writes
    card = read_card(path)
    card["input"]["normalize"] = card_norm
    unetlab.save_model(net, path, card=card)
    model = unetlab.load_model(path)
    image = (np.random.default_rng(0).random((24, 24)) * 255).astype(np.uint8)
    write_image(tmp_path / "x.png", image)
    predict_file(model, tmp_path / "x.png", tmp_path / "out", tile_size=16,
                 probabilities=True, write_overlay=False)
    got = read_image(tmp_path / "out" / "x_probs.tif")
    prepared = (image[None].astype(np.float32) / 255 - 0.6) / 0.2
    want = predict_tiled(net, prepared, tile_size=16, output="probabilities").numpy()
    assert np.allclose(got, want, atol=1e-5)


def test_predict_file_refuses_to_replace_an_existing_output(tmp_path):
    """A user's own x_labels.png beside the image was replaced without a word."""
    image = np.zeros((16, 16), np.uint8)
    write_image(tmp_path / "x.png", image)
    truth = tmp_path / "out" / "x_labels.png"
    truth.parent.mkdir()
    truth.write_bytes(b"ground truth")
    with pytest.raises(UnetlabError, match="x_labels.png exists; pass overwrite=True"):
        predict_file(_net(), tmp_path / "x.png", tmp_path / "out", tile_size=16)
    assert truth.read_bytes() == b"ground truth"
    predict_file(_net(), tmp_path / "x.png", tmp_path / "out", tile_size=16, overwrite=True)
    assert truth.read_bytes() != b"ground truth"


def test_a_model_in_training_mode_predicts_as_in_eval_and_is_put_back():
    """In training mode batch norm used each tile's statistics and overwrote its running
    ones, so the answer and the model both changed."""
    net = _net()
    x = torch.rand(1, 24, 24)
    want = predict_tiled(net, x, tile_size=16)
    net.train()
    got = predict_tiled(net, x, tile_size=16)
    assert net.training and torch.allclose(got, want)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    predict_tiled(net, x, tile_size=16)
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in state.items())


def test_integer_or_empty_images_to_predict_tiled_are_refused():
    net = _net()
    with pytest.raises(ValueError, match="prepared for the model.*uint8"):
        predict_tiled(net, np.zeros((1, 16, 16), np.uint8), tile_size=16)
    with pytest.raises(ValueError, match="empty"):
        predict_tiled(net, torch.rand(1, 0, 10), tile_size=16)


def test_models_refuse_integer_and_non_tensor_inputs_in_one_line():
    net = _net()
    with pytest.raises(ValueError, match="floating-point input, got torch.uint8"):
        net(torch.zeros(1, 1, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="torch.Tensor.*ndarray"):
        net(np.zeros((1, 1, 16, 16), np.float32))


@pytest.mark.parametrize("channels", ["64", (4.9, 8.2), (4, True)])
def test_widths_must_be_integers_not_coerced(channels):
    """channels="64" built widths (6, 4); (4.9, 8.2) built (4, 8)."""
    with pytest.raises(ValueError, match="integer widths"):
        unetlab.create_model("unet", in_channels=1, num_classes=2, channels=channels)


def test_nan_logits_are_not_scored_as_class_zero():
    m = SegmentationMetrics(num_classes=2)
    with pytest.raises(ValueError, match="NaN values"):
        m.update(torch.full((1, 2, 4, 4), float("nan")), torch.zeros(1, 4, 4, dtype=torch.long))


def test_evaluate_model_says_when_the_dataset_is_prepared_otherwise(tmp_path, caplog):
    """evaluate_model on a dataset without the card's normalisation gave other scores
    (mIoU 0.43 against 0.76 on a real run) without a word."""
    from unetlab.card import read_card
    from unetlab.data import build_dataset
    from unetlab.training.evaluation import evaluate_model

    path = unetlab.save_model(_net(), tmp_path / "m.safetensors")
    card = read_card(path)
    card["input"]["normalize"] = {"mean": [0.6], "std": [0.2]}
    unetlab.save_model(_net(), path, card=card)
    model = unetlab.load_model(path)
    ds = build_dataset("membranes", split="val", num_images=1, size=32)
    with caplog.at_level("WARNING", logger="unetlab.training.evaluation"):
        evaluate_model(model, ds, boundary=False)
    assert "the model card says" in caplog.text
    caplog.clear()
    same = build_dataset("membranes", split="val", num_images=1, size=32,
                         normalize={"mean": [0.6], "std": [0.2]})
    with caplog.at_level("WARNING", logger="unetlab.training.evaluation"):
        evaluate_model(model, same, boundary=False)
    assert "the model card says" not in caplog.text


def test_config_mistakes_of_a_python_caller_are_one_line_errors(tmp_path):
    from unetlab.config import load_config
    from unetlab.training import train

    with pytest.raises(UnetlabError, match="put it in a list"):
        load_config(None, "train.epochs=2")
    for wrong in ({"train": {"epochs": 1}}, "configs/x.yaml"):
        with pytest.raises(UnetlabError, match="train\\(\\) takes a Config"):
            train(wrong)


def test_a_folder_models_image_mode_travels_to_predict_and_evaluate(tmp_path, capsys):
    """Trained with image_mode=RGB on a folder of grey and RGB files: predict refused the
    grey half of its own training images ("1 channel(s), the model expects 3")."""
    from unetlab.cli import main
    from unetlab.data import build_dataset

    rng = np.random.default_rng(0)
    for i in range(4):
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 8:20] = 1
        grey = (mask * 180 + rng.integers(0, 40, (32, 32))).astype(np.uint8)
        image = grey if i % 2 else np.repeat(grey[..., None], 3, axis=2)
        write_image(tmp_path / "d" / "images" / f"m{i}.png", image)
        write_image(tmp_path / "d" / "masks" / f"m{i}.png", mask)
    ds = build_dataset("folder", root=tmp_path / "d", split="train", image_mode="RGB")
    assert ds.card_extensions["folder"]["image_mode"] == "RGB"
    assert main(["train", "--set", "data.dataset=folder", "--set", f"data.root={tmp_path / 'd'}",
                 "--set", "data.options={image_mode: RGB}", "--set", "data.val_split=null",
                 "--set", "model.options.channels=[4,8]", "--set", "train.epochs=1",
                 "--set", "data.batch_size=2", "--set", "data.tile_size=null",
                 "--set", "train.progress=false", "--out", str(tmp_path / "run")]) == 0
    best = tmp_path / "run" / "checkpoints" / "last"
    grey = tmp_path / "d" / "images" / "m1.png"
    assert main(["predict", str(best), str(grey), "--out", str(tmp_path / "p"),
                 "--backend", "eager", "--no-progress"]) == 0
    assert read_image(tmp_path / "p" / "m1_labels.png").shape == (32, 32)
    capsys.readouterr()


def test_review_cases_of_the_api_fixes(tmp_path):
    """A scaled model keeps its card (image_mode and preprocessing reach predict_file); a
    card without an architecture (an OpenVINO file of a bare model) is not used; an
    overlay that will not be written does not block; frozen parts stay frozen; NaN
    logits are refused in evaluation too; -inf logits are not NaN."""
    from unetlab.inference.scaled import ScaledModel
    from unetlab.training.evaluation import Evaluator

    net = _net()
    net.unetlab_card = {"input": {"normalize": {"mean": [0.5], "std": [0.1]}}}  # no arch
    write_image(tmp_path / "x.png", np.zeros((16, 16), np.uint8))
    predict_file(net, tmp_path / "x.png", tmp_path / "o", tile_size=16)   # no KeyError
    (tmp_path / "o2").mkdir()
    (tmp_path / "o2" / "x_overlay.png").write_bytes(b"mine")
    predict_file(_net(), tmp_path / "x.png", tmp_path / "o2", tile_size=16,
                 write_overlay=False)
    assert (tmp_path / "o2" / "x_overlay.png").read_bytes() == b"mine"
    path = unetlab.save_model(_net(), tmp_path / "m.safetensors")
    assert ScaledModel(unetlab.load_model(path), 0.5).unetlab_card["architecture"]
    frozen = _net().train()
    frozen.eval()
    frozen.train(True)
    first_bn = next(m for m in frozen.modules() if isinstance(m, torch.nn.BatchNorm2d))
    first_bn.eval()
    predict_tiled(frozen, torch.rand(1, 16, 16), tile_size=16)
    assert frozen.training and not first_bn.training
    ev = Evaluator(2, boundary=False)
    with pytest.raises(ValueError, match="NaN"):
        ev.update(torch.full((1, 2, 4, 4), float("nan")), torch.zeros(1, 4, 4, dtype=torch.long))
    logits = torch.zeros(1, 2, 4, 4)
    logits[:, 0] = float("-inf")
    m = SegmentationMetrics(num_classes=2)
    m.update(logits, torch.ones(1, 4, 4, dtype=torch.long))
    assert m.compute()["pixel_accuracy"] == 1.0
    with pytest.raises(ValueError, match="integer widths"):
        unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8.0))
    gen = unetlab.create_model("unet", in_channels=1, num_classes=2,
                               channels=(c for c in (4, 8)))
    assert gen is not None


def test_the_overlay_reads_the_image_as_the_prediction_did(tmp_path):
    """A grey + alpha PNG for a model whose card says image_mode L: the prediction
    converted it, the overlay read it raw and crashed after the whole image."""
    from PIL import Image

    from unetlab.card import read_card

    path = unetlab.save_model(_net(), tmp_path / "m.safetensors")
    card = read_card(path)
    card.setdefault("extensions", {})["folder"] = {"image_mode": "L"}
    unetlab.save_model(_net(), path, card=card)
    Image.fromarray(np.zeros((16, 16, 2), np.uint8), "LA").save(tmp_path / "la.png")
    out = predict_file(unetlab.load_model(path), tmp_path / "la.png", tmp_path / "o",
                       tile_size=16)
    assert out["overlay"] is not None and out["overlay"].is_file()
