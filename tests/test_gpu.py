"""The CUDA paths: run on a lent GPU machine (benchmarks/gpu_fit.sh), skipped elsewhere.

bf16 autocast in channels-last with loader workers, the probe's GPU modes (and its
widest width kept when cut short), tiled inference on the GPU against the CPU, and
`predict --device cuda`.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

import unetlab
from training_helpers import tiny_overrides
from unetlab.cli import main
from unetlab.config import load_config
from unetlab.inference.tiling import predict_tiled
from unetlab.planning import probe_machine
from unetlab.training import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_bf16_channels_last_training_with_workers(tmp_path):
    out = tmp_path / "run"
    extra = ["train.device=cuda", "train.amp=bf16", "train.channels_last=true",
             "data.num_workers=2", "optim.lr=0.003"]
    summary = train(load_config(None, tiny_overrides(out, epochs=6, images=16, extra=extra)))
    assert summary["reason"] == "finished" and summary["steps"] == 24
    with open(out / "metrics.csv") as f:
        losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 6 and losses[-1] < losses[0]      # it learns under bf16
    assert (out / "checkpoints" / "best" / "model.safetensors").is_file()


def test_the_gpu_probe_compares_layouts(tmp_path):
    res = probe_machine(depth=3, tile=64, batch=4, in_channels=1, num_classes=2,
                        device="cuda", widths=(8, 16), cache_dir=tmp_path, seconds=0.05)
    assert res["device"] == "cuda" and res["amp"] == "bf16"
    assert set(res["modes"]) == {"bf16", "bf16+cl"} and all(res["modes"].values())
    assert all(v > 0 for v in res["steps_per_s"].values())


def test_a_gpu_probe_cut_short_keeps_the_widest_width(tmp_path):
    res = probe_machine(depth=3, tile=64, batch=4, in_channels=1, num_classes=2,
                        device="cuda", widths=(8, 16, 32), cache_dir=tmp_path, seconds=0.05,
                        time_limit_s=0.0)
    assert "32" in res["steps_per_s"] and "8" in res["steps_per_s"]


def test_tiled_inference_on_the_gpu_matches_the_cpu():
    torch.manual_seed(0)
    net = unetlab.create_model("unet", in_channels=1, num_classes=3,
                               channels=(8, 16, 32), norm="batch").eval()
    image = np.random.default_rng(0).random((1, 200, 300)).astype(np.float32)
    cpu = predict_tiled(net, image, tile_size=64, output="probabilities", device="cpu")
    gpu = predict_tiled(net.cuda(), image, tile_size=64, output="probabilities",
                        device="cuda")
    assert torch.allclose(cpu, gpu.cpu(), atol=2e-3)


def test_predict_command_on_cuda(tmp_path):
    net = unetlab.create_model("unet", in_channels=1, num_classes=2, channels=(8, 16, 32))
    ckpt = unetlab.save_model(net, tmp_path / "m.safetensors")
    Image.fromarray((np.random.default_rng(1).random((70, 90)) * 255).astype(np.uint8)).save(
        tmp_path / "a.png")
    assert main(["predict", str(ckpt), str(tmp_path / "a.png"), "--out", str(tmp_path / "o"),
                 "--tile-size", "32", "--device", "cuda", "--no-progress"]) == 0
    assert np.asarray(Image.open(tmp_path / "o" / "a_labels.png")).shape == (70, 90)
