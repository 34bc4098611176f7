"""unetlab: the U-Net family for semantic segmentation, with FCN and SegNet.

Public API::

    model = unetlab.create_model("unet", in_channels=1, num_classes=2)
    unetlab.list_models()
    unetlab.save_model(model, "model.safetensors"); unetlab.load_model("model.safetensors")

Subpackages (imported on first use): ``unetlab.losses``, ``unetlab.metrics``,
``unetlab.data``, ``unetlab.inference``, ``unetlab.training``.
"""

from __future__ import annotations

import importlib

from .models.registry import create_model, list_models, model_options, register_model
from .models.serialization import load_model, save_model

__version__ = "0.1.0"
__all__ = [
    "__version__",
    "create_model",
    "list_models",
    "load_model",
    "model_options",
    "register_model",
    "save_model",
]

_SUBMODULES = {"losses", "metrics", "data", "inference", "training", "models", "figures", "card",
               "preprocess",
               "config", "compare", "plotting"}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'unetlab' has no attribute {name!r}")
