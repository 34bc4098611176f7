"""One model, the same answer everywhere: predict vs evaluate (grey, RGB + imagenet, RGB +
dataset statistics), and training's validation vs evaluate vs compare for one checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import unetlab
from unetlab.card import card_for_dataset, read_card
from unetlab.cli import main
from unetlab.data import build_dataset

pytestmark = pytest.mark.usefixtures("one_thread")


def _write_folder(root, split, *, rgb: bool, count: int = 3, size: int = 32, seed: int = 0):
    """A folder dataset of noisy images with a darker disc (far from 0.5 on average, so
    normalisation matters) and its two-class mask."""
    rng = np.random.default_rng(seed)
    (root / split / "images").mkdir(parents=True)
    (root / split / "masks").mkdir(parents=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(count):
        shape = (size, size, 3) if rgb else (size, size)
        cy, cx = rng.integers(8, size - 8, size=2)
        mask = ((yy - cy) ** 2 + (xx - cx) ** 2 < 40).astype(np.uint8)
        base = rng.uniform(170, 230, size=(1, 1, 3) if rgb else (1, 1))
        dark = mask[..., None] if rgb else mask
        image = base - 60 * dark + rng.normal(0, 25, size=shape)
        image = np.clip(image, 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / split / "images" / f"im{i}.png")
        Image.fromarray(mask).save(root / split / "masks" / f"im{i}.png")


def _channel_stats(root, split) -> dict:
    """Per-channel mean/std of the images in [0, 1] (what a user computes on the
    training set)."""
    arrays = [np.asarray(Image.open(p), dtype=np.float64) / 255.0
              for p in sorted((root / split / "images").iterdir())]
    stack = np.stack(arrays).reshape(-1, 3)
    return {"mean": stack.mean(0).tolist(), "std": stack.std(0).tolist()}


def _fit(model, dataset, steps: int = 60):
    """A few Adam steps on the whole (normalised) dataset: the model then depends on the
    input's scale, so feeding it unnormalised images changes its labels."""
    images = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    masks = torch.stack([dataset[i]["mask"] for i in range(len(dataset))])
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(images), masks,
                                                 weight=torch.tensor([1.0, 4.0]))
        loss.backward()
        opt.step()
    return model.eval()


CASES = {
    "grey": (False, None),
    "rgb_imagenet": (True, "imagenet"),
    "rgb_stats": (True, "stats"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_predict_gives_exactly_the_label_map_evaluate_computes(tmp_path, case, capsys):
    rgb, normalize = CASES[case]
    root = tmp_path / "data"
    _write_folder(root, "val", rgb=rgb)
    if normalize == "stats":
        normalize = _channel_stats(root, "val")
    options = {"class_names": ["bg", "disc"]}
    dataset = build_dataset("folder", root=root, split="val", normalize=normalize, **options)
    torch.manual_seed(1)
    model = unetlab.create_model("unet", in_channels=3 if rgb else 1, num_classes=2,
                                 channels=(4, 8), norm=None)
    _fit(model, dataset)
    ckpt = unetlab.save_model(model, tmp_path / "model.safetensors",
                              card=card_for_dataset(model, dataset))
    card = read_card(ckpt)
    if normalize is not None:
        assert card["input"]["normalize"]["mean"] == pytest.approx(
            dataset.preprocessing().normalize["mean"])

    # predict: the label maps of the images, preprocessing taken from the card
    assert main(["predict", str(ckpt), str(root / "val" / "images"), "--out",
                 str(tmp_path / "pred"), "--no-progress", "--tile-size", "32"]) == 0
    predicted = {p.stem[: -len("_labels")]: np.asarray(Image.open(p))
                 for p in (tmp_path / "pred").glob("*_labels.png")}
    assert sorted(predicted) == ["im0", "im1", "im2"]
    assert all(len(np.unique(m)) == 2 for m in predicted.values())  # not a constant map

    # the evaluator's own argmax of the same images, image by image
    from unetlab.training.evaluation import predict_logits

    for i in range(len(dataset)):
        item = dataset[i]
        labels = predict_logits(model, item["image"]).argmax(0).numpy()
        assert np.array_equal(labels, predicted[item["name"]]), item["name"]
    if normalize is not None:  # the test can fail: without the card's mean/std it differs
        raw = build_dataset("folder", root=root, split="val", **options)
        differs = [not np.array_equal(predict_logits(model, raw[i]["image"]).argmax(0).numpy(),
                                      predicted[raw[i]["name"]]) for i in range(len(raw))]
        assert any(differs)

    # unetlab evaluate against the predicted maps as ground truth: 100% agreement
    (root / "pred" / "images").mkdir(parents=True)
    (root / "pred" / "masks").mkdir()
    for src in (root / "val" / "images").iterdir():
        (root / "pred" / "images" / src.name).write_bytes(src.read_bytes())
        Image.fromarray(predicted[src.stem]).save(root / "pred" / "masks" / src.name)
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(ckpt), "--dataset", "folder", "--data", str(root),
                 "--split", "pred", "--option", "class_names=[bg, disc]",
                 "--option", "num_classes=2", "--no-boundary", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["pixel_accuracy"] == 1.0
    assert result["num_pixels"] == 3 * 32 * 32


def test_evaluate_refuses_a_normalize_option_that_disagrees_with_the_card(tmp_path, capsys):
    root = tmp_path / "data"
    _write_folder(root, "val", rgb=True, count=1)
    dataset = build_dataset("folder", root=root, split="val", normalize="imagenet")
    model = unetlab.create_model("unet", in_channels=3, num_classes=2, channels=(4, 8))
    ckpt = unetlab.save_model(model, tmp_path / "m.safetensors",
                              card=card_for_dataset(model, dataset))
    args = ["evaluate", str(ckpt), "--dataset", "folder", "--data", str(root), "--split", "val"]
    assert main([*args, "--option", "normalize=null"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disagrees with the model card" in err[0] and "imagenet" in err[0]
    # the card's own value is accepted, and no option at all uses the card
    assert main([*args, "--option", "normalize=imagenet", "--no-boundary",
                 "--json", str(tmp_path / "a.json")]) == 0
    assert main([*args, "--no-boundary", "--json", str(tmp_path / "b.json")]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("a.json", "b.json"))
    assert a["miou"] == b["miou"]


METRICS = ("miou", "mdice", "pixel_accuracy", "class_accuracy", "boundary_f1",
           "pixel_error", "rand_error", "iou.0", "iou.1")


def test_validation_evaluate_and_compare_report_identical_metrics(tmp_path, capsys):
    from unetlab.compare.harness import run_entry
    from unetlab.compare.spec import spec_from_dict

    root = tmp_path / "data"
    _write_folder(root, "train", rgb=False, count=4, seed=1)
    _write_folder(root, "val", rgb=False, count=3, seed=2)
    options = {"class_names": ["cell", "membrane"], "num_classes": 2}
    spec = spec_from_dict({
        "base": {"model": {"name": "unet"},
                 "data": {"dataset": "folder", "root": str(root), "val_split": "val",
                          "augment": "none", "batch_size": 2, "options": options},
                 "loss": {"name": "ce"}, "optim": {"name": "adam", "lr": 0.01},
                 "train": {"max_steps": 3, "epochs": None, "seed": 0, "progress": False,
                           "best_metric": "miou", "boundary_metric": True}},
        "eval": {"latency_runs": 1, "memory": "off", "artifact_images": 0},
        "models": [{"label": "unet", "name": "unet", "options": {"channels": [4, 8]}}],
    })
    row, reused = run_entry(spec, "models", spec.suites["models"][0], tmp_path / "out")
    assert not reused and row["train_steps"] == 3
    ckpt = tmp_path / "out" / "models" / "unet" / "run" / "checkpoints" / "last"
    history = json.loads((ckpt / "state.json").read_text())["history"]
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(ckpt), "--dataset", "folder", "--data", str(root),
                 "--split", "val", "--option", "class_names=[cell, membrane]",
                 "--option", "num_classes=2", "--json", str(out)]) == 0
    evaluated = json.loads(out.read_text())
    flat = {**{k: evaluated[k] for k in METRICS if "." not in k},
            **{f"iou.{i}": v for i, v in enumerate(evaluated["iou"])}}
    # compare's row (the trainer's validation of the final weights)
    for key in ("miou", "mdice", "pixel_accuracy", "class_accuracy", "boundary_f1"):
        assert row[key] == flat[key], key
    assert row["iou_per_class"] == [flat["iou.0"], flat["iou.1"]]
    assert row["pixel_error"] == flat["pixel_error"]
    assert row["rand_error"] == flat["rand_error"]
    # the validation during training, as recorded in the checkpoint's history
    last = history[-1]
    assert last["step"] == 3
    for key in METRICS:
        assert last[key] == flat[key], key
    card = read_card(ckpt)
    assert card["training"]["steps"] == 3
