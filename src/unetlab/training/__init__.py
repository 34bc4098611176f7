"""Training: the explicit loop, checkpoints, distributed data parallel.

>>> from unetlab.config import load_config
>>> from unetlab.training import train
>>> summary = train(load_config("configs/membranes.yaml", ["train.epochs=2"]))
"""

from .checkpoint import load_checkpoint, save_checkpoint
from .trainer import Trainer, TrainingDiverged, train

__all__ = ["Trainer", "TrainingDiverged", "load_checkpoint", "save_checkpoint", "train"]
