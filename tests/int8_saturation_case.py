"""Run by tests/test_inference_openvino.py in a child process with oneDNN held to AVX2
kernels (``ONEDNN_MAX_CPU_ISA=AVX2``), whose int8 products saturate without VNNI: prints
the argmax agreement of unetlab's int8 with fp32 and of NNCF's default quantization."""

from __future__ import annotations

import copy
import json
import logging

import nncf
import torch

import unetlab
from unetlab.inference import optimize_for_inference
from unetlab.inference.export import fold_batch_norm
from unetlab.inference.openvino import _quiet_nncf, compile_model, convert

torch.set_num_threads(2)
nncf.set_log_level(logging.ERROR)
torch.manual_seed(0)
model = unetlab.create_model("unet", in_channels=1, num_classes=12,
                             channels=(16, 32, 64, 128), norm="batch").eval()
calibration = [torch.rand(4, 1, 128, 128) for _ in range(2)]
x = torch.rand(4, 1, 128, 128)
with torch.no_grad():
    ref = model(x).argmax(1)
ours = optimize_for_inference(model, backend="openvino", precision="int8",
                              calibration=calibration)
with _quiet_nncf(nncf):  # NNCF's defaults (overflow fix on the first layer only)
    plain = nncf.quantize(convert(fold_batch_norm(copy.deepcopy(model))),
                          nncf.Dataset([c.numpy() for c in calibration]), subset_size=2)
default = torch.from_numpy(compile_model(plain, "int8")(x.numpy())[0]).argmax(1)
print(json.dumps({"ours": float((ours(x).argmax(1) == ref).float().mean()),
                  "nncf_default": float((default == ref).float().mean()),
                  "overflow_fix": ours.optimization["calibration"]["overflow_fix"]}))
