"""``unetlab predict`` and ``unetlab evaluate`` as 2 CPU processes (gloo, as torchrun starts
them) give byte-identical files and JSON to one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import unetlab
from unetlab.cli import main
from unetlab.inference.manifest import MANIFEST
from unetlab.inference.tiling import iter_bands, plan_tiles, split_rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(args: list[str], timeout: int = 240) -> list[tuple[int, str, str]]:
    """Run ``python -m unetlab ARGS`` as ranks 0 and 1 of a 2-process gloo job, with the
    environment torchrun gives its processes."""
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        procs.append(subprocess.Popen([sys.executable, "-m", "unetlab", *args], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        results.append((p.returncode, out, err))
    if any("Address already in use" in r[2] for r in results):
        pytest.skip("no free port for the gloo rendezvous")
    return results


def _files(folder) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


@pytest.mark.parametrize("padding,tile", [("same", 32), ("valid", 60)])
def test_row_bands_are_bit_identical_to_the_whole_image(padding, tile):
    torch.manual_seed(0)
    model = unetlab.create_model("unet", in_channels=1, num_classes=3, channels=(4, 8),
                                 padding=padding).eval()
    image = np.random.default_rng(0).random((1, 131, 70)).astype(np.float32)
    plans = plan_tiles(image.shape[1:], tile, 0.25, model=model)
    with torch.no_grad():
        whole = torch.cat([v for _, v in iter_bands(model, image, plans, batch_size=2)], 1)
        for parts in (2, 3):
            bands = split_rows(plans[0], parts)
            assert bands[0][0] == 0 and bands[-1][1] == 131
            assert all(a[1] == b[0] for a, b in zip(bands, bands[1:]))
            got = [v for r in bands
                   for _, v in iter_bands(model, image, plans, batch_size=2, rows=r)]
            assert torch.equal(torch.cat(got, 1), whole)


def test_two_processes_predict_the_same_files_as_one(tmp_path):
    torch.manual_seed(0)
    model = unetlab.create_model("unet", in_channels=1, num_classes=3, channels=(4, 8))
    ckpt = unetlab.save_model(model.eval(), tmp_path / "m.safetensors")
    data, rng = tmp_path / "in", np.random.default_rng(0)
    (data / "sub").mkdir(parents=True)
    for name, (h, w) in {"a.png": (40, 60), "b.png": (70, 50), "sub/a.png": (33, 45),
                         "c.png": (64, 64), "wide.png": (100, 160)}.items():
        Image.fromarray((rng.random((h, w)) * 255).astype(np.uint8)).save(data / name)
    tifffile.imwrite(data / "stack.tif", (rng.random((3, 40, 50)) * 65535).astype(np.uint16),
                     photometric="minisblack")
    tifffile.imwrite(data / "big.tif", (rng.random((200, 96)) * 255).astype(np.uint8))
    (data / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    # images over 15000 pixels (big.tif, wide.png) are split in row bands across ranks
    args = ["predict", str(ckpt), str(data), "--recursive", "--tile-size", "32",
            "--probabilities", "--no-progress", "--split-above", "15000"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 2  # bad.png failed
    (r0, out0, err0), (r1, out1, err1) = _two_processes([*args, "--out",
                                                         str(tmp_path / "two")])
    assert (r0, r1) == (2, 1), err0[-2000:] + err1[-2000:]
    assert "1 of 8 input(s) failed" in err0 and err1 == ""
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert len(one) == 7 * 2 + 6  # labels and probs of 7; overlays of the 6 2-D images
    assert one.keys() == two.keys() and all(one[k] == two[k] for k in one)
    manifest = json.loads((tmp_path / "two" / MANIFEST).read_text())
    by_key = {e["key"]: e for e in manifest["inputs"]}
    assert by_key["big.tif"]["rank"] == by_key["wide.png"]["rank"] == "all"
    assert {by_key[k]["rank"] for k in ("a.png", "b.png", "c.png", "stack.tif")} == {0, 1}
    assert by_key["bad.png"]["status"] == "failed" and "bad.png" in by_key["bad.png"]["error"]
    assert manifest["counts"] == {"pending": 0, "complete": 7, "failed": 1}
    assert out0.count("manifest:") == 1 and "manifest:" not in out1
    # every row of the banded image was written (the files start as zeros)
    probs = tifffile.imread(tmp_path / "two" / "big_probs.tif")
    assert probs.shape == (3, 200, 96) and np.allclose(probs.sum(0), 1, atol=1e-5)
    # the user repairs bad.png; --resume predicts only it, as 1 and as 2 processes
    Image.fromarray((rng.random((30, 40)) * 255).astype(np.uint8)).save(data / "bad.png")
    assert main([*args, "--out", str(tmp_path / "one"), "--resume"]) == 0
    results = _two_processes([*args, "--out", str(tmp_path / "two"), "--resume"])
    assert [r[0] for r in results] == [0, 0], results[0][2][-2000:]
    printed = [line for r in results for line in r[1].splitlines() if ".png:" in line
               or ".tif:" in line]
    assert len(printed) == 1 and "bad.png: " in printed[0]
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert len(one) == 8 * 2 + 7 and one == two
    manifest = json.loads((tmp_path / "two" / MANIFEST).read_text())
    assert manifest["counts"] == {"pending": 0, "complete": 8, "failed": 0}


def test_two_processes_evaluate_to_the_same_json(tmp_path):
    # binary membranes: the confusion matrix, boundary F1, Rand error and the leaderboard's
    # threshold-swept counts all go through the reduction
    torch.manual_seed(0)
    model = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(4, 8))
    ckpt = unetlab.save_model(model.eval(), tmp_path / "m.safetensors")
    args = ["evaluate", str(ckpt), "--dataset", "membranes", "--option", "num_images=3",
            "--option", "size=48", "--device", "cpu"]
    outputs = {n: ["--json", str(tmp_path / f"{n}.json"), "--per-image-csv",
                   str(tmp_path / f"{n}.csv")] for n in ("one", "two")}
    assert main([*args, *outputs["one"]]) == 0
    results = _two_processes([*args, *outputs["two"]])
    assert [r[0] for r in results] == [0, 0], results[0][2][-2000:]
    assert results[1][1] == ""  # only rank 0 prints and writes
    for ext in ("json", "csv"):
        assert (tmp_path / f"one.{ext}").read_bytes() == (tmp_path / f"two.{ext}").read_bytes()
    doc = json.loads((tmp_path / "two.json").read_text())
    assert doc["num_images"] == 3 and doc["num_pixels"] == 3 * 48 * 48
    assert doc["rand_error"] is not None and doc["challenge_rand_error"] is not None
