"""Comparison tables (CSV, Markdown) and the comparison file's validation."""

import csv

import pytest

from unetlab.compare import markdown_table, spec_from_dict, write_csv, write_markdown
from unetlab.errors import UnetlabError

ROWS = [
    {"label": "unet", "model": "unet", "loss": "ce", "options": {"channels": [4, 8]},
     "parameters": 1234567, "gflops": 2.5, "peak_train_mb": 100.4, "peak_infer_mb": None,
     "latency_ms": 12.345, "train_images_per_s": 3.21, "train_steps": 10, "miou": 0.5,
     "mdice": 0.6, "pixel_accuracy": 0.9, "class_accuracy": 0.7, "boundary_f1": 0.25,
     "checkerboard": 1.5, "class_names": ["bg", "fg"], "iou_per_class": [0.75, 0.25],
     "device": "cpu", "train_time_s": 5.0},
    {"label": "fcn8s", "model": "fcn8s", "loss": "ce", "options": {},
     "parameters": 99, "gflops": 0.1, "peak_train_mb": 50.0, "peak_infer_mb": 10.0,
     "latency_ms": 1.0, "train_images_per_s": 9.0, "train_steps": 10, "miou": 0.25,
     "mdice": 0.3, "pixel_accuracy": 0.8, "class_accuracy": 0.5, "boundary_f1": None,
     "checkerboard": 0.9, "class_names": ["bg", "fg"], "iou_per_class": [0.5, None],
     "device": "cpu", "train_time_s": 5.0},
]


def test_csv_has_every_column_and_per_class_iou(tmp_path):
    path = write_csv(ROWS, tmp_path / "r.csv")
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == ["unet", "fcn8s"]
    assert rows[0]["parameters"] == "1234567"
    assert float(rows[0]["iou.bg"]) == 0.75 and float(rows[0]["iou.fg"]) == 0.25
    assert rows[1]["iou.fg"] == "" and rows[1]["boundary_f1"] == ""
    assert rows[0]["options"] == "channels=[4, 8]"
    assert float(rows[1]["checkerboard"]) == 0.9


def test_markdown_formats_numbers_and_missing_values(tmp_path):
    table = markdown_table(ROWS)
    lines = table.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| unet | ce | 1,234,567 | 2.50 | 100 | n/a | 12.3 | 3.2 | 10 "
                               "| 0.500 |")
    assert "| n/a | 0.900 | n/a |" in lines[3]  # BF1 missing, checkerboard 0.9, no blockiness
    spread = markdown_table([{**ROWS[0], "miou_std": 0.0123, "train_steps_std": 0.0}])
    assert "| 0.500 ± 0.012 |" in spread and "| 10 |" in spread  # steps: no spread shown
    text = write_markdown(ROWS, tmp_path / "r.md").read_text()
    assert "## IoU per class" in text and "| fg | 0.250 | n/a |" in text


BASE = {"data": {"dataset": "shapes"}, "train": {"max_steps": 2, "epochs": None}}


def test_spec_expands_suites_and_applies_overrides():
    spec = spec_from_dict({
        "base": BASE,
        "models": [{"name": "unet"}, {"label": "small", "name": "unet",
                                      "options": {"channels": [4, 8]}}],
        "upsampling": {"model": {"name": "unet", "options": {"channels": [4, 8]}},
                       "methods": ["transpose", "unpool"]},
        "losses": {"model": {"name": "unet"}, "losses": [{"name": "ce"},
                                                         {"label": "d", "name": "dice"}]},
    }, overrides=["train.max_steps=5"], data_root="/data")
    assert [e.label for e in spec.suites["models"]] == ["unet", "small"]
    up = spec.suites["upsampling"]
    assert [e.label for e in up] == ["unet_transpose", "unet_unpool"]
    assert up[1].options == {"channels": [4, 8], "upsample": "unpool"}
    assert [e.loss["name"] for e in spec.suites["losses"]] == ["ce", "dice"]
    assert spec.base["train"]["max_steps"] == 5 and spec.base["data"]["root"] == "/data"
    assert spec.eval["memory"] == "process"


@pytest.mark.parametrize("data, message", [
    ({"base": BASE, "modles": []}, "unknown key"),
    ({"base": BASE, "models": [{"name": "unet"}, {"name": "unet"}]}, "duplicate label"),
    ({"base": BASE, "models": []}, "non-empty list"),
    ({"base": BASE, "eval": {"sise": 3}, "models": [{"name": "unet"}]}, "unknown eval key"),
    ({"base": {**BASE, "optim": {"nme": "adam"}}, "models": [{"name": "unet"}]}, "optim.nme"),
    ({"base": BASE, "upsampling": {"model": {"name": "unet"}}}, "'methods'"),
    ({"base": BASE, "seeds": 0, "models": [{"name": "unet"}]}, "seeds must be >= 1"),
    ({"base": BASE, "seeds": [1, 1], "models": [{"name": "unet"}]}, "repeat a seed"),
    ({"base": BASE, "seeds": "3", "models": [{"name": "unet"}]}, "count >= 1 or"),
    ({"base": BASE, "models": [{"name": "unet", "data": {"augmnt": "none"}}]}, "augmnt"),
])
def test_spec_errors_name_the_problem(data, message):
    with pytest.raises(UnetlabError, match=message):
        spec_from_dict(data)


@pytest.mark.parametrize("override", ["model.name=fcn8s", "model.options.channels=[4,8]",
                                      "model.options={}"])
def test_set_of_a_model_key_is_refused_not_ignored(override):
    """Each entry names its model and options, which replace the base's: a --set of
    them changed nothing without a word."""
    with pytest.raises(UnetlabError, match="names its own model"):
        spec_from_dict({"base": BASE, "models": [{"name": "unet"}]}, overrides=[override])
    spec_from_dict({"base": BASE, "models": [{"name": "unet"}]},
                   overrides=["train.max_steps=2"])


def test_fingerprint_changes_with_the_setup_only():
    from unetlab.compare.harness import fingerprint

    data = {"base": BASE, "models": [{"name": "unet"}, {"label": "b", "name": "unet"}]}
    one, two = spec_from_dict(data), spec_from_dict(data, overrides=["train.max_steps=3"])
    a, b = one.suites["models"]
    assert fingerprint(one, a, "cpu") == fingerprint(spec_from_dict(data), a, "cpu")
    assert fingerprint(one, a, "cpu") != fingerprint(two, a, "cpu")
    assert fingerprint(one, a, "cpu") != fingerprint(one, b, "cpu")
    assert fingerprint(one, a, "cpu") != fingerprint(one, a, "cuda:0")


def test_entry_data_overrides_and_seeds_reach_the_config(tmp_path):
    from unetlab.compare.harness import entry_config, fingerprint

    spec = spec_from_dict({"base": BASE, "seeds": 2, "models": [
        {"label": "a", "name": "unet"},
        {"label": "b", "name": "unet", "data": {"augment": "none"}}]})
    assert spec.seeds == [0, 1]
    a, b = spec.suites["models"]
    cfg_a = entry_config(spec, a, tmp_path, "cpu", seed=1)
    cfg_b = entry_config(spec, b, tmp_path, "cpu", seed=0)
    assert cfg_a.train.seed == 1 and cfg_b.data.augment == "none"
    assert cfg_b.data.dataset == "shapes"  # the rest of base.data is kept
    assert fingerprint(spec, a, "cpu", 0) != fingerprint(spec, a, "cpu", 1)


def test_an_entrys_data_options_keep_the_bases_others(tmp_path):
    """An entry's data.options replaced the base's whole options mapping: a --set
    data.options.x on the base was then dropped for that entry without a word."""
    from unetlab.compare.harness import entry_config

    base = {**BASE, "data": {**BASE.get("data", {}),
                             "options": {"num_images": 6, "size": 32}}}
    spec = spec_from_dict({"base": base, "models": [
        {"name": "unet", "data": {"options": {"size": 48}}}]})
    cfg = entry_config(spec, spec.suites["models"][0], tmp_path, "cpu")
    assert cfg.data.options == {"num_images": 6, "size": 48}
