"""The model zoo: U-Net and its family, FCN and SegNet, behind one registry."""

from .blocks import AttentionGate, DoubleConv, ResidualUnit, Upsample, center_crop
from .fcn import FCN, bilinear_kernel
from .registry import create_model, list_models, model_options, register_model
from .segnet import SegNet
from .unet import UNet, valid_input_size, valid_output_size

__all__ = [
    "FCN",
    "AttentionGate",
    "DoubleConv",
    "ResidualUnit",
    "SegNet",
    "UNet",
    "Upsample",
    "bilinear_kernel",
    "center_crop",
    "create_model",
    "list_models",
    "model_options",
    "register_model",
    "valid_input_size",
    "valid_output_size",
]
