"""The planner: fingerprint, probe, rules, determinism, plan/fit commands."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from unetlab.cli import main
from unetlab.config import config_from_dict, load_config
from unetlab.errors import UnetlabError
from unetlab.planning import (
    Fingerprint,
    compute_fingerprint,
    make_plan,
    parse_duration,
    probe_machine,
    receptive_field,
    render_plan,
)


class _Masks:
    """A minimal dataset: fixed images and masks through ``load``."""

    class_names = ("background", "line")
    ignore_index = None

    def __init__(self, masks, channels=1):
        self.masks = masks
        self.channels = channels
        self.num_classes = 2

    def __len__(self):
        return len(self.masks)

    def load(self, i):
        mask = self.masks[i]
        image = np.full((*mask.shape, self.channels), 0.25, np.float32)
        image[mask == 1] = 0.75
        return image, mask.astype(np.uint8), None


def _fingerprint(**changes) -> Fingerprint:
    base = dict(dataset="toy", num_images=20, sampled_images=20, image_height=512,
                image_width=512, min_side=512, channels=1, intensity_mean=[0.5],
                intensity_std=[0.2], num_classes=2, class_names=["cell", "membrane"],
                class_frequencies=[0.78, 0.22], median_frequency_weights=[0.6, 2.2],
                imbalance=3.5, object_size=100.0, class_object_size=[78.0, 280.0],
                thinnest_structure=6.3, thinnest_class="membrane", class_thickness=[35.0, 6.3],
                vertical_layout=0.0, has_own_val=True)
    base.update(changes)
    return Fingerprint(**base)


def _probe(rates, device="cpu", tile=192, batch=4) -> dict:
    return {"device": device, "tile": tile, "batch": batch, "depth": 4,
            "steps_per_s": {str(w): r for w, r in rates.items()}, "cached": True}


def test_durations():
    assert parse_duration("90s") == 90
    assert parse_duration("25m") == 1500
    assert parse_duration("2h") == 7200
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45") == 45
    for bad in ("", "10 minutes", "-5m", "0s", "m", "inf", "Infinity", "nan"):
        with pytest.raises(UnetlabError, match="duration"):
            parse_duration(bad)


def test_receptive_field_grows_with_depth():
    assert [receptive_field(d) for d in (3, 4, 5)] == [96, 200, 408]


def test_fingerprint_measures_thickness_layout_and_frequencies():
    masks = []
    for _ in range(3):
        m = np.zeros((64, 64), np.uint8)
        m[10:15, :] = 1          # a 5-pixel line in the top half
        masks.append(m)
    fp = compute_fingerprint(_Masks(masks), name="toy")
    assert fp.num_images == 3 and fp.image_height == 64 and fp.channels == 1
    assert fp.class_frequencies == pytest.approx([59 / 64, 5 / 64], abs=1e-4)
    assert 4.0 <= fp.class_thickness[1] <= 6.5     # the line is 5 px thick
    assert fp.thinnest_class == "line"
    assert fp.vertical_layout > 0.1                # the line only in the top half
    assert fp.intensity_mean[0] == pytest.approx(0.25 + 0.5 * 5 / 64, abs=1e-3)
    assert fp.imbalance == pytest.approx(59 / 5, rel=1e-3)


def test_plan_is_deterministic_and_validates(tmp_path):
    fp, probe = _fingerprint(), _probe({8: 4.0, 16: 2.0, 24: 1.1, 32: 0.6})
    a = make_plan(fp, probe, 1800, dataset="isbi2012", root="data/isbi2012")
    b = make_plan(_fingerprint(), dict(probe), 1800, dataset="isbi2012", root="data/isbi2012")
    assert a.config == b.config and a.reasons == b.reasons
    cfg = config_from_dict(a.config)
    assert cfg.model.options["channels"][0] == 16   # widest with >= 2500 steps in the budget
    assert cfg.data.scale == 1.0                     # the thin membrane forbids 0.5
    assert cfg.loss.name == "dice_ce" and "class_weights" not in cfg.loss.options
    # 20 images but ~3,400 steps: `light`; `paper` only for long training
    assert cfg.data.augment == "light" and cfg.train.best_metric == "pixel_error"
    assert "< 10000" in a.reasons["data.augment"]
    long = make_plan(fp, _probe({8: 40.0, 16: 20.0}), 1800, dataset="isbi2012")
    assert long.expected["steps"] >= 10_000 and long.config["data"]["augment"] == "paper"
    assert cfg.schedule.by_time and cfg.train.time_budget_s < 1800
    text = render_plan(a, fp, probe, 1800)
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    assert load_config(path).model.options == cfg.model.options
    assert text.count("\n# ") + text.count("\n  # ") >= 8      # a reason per choice
    assert yaml.safe_load(text)["data"]["tile_size"] == cfg.data.tile_size


def test_plan_follows_the_machine_and_the_data():
    fp = _fingerprint()
    slow = make_plan(fp, _probe({8: 1.0, 16: 0.5}), 1800, dataset="x")
    fast = make_plan(fp, _probe({8: 8.0, 16: 4.0, 24: 2.5, 32: 1.5, 48: 0.6}), 1800,
                     dataset="x")
    assert slow.config["model"]["options"]["channels"][0] == 8
    assert fast.config["model"]["options"]["channels"][0] == 32
    scene = _fingerprint(num_classes=3, class_names=["sky", "road", "pole"], ignore_index=3,
                         image_height=360, image_width=480, min_side=360, num_images=367,
                         class_frequencies=[0.5, 0.49, 0.01], class_thickness=[60, 90, 4.0],
                         median_frequency_weights=[0.3, 0.3, 15.0], imbalance=50.0,
                         object_size=200.0, vertical_layout=0.8, has_own_val=False)
    plan = make_plan(scene, _probe({8: 2.0, 16: 1.2, 24: 0.8}), 2400, dataset="x")
    cfg = config_from_dict(plan.config)
    assert cfg.data.scale == 0.5                       # passes wanted; the pole keeps 2 px
    assert cfg.data.augment == "upright"               # sky above road: no vertical flips
    w = cfg.loss.options["class_weights"]
    assert w[2] > w[0] and cfg.train.best_metric == "miou"
    assert cfg.data.val_split == pytest.approx(0.2)    # no own validation split
    with pytest.raises(UnetlabError, match="too short"):
        make_plan(fp, _probe({8: 1.0}), 5, dataset="x")


def test_thin_strips_keep_their_short_side_and_a_trainable_bottleneck():
    """48 x 1200 strips on a slow machine: no scale shrinks the short side under 64 px
    (it was cut to 12 px, tile 8), and the bottleneck keeps at least 2 x 2 pixels (a
    batch of one 1 x 1 map is a batch norm crash)."""
    strips = _fingerprint(image_height=48, image_width=1200, min_side=48, num_images=6,
                          object_size=245.0, class_thickness=[35.0, 38.0],
                          has_own_val=False)
    plan = make_plan(strips, _probe({8: 0.5, 16: 0.3}, tile=48), 600, dataset="x")
    cfg = config_from_dict(plan.config)
    depth = len(cfg.model.options["channels"]) - 1
    assert cfg.data.scale == 1.0
    assert cfg.data.tile_size == 48 and cfg.data.tile_size // 2 ** depth >= 2


def test_one_small_image_does_not_shrink_every_tile():
    """The tile follows the typical (median) image; smaller ones are padded in training."""
    common = dict(image_height=369, image_width=341, num_images=8, has_own_val=False)
    rates = _probe({8: 8.0, 16: 4.0, 24: 2.5})
    mixed = make_plan(_fingerprint(min_side=96, **common), rates, 600, dataset="x")
    even = make_plan(_fingerprint(min_side=300, **common), rates, 600, dataset="x")
    assert mixed.config["data"]["tile_size"] == even.config["data"]["tile_size"] == 192


def test_probe_is_cached(tmp_path):
    kw = dict(depth=1, tile=16, batch=2, in_channels=1, num_classes=2, widths=(2, 4),
              cache_dir=tmp_path, seconds=0.01)
    first = probe_machine(**kw)
    assert set(first["steps_per_s"]) == {"2", "4"} and not first["cached"]
    assert all(v > 0 for v in first["steps_per_s"].values())
    again = probe_machine(**kw)
    assert again["cached"] and again["steps_per_s"] == first["steps_per_s"]
    assert len(list(tmp_path.glob("probe-*.json"))) == 1


def test_dataset_scale_resamples_images_and_masks():
    from unetlab.data import build_dataset
    from unetlab.inference.scaled import ScaledModel

    full = build_dataset("shapes", split="val", num_images=1, size=64)
    half = build_dataset("shapes", split="val", num_images=1, size=64, scale=0.5)
    assert half[0]["image"].shape[-2:] == (32, 32) and half[0]["mask"].shape == (32, 32)
    assert set(half[0]["mask"].unique().tolist()) <= set(full[0]["mask"].unique().tolist())
    with pytest.raises(UnetlabError, match="scale"):
        build_dataset("shapes", split="val", num_images=1, size=64, scale=0)
    import torch

    import unetlab

    net = unetlab.create_model("unet", in_channels=3, num_classes=5, channels=(4, 8, 16)).eval()
    scaled = ScaledModel(net, 0.5)
    assert scaled.geometry().divisor == 8
    with torch.no_grad():
        assert scaled(torch.zeros(1, 3, 32, 48)).shape == (1, 5, 32, 48)


def test_fit_runs_end_to_end(tmp_path, capsys):
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps(_probe({8: 6.0, 16: 3.0}, tile=48)))
    out = tmp_path / "run"
    args = ["fit", "--dataset", "membranes", "--option", "num_images=6", "--option",
            "size=48", "--budget", "20s", "--out", str(out), "--probe", str(probe),
            "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["val_native"]["pixel_error"] is not None
    assert report["training"]["steps"] >= 1
    text = (out / "report.md").read_text()               # the CPU and its extensions
    assert "Machine: " in text and "torch threads" in text and "Numeric mode: none" in text
    tta = report["val_native_tta"]                   # measured when the budget leaves time
    assert tta["mode"] == "flips" and tta["transforms"] == 4  # `light`: its 4 flips
    assert ("measures" in tta) != ("skipped" in tta)
    assert "Test-time augmentation" in text
    sel = report["selection"]                 # how best was chosen, and what last scored
    assert sel["metric"] == "pixel_error" and sel["validations"] >= 1
    assert sel["last_step"] == report["training"]["steps"]   # the trainer validates last
    assert (out / "checkpoints" / "best" / "model.safetensors").is_file()
    assert list((out / "overlays").glob("*_overlay.png"))
    assert load_config(out / "plan.yaml").data.dataset == "membranes"
    assert main(["evaluate", str(out / "checkpoints" / "best"), "--dataset", "membranes",
                 "--option", "num_images=2", "--option", "size=48", "--json",
                 str(tmp_path / "e.json")]) == 0
    capsys.readouterr()
    assert main(args) == 2                                      # never replaces a run
    assert "--overwrite" in capsys.readouterr().err


def test_plan_command_writes_a_valid_config(tmp_path, capsys):
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps(_probe({8: 6.0, 16: 3.0}, tile=48)))
    out = tmp_path / "plan.yaml"
    args = ["plan", "--dataset", "shapes", "--option", "num_images=4", "--option", "size=48",
            "--budget", "25m", "--out", str(out), "--probe", str(probe), "--device", "cpu"]
    assert main(args) == 0
    assert load_config(out).data.options == {"num_images": 4, "size": 48}
    assert main(args) == 2 and "exists" in capsys.readouterr().err
    assert main([*args[:-4], "--budget", "soon", "--out", str(tmp_path / "b.yaml")]) == 2


def test_predict_and_evaluate_apply_the_cards_scale(tmp_path):
    import torch

    import unetlab
    from unetlab.card import build_card
    from unetlab.imageio import read_image, write_image
    from unetlab.models.serialization import save_model

    torch.manual_seed(0)
    net = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8), norm=None)
    path = save_model(net, tmp_path / "m.safetensors", card=build_card(net, scale=0.5))
    assert unetlab.load_model(path).unetlab_card["input"]["scale"] == 0.5
    image = (np.arange(64 * 96, dtype=np.uint8).reshape(64, 96) * 7) % 255
    write_image(tmp_path / "in.png", image)
    assert main(["predict", str(path), str(tmp_path / "in.png"), "--out", str(tmp_path / "o"),
                 "--tile-size", "32", "--no-progress"]) == 0
    assert read_image(tmp_path / "o" / "in_labels.png").shape == (64, 96)
    out = tmp_path / "e.json"
    assert main(["evaluate", str(path), "--dataset", "membranes", "--option", "num_images=1",
                 "--option", "size=48", "--json", str(out), "--no-boundary"]) == 0
    assert json.loads(out.read_text())["scale"] == 0.5


def test_predict_takes_a_scale_with_no_small_exact_tile_and_checks_the_tile_first(tmp_path,
                                                                                  capsys):
    """A scale the planner does not make (0.37 with this 2-level U-Net is exact only at
    200 px tiles, with a pooling divisor of 16 at 1,600) still
    predicts with ordinary tiles; a tile the model cannot take is one line, before any
    input."""
    import torch

    import unetlab
    from unetlab.card import build_card
    from unetlab.imageio import read_image, write_image
    from unetlab.inference.scaled import ScaledModel
    from unetlab.models.serialization import save_model

    torch.manual_seed(0)
    net = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8), norm=None)
    assert ScaledModel(net, 0.37).geometry().divisor == 2      # the model's own multiple
    assert ScaledModel(net, 0.5).geometry().divisor == 4       # exact: 4 px -> 2 px
    path = save_model(net, tmp_path / "m.safetensors", card=build_card(net, scale=0.37))
    image = (np.arange(70 * 90, dtype=np.uint8).reshape(70, 90) * 7) % 255
    write_image(tmp_path / "in.png", image)
    assert main(["predict", str(path), str(tmp_path / "in.png"), "--out", str(tmp_path / "o"),
                 "--tile-size", "64", "--no-progress"]) == 0
    assert read_image(tmp_path / "o" / "in_labels.png").shape == (70, 90)
    capsys.readouterr()
    assert main(["predict", str(path), str(tmp_path / "in.png"), "--out", str(tmp_path / "p"),
                 "--tile-size", "63", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--tile-size 63" in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "p" / "in_labels.png").exists()


@pytest.mark.parametrize("channels", [1, 3])
def test_plan_on_a_folder_without_val_split_holds_out_a_stated_fraction(tmp_path, channels):
    from unetlab.imageio import write_image

    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    for i in range(5):
        shape = (48, 64, 3) if channels == 3 else (48, 64)
        write_image(tmp_path / "d" / "images" / f"{i}.png",
                    rng.integers(0, 255, shape, dtype=np.uint8))
        mask = np.zeros((48, 64), np.uint8)
        mask[10 + i:20 + i, 5:40] = 255
        write_image(tmp_path / "d" / "masks" / f"{i}.png", mask)
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps(_probe({8: 6.0}, tile=48)))
    out = tmp_path / "plan.yaml"
    assert main(["plan", "--dataset", "folder", "--data", str(tmp_path / "d"), "--budget",
                 "10m", "--out", str(out), "--probe", str(probe), "--device", "cpu"]) == 0
    cfg = load_config(out)
    assert cfg.data.val_split == pytest.approx(0.2)
    assert "held out" in out.read_text()
    assert cfg.model.in_channels is None and cfg.data.tile_size <= 48


def _fake_steps(rates_by_mode):
    """A stand-in for the probe's timing: seconds per step by (amp, channels_last)."""
    tried = []

    def fake(width, depth, tile, batch, in_ch, classes, device, amp, seconds,
             channels_last=False):
        mode = ("bf16" if amp is not None else "none", channels_last)
        tried.append(mode)
        return 1.0 / (rates_by_mode[mode] / width)
    return fake, tried


@pytest.mark.parametrize("bf16", [False, True])
def test_probe_tries_bf16_only_where_the_cpu_has_it(tmp_path, monkeypatch, bf16):
    import unetlab.inference.cpu as cpu
    import unetlab.planning.probe as probe

    features = cpu.CpuFeatures("test cpu", avx2=True, bf16=bf16)
    monkeypatch.setattr(cpu, "cpu_features", lambda: features)
    fake, tried = _fake_steps({("none", False): 16.0, ("none", True): 17.0,
                               ("bf16", True): 48.0})
    monkeypatch.setattr(probe, "_step_seconds", fake)
    result = probe_machine(depth=1, tile=16, batch=2, in_channels=1, num_classes=2,
                           widths=(8, 16), cache_dir=tmp_path, seconds=0.01)
    if bf16:
        assert result["amp"] == "bf16" and result["channels_last"]
        assert result["steps_per_s"]["8"] == pytest.approx(6.0)   # measured in bf16
    else:
        # no native bf16: never timed; channels-last's 6% is under the 15% needed
        assert ("bf16", True) not in tried
        assert result["amp"] == "none" and not result["channels_last"]
        assert result["steps_per_s"]["8"] == pytest.approx(2.0)
    again = probe_machine(depth=1, tile=16, batch=2, in_channels=1, num_classes=2,
                          widths=(8, 16), cache_dir=tmp_path, seconds=0.01)
    assert again["cached"] and (again["amp"], again["channels_last"]) == \
        (result["amp"], result["channels_last"]) and again["steps_per_s"] == result["steps_per_s"]
    plan = make_plan(_fingerprint(), {**result, "tile": 192, "batch": 4}, 1800, dataset="x")
    cfg = config_from_dict(plan.config)
    assert cfg.train.amp == result["amp"] and cfg.train.channels_last == result["channels_last"]
    assert ("bf16" in plan.reasons["train.amp"]) == bf16


def test_a_saved_probe_without_modes_plans_full_precision():
    plan = make_plan(_fingerprint(), _probe({8: 4.0, 16: 2.0}), 1800, dataset="x")
    assert plan.config["train"]["amp"] == "none"
    assert plan.config["train"]["channels_last"] is False


@pytest.mark.parametrize("bf16", [False, True])
def test_amp_auto_on_a_cpu_uses_bf16_only_where_native(monkeypatch, caplog, bf16):
    import torch

    import unetlab.inference.cpu as cpu
    from unetlab.training.builder import resolve_amp

    features = cpu.CpuFeatures("test cpu", avx2=True, bf16=bf16)
    monkeypatch.setattr(cpu, "cpu_features", lambda: features)
    assert resolve_amp("auto", torch.device("cpu")) == (torch.bfloat16 if bf16 else None)
    assert resolve_amp("none", torch.device("cpu")) is None
    with caplog.at_level("WARNING", logger="unetlab.training.builder"):
        assert resolve_amp("bf16", torch.device("cpu")) == torch.bfloat16  # as asked, but
    assert ("emulated" in caplog.text) == (not bf16)      # said where it is slow


def test_a_saved_bf16_probe_is_refused_on_a_cpu_without_bf16(tmp_path, monkeypatch, capsys):
    import unetlab.inference.cpu as cpu

    features = cpu.CpuFeatures("test cpu", avx2=True, bf16=False)
    monkeypatch.setattr(cpu, "cpu_features", lambda: features)
    probe = tmp_path / "probe.json"
    args = ["plan", "--dataset", "membranes", "--option", "num_images=6", "--option",
            "size=48", "--budget", "20s", "--out", str(tmp_path / "p.yaml"), "--probe",
            str(probe)]
    probe.write_text(json.dumps({**_probe({8: 6.0}, tile=48), "amp": "bf16",
                                 "channels_last": True, "modes": {"bf16+cl": 6.0}}))
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "does not compute" in err and len(err.strip().splitlines()) == 1
    probe.write_text(json.dumps({**_probe({8: 6.0}, tile=48), "modes": [1, 2]}))
    assert main(args) == 2
    assert "malformed" in capsys.readouterr().err


def test_fit_measures_tta_only_when_the_budget_leaves_time():
    import unetlab
    from unetlab.data import build_dataset
    from unetlab.planning.fit import _tta_if_time
    from unetlab.planning.report import tta_sentence

    val = build_dataset("shapes", None, split="val", num_images=2, size=32)
    model = unetlab.create_model("unet", in_channels=3, num_classes=val.num_classes,
                         channels=[4, 8], norm="batch").eval()
    skipped = _tta_if_time(model, val, 1.0, eval_s=10.0, left_s=20.0)
    assert "measures" not in skipped and "~92s" in skipped["skipped"]  # 10 s x 8 x 1.15
    done = _tta_if_time(model, val, 1.0, eval_s=0.01, left_s=60.0)
    assert done["transforms"] == 8 and 0 <= done["measures"]["miou"] <= 1
    report = {"plan": {"train": {"best_metric": "pixel_error"}},
              "val_native": {"pixel_error": 0.08},
              "val_native_tta": {"measures": {"pixel_error": 0.07}, "transforms": 8,
                                 "seconds": 3.0}}
    assert "improves pixel_error" in tta_sentence(report) and "--tta" in tta_sentence(report)
    assert "worse" not in tta_sentence(report)
    report["val_native"].update(rand_error=0.089, miou=0.80, num_images=5)
    report["val_native_tta"]["measures"].update(rand_error=0.162, miou=0.81, num_images=5)
    assert "makes rand_error worse (0.0890 -> 0.1620)" in tta_sentence(report)
    assert "miou" not in tta_sentence(report)                  # better, so not named
    report["val_native"]["challenge_rand_threshold"] = 0.5     # a chosen threshold, not a
    report["val_native_tta"]["measures"]["challenge_rand_threshold"] = 0.3  # measure
    assert "threshold" not in tta_sentence(report)
    report["val_native_tta"]["measures"]["pixel_error"] = 0.09        # lower is better
    assert "does not improve" in tta_sentence(report)
    report["val_native_tta"] = skipped
    assert tta_sentence(report).startswith("Test-time augmentation not measured: would take")


def test_a_gpu_plan_feeds_the_gpu_from_loader_workers():
    """A cuda probe: 16 tiles per step, bf16, loader workers from the probed CPU count
    (none on a CPU); the config validates and renders with a reason for the workers."""
    fp = _fingerprint()
    gpu = {**_probe({16: 40.0, 32: 30.0, 48: 22.0, 64: 15.0}, device="cuda", tile=256,
                    batch=16), "amp": "bf16", "channels_last": True,
           "key": {"cpus": 16}, "modes": {"bf16": 12.0, "bf16+cl": 15.0}}
    plan = make_plan(fp, gpu, 600, dataset="isbi2012")
    cfg = config_from_dict(plan.config)
    assert cfg.data.batch_size == 16 and cfg.train.amp == "bf16" and cfg.train.channels_last
    assert cfg.data.num_workers == 8 and cfg.model.options["channels"][0] == 64
    assert "loader processes" in render_plan(plan, fp, gpu, 600)
    few = make_plan(fp, {**gpu, "key": {"cpus": 4}}, 600, dataset="isbi2012")
    assert few.config["data"]["num_workers"] == 2
    cpu = make_plan(fp, _probe({8: 4.0, 16: 2.0}), 600, dataset="isbi2012")
    assert cpu.config["data"]["num_workers"] == 0


def test_a_probe_cut_short_keeps_the_width_its_mode_comparison_measured(tmp_path):
    """The mode comparison measures the reference width (the widest on a GPU, where a
    510 s CamVid fit once planned width 16 because the time limit stopped the width loop
    first): that width stays among the rates whatever the limit."""
    res = probe_machine(depth=1, tile=16, batch=2, in_channels=1, num_classes=2,
                        widths=(8, 16, 24), cache_dir=tmp_path, seconds=0.01,
                        time_limit_s=0.0)
    assert set(res["steps_per_s"]) == {"8", "16"}       # 8 measured, 16 from the modes
    assert res["steps_per_s"]["16"] == res["modes"][
        ("bf16" if res["amp"] == "bf16" else "none") + ("+cl" if res["channels_last"] else "")]


def test_the_input_pipeline_caps_the_planned_steps():
    """Measured augmentation time counts: added to each step without workers, a ceiling
    from the workers on a GPU (the H200 CamVid fit made 25 steps/s, the probe said 110)."""
    from unetlab.planning.planner import effective_rates

    assert effective_rates({16: 10.0}, None, 4, 0) == {16: 10.0}
    assert effective_rates({16: 10.0}, 0.025, 4, 0)[16] == pytest.approx(5.0)   # 0.1+0.1 s
    capped = effective_rates({16: 110.0, 64: 50.0}, 0.02, 16, 8)
    assert capped == {16: pytest.approx(25.0), 64: pytest.approx(25.0)}
    fp = _fingerprint()
    gpu = {**_probe({16: 110.0, 64: 50.0}, device="cuda", tile=256, batch=16),
           "amp": "bf16", "channels_last": True, "key": {"cpus": 16}}
    free = make_plan(fp, gpu, 600, dataset="x")
    fed = make_plan(fp, gpu, 600, dataset="x", input_s_per_tile=0.02)
    assert fed.expected["steps"] < 0.6 * free.expected["steps"]
    assert fed.config["model"]["options"]["channels"][0] == 64     # wider costs nothing
    assert "sets the pace" in fed.reasons["data.num_workers"]
    assert fed.config["train"]["val_every"] < free.config["train"]["val_every"]
    cpu = make_plan(fp, _probe({8: 4.0, 16: 2.0}), 1800, dataset="x", input_s_per_tile=0.05)
    assert "ms added to each step" in cpu.reasons["data.num_workers"]
    assert make_plan(fp, _probe({8: 4.0, 16: 2.0}), 1800, dataset="x").config == make_plan(
        fp, _probe({8: 4.0, 16: 2.0}), 1800, dataset="x", input_s_per_tile=None).config


def test_measure_input_times_the_augmentation_of_decoded_tiles():
    from unetlab.planning.session import measure_input

    s = measure_input("membranes", None, {"num_images": 4, "size": 64}, "paper", 48,
                      time_limit_s=0.2)
    assert s is not None and 0 < s < 1.0
    assert measure_input("folder", "/nonexistent/unetlab", {}, "light", 48) is None


def test_a_saved_probe_reuses_its_input_time_only_for_the_same_data(tmp_path):
    """--probe probe.json gives the same plan again: the input pipeline's time travels
    with the probe, tied to the data and preset it was measured on."""
    from unetlab.planning.session import plan_dataset

    saved = _probe({8: 6.0, 16: 3.0}, tile=48)
    opts = {"num_images": 4, "size": 48}
    first = plan_dataset("membranes", None, opts, 60, probe=saved, count_spent=False)
    assert first.probe["input_s_per_tile"] > 0 and first.probe["input_for"]["tile"] == 48
    again = plan_dataset("membranes", None, opts, 60, probe=first.probe, count_spent=False)
    assert again.probe["input_s_per_tile"] == first.probe["input_s_per_tile"]
    assert again.plan.config == first.plan.config
    other = plan_dataset("membranes", None, {**opts, "seed": 3}, 60, probe=first.probe,
                         count_spent=False)
    assert other.probe["input_for"]["options"] != first.probe["input_for"]["options"]
    assert other.probe["input_s_per_tile"] != first.probe["input_s_per_tile"]  # re-timed
    # few images and a short budget: `paper` and `light` both timed, the plan is `light`
    # and counts light's time
    assert set(first.probe["input_s_by_preset"]) == {"paper", "light"}
    assert first.plan.config["data"]["augment"] == "light"
    assert again.probe["input_s_by_preset"] == first.probe["input_s_by_preset"]


def test_a_short_budget_plans_light_with_its_own_input_time():
    """Rule 6 decides on the steps the slower `paper` makes; falling back to `light`, the
    plan is made again with light's measured time (a wider network fits the steps)."""
    fp = _fingerprint()
    probe = _probe({8: 4.0, 16: 2.0, 24: 1.1, 32: 0.6})
    costed = make_plan(fp, probe, 1800, dataset="x", input_s_per_tile=0.05)
    both = make_plan(fp, probe, 1800, dataset="x", input_s_per_tile=0.05, light_input_s=0.002)
    assert costed.config["data"]["augment"] == both.config["data"]["augment"] == "light"
    # paper's 0.2 s a step left only width 8 its 2,500 steps; light's time allows 16
    width = [c.config["model"]["options"]["channels"][0] for c in (costed, both)]
    assert width == [8, 16] and both.expected["steps"] >= 2500
    assert "with `paper`" in costed.reasons["data.num_workers"]      # the time it counted
    assert "with `paper`" not in both.reasons["data.num_workers"]
    assert "2.0 ms" in both.reasons["data.num_workers"]
    assert both.reasons["data.augment"] == costed.reasons["data.augment"]


def test_an_interrupted_fit_resumes_and_reports(tmp_path, capsys, monkeypatch):
    from unetlab.training.trainer import Trainer

    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps(_probe({8: 6.0, 16: 3.0}, tile=48)))
    out = tmp_path / "run"
    save, at = Trainer.save, {}

    def save_then_interrupt(self, which, *a, **k):  # Ctrl-C right after a checkpoint
        result = save(self, which, *a, **k)
        if which == "last":
            at["step"], at["elapsed"] = self.step, self.elapsed_s
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(Trainer, "save", save_then_interrupt)
    assert main(["fit", "--dataset", "membranes", "--option", "num_images=6", "--option",
                 "size=48", "--budget", "20s", "--out", str(out), "--probe", str(probe),
                 "--no-progress", "--device", "cpu", "--seed", "3"]) == 130
    assert f"unetlab fit --resume --out {out}" in capsys.readouterr().err
    assert not (out / "report.json").exists() and (out / "fit.json").is_file()
    monkeypatch.setattr(Trainer, "save", save)

    assert main(["fit", "--resume", "--out", str(out), "--dataset", "membranes"]) == 2
    assert "leave out --dataset" in capsys.readouterr().err
    assert main(["fit", "--resume", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["sessions"] == 2 and report["seed"] == 3
    assert report["training"]["steps"] > at["step"]           # went on from the checkpoint
    assert report["training"]["elapsed_s"] > at["elapsed"]  # the time trained before counts
    assert report["timings"]["train_s"] >= report["training"]["elapsed_s"]
    assert report["training"]["elapsed_s"] <= report["plan"]["train"]["time_budget_s"] + 5
    assert report["val_native"]["pixel_error"] is not None
    assert "resumed, 2 sessions" in (out / "report.md").read_text()
    steps = [int(float(r["step"])) for r in
             csv.DictReader((out / "metrics.csv").open())]
    assert steps == sorted(steps) and steps[0] <= at["step"] < steps[-1]
    capsys.readouterr()
    assert main(["fit", "--resume", "--out", str(out)]) == 2      # finished: nothing to do
    assert "finished" in capsys.readouterr().err
    assert main(["fit", "--resume", "--out", str(tmp_path)]) == 2  # not a fit run folder
    assert "no fit.json" in capsys.readouterr().err
    assert main(["fit", "--out", str(tmp_path / "x")]) == 2
    assert "--dataset and --budget are required" in capsys.readouterr().err


def test_a_fit_interrupted_in_its_final_evaluation_resumes_without_training(
        tmp_path, capsys, monkeypatch):
    import unetlab.planning.fit as fit_module

    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps(_probe({8: 6.0, 16: 3.0}, tile=48)))
    out = tmp_path / "run"
    finish = fit_module._finish

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(fit_module, "_finish", interrupted)
    assert main(["fit", "--dataset", "membranes", "--option", "num_images=6", "--option",
                 "size=48", "--budget", "20s", "--out", str(out), "--probe", str(probe),
                 "--no-progress", "--device", "cpu"]) == 130
    steps = json.loads((out / "summary.json").read_text())["steps"]
    monkeypatch.setattr(fit_module, "_finish", finish)
    monkeypatch.setattr("unetlab.training.train", lambda *a, **k: pytest.fail("trained again"))
    assert main(["fit", "--resume", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["steps"] == steps and report["val_native"] is not None
    assert report["sessions"] == 1               # nothing was trained again
    assert report["timings"]["train_s"] == pytest.approx(report["training"]["elapsed_s"],
                                                         abs=0.01)


def test_the_report_says_how_best_was_chosen_and_what_last_scored():
    from unetlab.planning.report import selection, selection_sentence

    history = [{"step": 5, "train_loss": 0.9},                  # a training-only row
               {"step": 10, "pixel_error": 0.09}, {"step": 20, "pixel_error": 0.07},
               {"step": 30, "pixel_error": 0.08}]
    sel = selection(history, "pixel_error", "min")
    assert sel == {"metric": "pixel_error", "validations": 3, "best_step": 20, "best": 0.07,
                   "last_step": 30, "last": 0.08}
    text = selection_sentence({"selection": sel, "training": {"steps": 30}})
    assert "best pixel_error of 3 validations" in text and "step 20, 0.0700" in text
    assert "(step 30, the weights in checkpoints/last) scored 0.0800" in text
    text = selection_sentence({"selection": sel, "training": {"steps": 31}})
    assert "(step 30) scored 0.0800" in text                # last validation != last step
    up = selection([*history[:2], {"step": 20, "miou": 0.5}, {"step": 30, "miou": 0.6}],
                   "miou", "max")
    assert "no choice among them" in selection_sentence({"selection": up, "training": {}})
    assert selection(history[:1], "pixel_error", "min") is None
    assert selection_sentence({"selection": {**sel, "validations": 1}}) == ""


def test_the_cli_builds_the_backend_for_the_input_it_will_feed(monkeypatch):
    """`auto`'s probe and OpenVINO's Winograd layers are chosen for the shape the run
    feeds the model: --batch-size tiles of the tile size (predict's 256 by default, or
    evaluate's first image), scaled as the card says."""
    from types import SimpleNamespace

    import unetlab
    from unetlab.card import build_card
    from unetlab.commands import _common

    net = unetlab.create_model("unet", in_channels=3, num_classes=2, channels=(4, 8))
    net.unetlab_card = build_card(net, scale=0.5)
    seen = []
    monkeypatch.setattr(_common, "optimized", lambda model, **kw: seen.append(kw) or model)
    args = SimpleNamespace(backend="auto", precision="auto", calibration=None)
    _common.inference_model(net, args, device="cpu", batch_size=4)
    _common.inference_model(net, args, device="cpu", tile_size=96, batch_size=2)
    _common.inference_model(net, args, device="cpu", size=(300, 200))
    assert [kw["probe_shape"] for kw in seen] == [(4, 3, 128, 128), (2, 3, 48, 48),
                                                  (1, 3, 150, 150)]  # square, as evaluated
    # evaluate's whole image: the square tile the evaluation runs (a valid-padding
    # network's input covering the largest side); a given tile is the input as it is
    from unetlab.models.unet import valid_input_size

    valid = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8, 16),
                                 padding="valid")
    _common.inference_model(valid, args, device="cpu", size=(250, 201))
    side = valid_input_size(250, 3)
    assert seen[-1]["probe_shape"] == (1, 1, side, side)
    _common.inference_model(valid, args, device="cpu", tile_size=side, batch_size=2)
    assert seen[-1]["probe_shape"] == (2, 1, side, side)


def test_a_class_only_in_the_held_out_images_is_named(tmp_path, caplog):
    """Flat folder, class 2 only in the last image by name: the fallback hold-out
    validates on it and training never sees it; the fingerprint, the plan and the log
    say so."""

    from unetlab.data import build_dataset
    from unetlab.planning.fingerprint import compute_fingerprint

    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir(parents=True)
    for i in range(10):
        mask = np.zeros((32, 32), np.uint8)
        mask[4:12, 4:12] = 1
        if i == 9:
            mask[20:28, 20:28] = 2
        Image.fromarray((mask * 60).astype(np.uint8)).save(root / "images" / f"r{i:02d}.png")
        Image.fromarray(mask).save(root / "masks" / f"r{i:02d}.png")
    data = build_dataset("folder", root=root, split="train", num_classes=3,
                         class_names=["bg", "a", "rare"])
    fp = compute_fingerprint(data, name="folder", has_own_val=False)
    assert fp.held_out_only == ["rare"]
    assert compute_fingerprint(data, name="folder", has_own_val=True).held_out_only == []
    plan = make_plan(fp, _probe({8: 8.0, 16: 4.0}), 600, dataset="folder")
    assert "WARNING: rare only in those" in plan.reasons["data.val_split"]


@pytest.mark.parametrize("mean, std, normalised", [
    ([-528.7], [410.0], True),      # CT in Hounsfield units, stored as floats
    ([0.03], [0.008], True),        # 12-bit data in 16-bit files
    ([0.49], [0.17], False),        # ISBI-like: in unit range, left alone
])
def test_folder_images_far_from_unit_range_are_normalised(mean, std, normalised):
    fp = _fingerprint(intensity_mean=mean, intensity_std=std)
    plan = make_plan(fp, _probe({8: 8.0, 16: 4.0}), 600, dataset="folder")
    options = plan.config["data"]["options"]
    assert ("normalize" in options) == normalised
    if normalised:
        assert options["normalize"] == {"mean": mean, "std": std}
        assert "far from the unit range" in plan.reasons["data.options"]
        config_from_dict(plan.config)
    # other formats, or a normalisation the user gave, are left as they are
    assert "normalize" not in make_plan(fp, _probe({8: 8.0}), 600,
                                        dataset="isbi2012").config["data"]["options"]
    given = make_plan(fp, _probe({8: 8.0}), 600, dataset="folder",
                      data_options={"normalize": "imagenet"})
    assert given.config["data"]["options"]["normalize"] == "imagenet"



def test_the_probe_times_the_median_step_so_one_slowed_step_does_not_move_it():
    """Another process that slows one step of the probe (a shared machine) moved the
    mean, and with it the plan's width; the median step stays."""
    import time

    from unetlab.planning.probe import median_step_seconds

    calls = []

    def step():
        calls.append(1)
        time.sleep(1.0 if len(calls) == 2 else 0.002)

    took = median_step_seconds(step, seconds=5.0, max_steps=10)
    assert len(calls) == 10 and took < 0.03
