"""A CPU run killed with SIGKILL and resumed ends exactly like an uninterrupted one."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from training_helpers import assert_same_weights, tiny_overrides, weights
from unetlab.cli import main

VAL_KEYS = ("epoch", "step", "train_loss", "val_loss", "miou", "dice.1", "pixel_error",
            "rand_error", "lr")


def _cmd(out, *extra):
    args = [sys.executable, "-m", "unetlab", "train"]
    for o in tiny_overrides(out, epochs=3, images=8, batch=2):
        args += ["--set", o]
    return [*args, *extra]


def _rows(out):
    return [{k: r[k] for k in VAL_KEYS} for r in csv.DictReader(open(out / "metrics.csv"))]


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.slow  # three interpreter start-ups (~10 s on an idle 2-core machine)
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(_cmd(ref), check=True, env=_env(), capture_output=True)

    proc = subprocess.Popen(_cmd(killed), env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    state = killed / "checkpoints" / "last" / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(state.read_text())["epoch"] >= 1:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    done = json.loads(state.read_text())["epoch"]
    assert 1 <= done < 3

    subprocess.run([*_cmd(killed), "--resume"], check=True, env=_env(), capture_output=True)
    assert_same_weights(weights(ref), weights(killed))
    assert_same_weights(weights(ref, "best"), weights(killed, "best"))
    assert _rows(ref) == _rows(killed)
    assert len(_rows(ref)) == 3


def test_resume_without_checkpoint_is_a_one_line_error(tmp_path, capsys):
    args = [a for o in tiny_overrides(tmp_path / "none") for a in ("--set", o)]
    assert main(["train", *args, "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("unetlab train: error: cannot resume: no checkpoint at")
    assert "\n" not in err


def test_resume_with_another_architecture_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    args = [a for o in tiny_overrides(out, epochs=1) for a in ("--set", o)]
    assert main(["train", *args]) == 0
    capsys.readouterr()
    assert main(["train", *args, "--set", "model.name=resunet", "--set", "train.epochs=2",
                 "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.name: 'unet' -> 'resunet'" in err and "\n" not in err
    # what the run trains cannot change on resume: the saved config would say what was
    # not done (a new lr was recorded, the restored optimizer kept the old one)
    for change in ("optim.lr=0.5", "loss.name=focal", "train.seed=7"):
        assert main(["train", *args, "--set", change, "--set", "train.epochs=2",
                     "--resume"]) == 2
        err = capsys.readouterr().err
        assert "cannot resume with changed settings: " + change.split("=")[0] in err
    (out / "checkpoints" / "last" / "optimizer.safetensors").write_bytes(b"\x00" * 10)
    assert main(["train", *args, "--set", "train.epochs=2", "--resume"]) == 2
    assert "optimizer.safetensors is corrupt" in capsys.readouterr().err


def test_resume_from_saved_config_continues_to_more_epochs(tmp_path, capsys):
    out = tmp_path / "run"
    args = [a for o in tiny_overrides(out, epochs=1) for a in ("--set", o)]
    assert main(["train", *args]) == 0
    assert main(["train", "--out", str(out), "--resume", "--set", "train.epochs=2"]) == 0
    rows = list(csv.DictReader(open(out / "metrics.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert "run folder:" in capsys.readouterr().out


def test_ctrl_c_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import unetlab.training

    out = tmp_path / "run"
    args = [a for o in tiny_overrides(out, epochs=1) for a in ("--set", o)]
    assert main(["train", *args]) == 0

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(unetlab.training, "train", interrupted)
    capsys.readouterr()
    assert main(["train", *args, "--set", "train.epochs=2", "--resume"]) == 130
    assert f"unetlab train --out {out} --resume" in capsys.readouterr().err


def test_a_python_resume_with_tuple_options_and_a_new_val_cadence_is_accepted(tmp_path):
    """Tuples become lists in the saved state; watching settings may change."""
    from unetlab.config import load_config
    from unetlab.training import train

    cfg = load_config(None, tiny_overrides(tmp_path / "run", epochs=1))
    cfg.model.options["channels"] = (8, 16, 32)
    train(cfg)
    cfg = load_config(None, tiny_overrides(tmp_path / "run", epochs=2,
                                           extra=("train.val_every=2",)))
    cfg.model.options["channels"] = (8, 16, 32)
    assert train(cfg, resume=True)["epochs"] == 2
