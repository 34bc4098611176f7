"""``unetlab compare``: the --quick harness end to end, resume, JSON, one-line errors."""

import csv
import json

import pytest

from unetlab.cli import main

QUICK = ["compare", "--quick", "--set", "train.max_steps=2"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_quick_models_suite_writes_tables_json_plots_and_resumes(tmp_path, capsys):
    out, js = tmp_path / "out", tmp_path / "summary.json"
    assert main([*QUICK, "--out", str(out), "--json", str(js)]) == 0
    err = capsys.readouterr().err
    assert err.count("trained 2 steps") == 5
    summary = json.loads(js.read_text())
    rows = summary["models"]
    assert list(rows) == ["unet", "segnet_basic", "fcn8s", "resunet", "attention_unet"]
    for row in rows.values():
        assert row["train_steps"] == 2 and row["parameters"] > 0 and row["gflops"] > 0
        assert 0.0 <= row["miou"] <= 1.0 and row["latency_ms"] > 0
        assert len(row["iou_per_class"]) == 5 and 0 <= row["checkerboard"] <= 1
        assert row["seeds"] == [0] and row["miou_std"] is None  # one seed: no spread
    # parameter counts are those of the registered models with the config's options
    from unetlab import create_model
    from unetlab.models.profile import count_parameters
    ref = create_model("unet", in_channels=3, num_classes=5, channels=(4, 8, 16))
    assert rows["unet"]["parameters"] == count_parameters(ref)
    folder = out / "models"
    with open(folder / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["label"] for r in table] == list(rows)
    assert "iou.triangle" in table[0]
    assert (folder / "results.md").read_text().count("\n| ") >= 5 + 5
    for name in ("miou_vs_latency.png", "miou_vs_parameters.png", "iou_per_class.png",
                 "crops.png"):
        assert (folder / name).stat().st_size > 1000
    stamp = (folder / "unet" / "seed_0" / "result.json").stat().st_mtime_ns
    text = (folder / "results.md").read_text()
    assert "equal steps: each entry trains for 2 optimizer steps" in text
    assert "not separated" in text and "one seed: no interval" in text

    # resume: nothing is retrained, results are identical (the earlier --json file is
    # never replaced: the second summary goes to its own path)
    js2 = tmp_path / "summary2.json"
    assert main([*QUICK, "--out", str(out), "--json", str(js2)]) == 0
    assert capsys.readouterr().err.count("(reused)") == 5
    assert (folder / "unet" / "seed_0" / "result.json").stat().st_mtime_ns == stamp
    assert json.loads(js2.read_text()) == summary
    assert main([*QUICK, "--out", str(out), "--json", str(js)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_upsampling_and_losses_suites(tmp_path, capsys):
    js = tmp_path / "s.json"
    assert main([*QUICK, "--upsampling", "--losses", "--out", str(tmp_path),
                 "--json", str(js)]) == 0
    summary = json.loads(js.read_text())
    assert list(summary["upsampling"]) == ["unet_transpose", "unet_bilinear", "unet_nearest",
                                           "unet_unpool"]
    ups = summary["upsampling"]
    # transpose adds learnable upsampling weights; the others have none
    assert ups["unet_transpose"]["parameters"] > ups["unet_bilinear"]["parameters"]
    assert ups["unet_nearest"]["parameters"] == ups["unet_bilinear"]["parameters"]
    assert [r["loss"] for r in summary["losses"].values()] == [
        "ce", "weighted_ce", "dice", "generalized_dice", "dice_ce"]
    assert (tmp_path / "upsampling" / "crops.png").is_file()


TWO = """
base:
  data: {dataset: shapes, options: {num_images: 2, size: 32}, val_split: val,
         val_options: {num_images: 2, size: 32}, augment: none, batch_size: 2}
  optim: {name: adam, lr: 0.01}
  train: {epochs: null, max_steps: 1, val_every: 1000000, progress: false, seed: 5}
eval: {size: [32, 32], latency_runs: 1, memory: inline, artifact_images: 1}
seeds: 3
models:
  - {label: a, name: unet, options: {channels: [4, 8]}}
  - {label: b, name: unet, options: {channels: [4, 8], skip_fusion: none}}
"""


def test_seeds_give_spread_intervals_and_verdicts(tmp_path, capsys):
    cfg, out, js = tmp_path / "two.yaml", tmp_path / "out", tmp_path / "s.json"
    cfg.write_text(TWO)
    assert main(["compare", "--config", str(cfg), "--seeds", "2", "--out", str(out),
                 "--json", str(js)]) == 0  # --seeds overrides the file's 3
    assert capsys.readouterr().err.count("trained 1 steps") == 4
    rows = json.loads(js.read_text())["models"]
    for label, row in rows.items():
        assert row["seeds"] == [5, 6]  # train.seed, train.seed + 1
        runs = row["runs"]
        assert [r["seed"] for r in runs] == [5, 6]
        values = [r["miou"] for r in runs]
        assert row["miou"] == pytest.approx(sum(values) / 2)
        lo, hi = row["miou_interval"]
        assert min(values) - 1e-12 <= lo <= hi <= max(values) + 1e-12
        assert row["miou_std"] == pytest.approx(abs(values[0] - values[1]) / 2 ** 0.5)
        assert (out / "models" / label / "seed_6" / "result.json").is_file()
        assert json.loads((out / "models" / label / "summary.json").read_text())["seeds"] \
            == [5, 6]
    # different seeds train differently (else the spread would say nothing)
    assert rows["a"]["runs"][0]["miou"] != rows["a"]["runs"][1]["miou"] or \
        rows["a"]["runs"][0]["latency_ms"] != rows["a"]["runs"][1]["latency_ms"]
    text = (out / "models" / "results.md").read_text()
    assert " ± " in text and "Seeds: 5, 6 (2 per entry)" in text
    assert f"--config {cfg} --models --seeds 2" in text
    assert "## Verdicts" in text and "**miou**" in text
    with open(out / "models" / "results.csv") as f:
        table = list(csv.DictReader(f))
    assert {"miou_std", "miou_lo", "miou_hi", "seeds"} <= set(table[0])


@pytest.mark.parametrize("argv, message", [
    (["compare"], "give --config"),
    (["compare", "--config", "nope.yaml"], "nope.yaml not found"),
    (["compare", "--quick", "--set", "train.epoks=3"], "train.epoks"),
    (["compare", "--quick", "--device", "cuda:7"], "cuda"),
    (["compare", "--quick", "--seeds", "0"], "seeds must be >= 1"),
    (["compare", "--quick", "--only", "unet,vgg"], "--only vgg: no such entry"),
    (["compare", "--quick", "--only", ","], "--only needs at least one"),
    (["compare", "--quick", "--models", "--losses", "--only", "vgg"], "--only vgg"),
])
def test_one_line_errors(argv, message, capsys, monkeypatch):
    import torch
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unetlab compare: error:") and message in err
    assert len(err.splitlines()) == 1


def test_missing_suite_is_an_error(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("base: {data: {dataset: shapes}, train: {max_steps: 1, epochs: null}}\n"
                   "models: [{name: unet}]\n")
    assert main(["compare", "--config", str(cfg), "--losses", "--out", str(tmp_path)]) == 2
    assert "no losses section" in capsys.readouterr().err


def test_only_runs_some_entries_and_a_full_run_reuses_them(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*QUICK, "--out", str(out), "--only", "unet,fcn8s"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("trained 2 steps") == 2
    assert "run without --only" in captured.out
    folder = out / "models"
    assert (folder / "unet" / "summary.json").is_file()
    assert not (folder / "results.md").exists()        # a table of 2 of 5 entries: not written
    assert main([*QUICK, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("(reused)") == 2 and err.count("trained 2 steps") == 3
    assert (folder / "results.md").is_file()


def test_a_changed_setup_retrains_but_keeps_the_earlier_run(tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*QUICK, "--out", str(out), "--only", "unet"]) == 0
    first = json.loads((out / "models" / "unet" / "seed_0" / "result.json").read_text())
    changed = ["compare", "--quick", "--set", "train.max_steps=3"]
    assert main([*changed, "--out", str(out), "--only", "unet"]) == 0
    assert "trained 3 steps" in capsys.readouterr().err
    kept = out / "models" / "unet" / "superseded" / "seed_0-1" / "result.json"
    assert json.loads(kept.read_text()) == first          # the earlier run, untouched
    again = json.loads((out / "models" / "unet" / "seed_0" / "result.json").read_text())
    assert again["train_steps"] == 3


def test_a_run_being_trained_by_a_live_process_is_not_touched(tmp_path, capsys):
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    folder = out / "models" / "unet" / "seed_0"
    folder.mkdir(parents=True)
    (folder / "partial.txt").write_text("epoch 3")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (folder / "RUNNING").write_text(f"{child.pid}\n")
        assert main([*QUICK, "--out", str(out), "--only", "unet"]) == 2
        assert f"being trained by process {child.pid}" in capsys.readouterr().err
        assert (folder / "partial.txt").read_text() == "epoch 3"
    finally:
        child.kill()
        child.wait()
    # that process is gone: an interrupted run, set aside and retrained
    assert main([*QUICK, "--out", str(out), "--only", "unet"]) == 0
    assert (out / "models" / "unet" / "superseded" / "seed_0-1" / "partial.txt").is_file()
    assert not (folder / "RUNNING").exists() and os.getpid()


@pytest.mark.parametrize("entry, message", [
    ("{label: b, name: unte, options: {channels: [4, 8]}}", "entry 'b': unknown model 'unte'"),
    ("{label: b, name: unet, options: {chanels: [4, 8]}}", "entry 'b': model 'unet' has no "
                                                         "option 'chanels'"),
])
def test_every_entry_is_checked_before_any_trains(tmp_path, capsys, entry, message):
    """A typo in the last entry used to surface after the others had trained."""
    cfg, out = tmp_path / "bad.yaml", tmp_path / "out"
    cfg.write_text(TWO.replace("  - {label: b, name: unet, options: {channels: [4, 8], "
                               "skip_fusion: none}}", "  - " + entry))
    assert main(["compare", "--config", str(cfg), "--seeds", "1", "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.rglob("*.safetensors"))


def test_spatial_dims_in_an_entry_passes_the_up_front_check(tmp_path):
    from unetlab.compare.harness import _check_entries
    from unetlab.compare.spec import load_spec

    cfg = tmp_path / "sd.yaml"
    cfg.write_text(TWO.replace("options: {channels: [4, 8]}}",
                               "options: {channels: [4, 8], spatial_dims: 2}}", 1))
    spec = load_spec(cfg)
    _check_entries(spec, "models", spec.suites["models"], tmp_path / "out", "cpu")
