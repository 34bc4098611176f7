"""Config: strict keys with suggestions, coercion, overrides, YAML round trip, and every
shipped config in configs/ loads and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetlab.cli import main
from unetlab.config import (
    Config,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_config,
    load_config,
    parse_override,
    save_config,
)
from unetlab.errors import UnetlabError

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_defaults_are_valid_and_round_trip(tmp_path):
    cfg = load_config()
    assert cfg == Config()
    path = save_config(cfg, tmp_path / "c.yaml")
    assert load_config(path) == cfg
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_unknown_key_names_nearest_valid_key():
    with pytest.raises(UnetlabError, match=r"'train.epoch' \(did you mean 'epochs'\?\)"):
        config_from_dict({"train": {"epoch": 3}})
    with pytest.raises(UnetlabError, match=r"did you mean 'optim'"):
        config_from_dict({"optimizer": {"lr": 1}})


def test_types_are_coerced_and_checked():
    cfg = config_from_dict({"optim": {"lr": "1e-3"}, "train": {"epochs": 5.0, "amp": "bf16"},
                            "data": {"val_split": 0.2}})
    assert cfg.optim.lr == pytest.approx(0.001) and isinstance(cfg.train.epochs, int)
    assert cfg.data.val_split == 0.2
    with pytest.raises(UnetlabError, match="train.epochs must be an integer"):
        config_from_dict({"train": {"epochs": "many"}})
    with pytest.raises(UnetlabError, match="train.epochs must be an integer"):
        config_from_dict({"train": {"epochs": 2.5}})
    with pytest.raises(UnetlabError, match="must be true or false"):
        config_from_dict({"train": {"progress": "maybe"}})


def test_choices_and_ranges_are_validated():
    with pytest.raises(UnetlabError, match=r"optim.name must be one of adam, adamw, sgd.*'adam'"):
        config_from_dict({"optim": {"name": "adm"}})
    with pytest.raises(UnetlabError, match="train.amp"):
        config_from_dict({"train": {"amp": "fp8"}})
    with pytest.raises(UnetlabError, match="data.batch_size must be positive"):
        config_from_dict({"data": {"batch_size": 0}})
    with pytest.raises(UnetlabError, match="never stops"):
        config_from_dict({"train": {"epochs": None}})
    with pytest.raises(UnetlabError, match="fraction must be in"):
        config_from_dict({"data": {"val_split": 1.5}})


def test_dotted_overrides_parse_yaml_values():
    assert parse_override("train.epochs=50") == (["train", "epochs"], 50)
    assert parse_override("optim.lr=1e-4") == (["optim", "lr"], 1e-4)
    assert parse_override("model.options.channels=[8,16]") == (
        ["model", "options", "channels"], [8, 16])
    assert parse_override("data.root=null") == (["data", "root"], None)
    data = apply_overrides({"train": {"epochs": 3}}, ["train.epochs=7", "model.options.norm=group"])
    assert data == {"train": {"epochs": 7}, "model": {"options": {"norm": "group"}}}
    cfg = load_config(None, ["train.epochs=7", "optim.name=sgd"])
    assert cfg.train.epochs == 7 and cfg.optim.name == "sgd" and cfg.optim.momentum == 0.99
    with pytest.raises(UnetlabError, match="section.key=value"):
        parse_override("train.epochs")
    with pytest.raises(UnetlabError, match="did you mean 'train'"):
        load_config(None, ["trian.epochs=3"])


def test_yaml_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: 3\n")
    with pytest.raises(UnetlabError, match="bad.yaml: invalid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  epocs: 3\n")
    with pytest.raises(UnetlabError, match=r"typo.yaml: unknown config key 'train.epocs'"):
        load_config(typo)
    with pytest.raises(UnetlabError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_train_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    assert main(["train", "--set", "train.epoch=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unetlab train: error: unknown config key 'train.epoch'")
    assert "\n" not in err
    assert main(["train", "--print-config", "--set", "train.epochs=9"]) == 0
    assert "epochs: 9" in capsys.readouterr().out


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads_and_validates(path):
    import yaml

    from unetlab import model_options
    from unetlab.data.transforms import list_presets
    from unetlab.losses import list_losses

    raw = yaml.safe_load(path.read_text())
    if "base" in raw:  # a comparison harness file: its "base" is a training config
        cfg = config_from_dict(raw["base"])
    else:
        cfg = load_config(path)
    assert set(cfg.model.options) <= set(model_options(cfg.model.name)), cfg.model.options
    assert cfg.loss.name in list_losses()
    assert cfg.data.augment in list_presets()
    assert "out_dir" in dump_config(cfg)


def test_there_are_the_promised_configs():
    names = {p.stem for p in CONFIGS}
    expected = {"membranes", "isbi2012_unet_paper", "voc_unet", "cityscapes_unet"} | {
        f"camvid_{a}" for a in ("unet", "resunet", "attention_unet", "segnet",
                                "segnet_basic", "fcn8s")}
    assert expected <= names
