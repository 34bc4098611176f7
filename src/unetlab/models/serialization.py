"""Save and load models as one safetensors file whose metadata holds the build config.

No pickle anywhere: the weights are plain tensors and the config is JSON, so
``load_model`` can rebuild the exact model without the training code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from .registry import create_model

MODEL_FILE = "model.safetensors"
CONFIG_KEY = "unetlab_model"


def model_config(model: nn.Module) -> dict:
    """The registry config of a model made by ``create_model`` (ValueError otherwise)."""
    config = getattr(model, "unetlab_config", None)
    if config is None:
        raise ValueError("this model was not built by unetlab.create_model; cannot save its config")
    return config


def save_model(model: nn.Module, path, metadata: dict | None = None) -> Path:
    """Write weights and build config to ``path`` (a ``.safetensors`` file, or a folder
    that receives ``model.safetensors``), atomically: a temp file, then a rename."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path.mkdir(parents=True, exist_ok=True)
        path = path / MODEL_FILE
    meta = {CONFIG_KEY: json.dumps(model_config(model))}
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file(state, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def resolve_model_file(path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise ValueError(f"no model file at {path}")
    return path


def read_metadata(path) -> dict:
    """Metadata of a saved model, JSON values decoded."""
    path = resolve_model_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file ({exc})") from None
    out = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_model(path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model saved by :func:`save_model` (a file, or a checkpoint folder).

    The model is returned in eval mode. ValueError for a missing, corrupt or foreign file.
    """
    path = resolve_model_file(path)
    meta = read_metadata(path)
    config = meta.get(CONFIG_KEY)
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"{path} holds no unetlab model config (was it saved by unetlab?)")
    model = create_model(
        config["name"],
        in_channels=config["in_channels"],
        num_classes=config["num_classes"],
        spatial_dims=config.get("spatial_dims", 2),
        **{k: tuple(v) if isinstance(v, list) else v for k, v in config["options"].items()},
    )
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{path} is corrupt ({exc})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(
            f"{path}: weights do not match a {config['name']!r} model ({first})"
        ) from None
    return model.to(map_location).eval()
