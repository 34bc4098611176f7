"""Run by tests/test_inference_openvino.py in a child process with oneDNN held to AVX2
kernels (``ONEDNN_MAX_CPU_ISA=AVX2``), whose int8 products saturate without VNNI: prints
the argmax agreement with fp32 of unetlab's quantization with NNCF's overflow fix on
every layer (its default) and on the first layer only (NNCF's default), all else equal."""

from __future__ import annotations

import copy
import json

import torch

import unetlab
from unetlab.inference import optimize_for_inference
from unetlab.inference.export import fold_batch_norm
from unetlab.inference.openvino import calibration_inputs, compile_model, convert, quantize

torch.set_num_threads(2)
torch.manual_seed(0)
model = unetlab.create_model("unet", in_channels=1, num_classes=12,
                             channels=(16, 32, 64, 128), norm="batch").eval()
calibration = [torch.rand(4, 1, 128, 128) for _ in range(2)]
x = torch.rand(4, 1, 128, 128)
with torch.no_grad():
    ref = model(x).argmax(1)
inputs = calibration_inputs(calibration, model)
folded = fold_batch_norm(copy.deepcopy(model))


def agreement(fix: str) -> float:
    compiled = compile_model(quantize(convert(copy.deepcopy(folded)), inputs,
                                      overflow_fix=fix), "int8")
    return float((torch.from_numpy(compiled(x.numpy())[0]).argmax(1) == ref).float().mean())


ours = optimize_for_inference(model, backend="openvino", precision="int8",
                              calibration=calibration)
print(json.dumps({"every_layer": agreement("enable"),
                  "first_layer_only": agreement("first_layer_only"),
                  "default_runner": float((ours(x).argmax(1) == ref).float().mean()),
                  "overflow_fix": ours.optimization["calibration"]["overflow_fix"]}))
