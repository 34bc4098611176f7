"""Inference: overlap-tile prediction of images of any size, streaming prediction of
files larger than memory, and export / optimisation of trained models.

``predict_tiled(model, image, *, tile_size, overlap=0.25, blend="gaussian", tta=False,
batch_size=4)`` and ``optimize_for_inference(model, backend="torch"|"onnxruntime")``
are the entry points; see :mod:`.tiling`, :mod:`.predictor` and :mod:`.export`.
"""

from .export import export_onnx, export_torchscript, fold_batch_norm, optimize_for_inference
from .palette import default_palette, overlay
from .predictor import predict_file
from .tiling import plan_tiles, predict_tiled, reflect_indices, window_1d

__all__ = [
    "default_palette",
    "export_onnx",
    "export_torchscript",
    "fold_batch_norm",
    "optimize_for_inference",
    "overlay",
    "plan_tiles",
    "predict_file",
    "predict_tiled",
    "reflect_indices",
    "window_1d",
]
