"""Save and load models as one safetensors file whose metadata holds the build config.

No pickle anywhere: the weights are plain tensors and the config is JSON, so
``load_model`` can rebuild the exact model without the training code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from ..errors import UnetlabError
from .registry import create_model

MODEL_FILE = "model.safetensors"
CONFIG_KEY = "unetlab_model"


def model_config(model: nn.Module) -> dict:
    """The registry config of a model made by ``create_model`` (ValueError otherwise)."""
    config = getattr(model, "unetlab_config", None)
    if config is None:
        raise ValueError("this model was not built by unetlab.create_model; cannot save its config")
    return config


# A model file larger than this is refused before anything is built (a hostile header
# could otherwise make load_model allocate a huge network); max_parameters raises it.
MAX_PARAMETERS = 500_000_000


def save_model(model: nn.Module, path, metadata: dict | None = None,
               card: dict | None = None) -> Path:
    """Write weights and the model card to ``path`` (a ``.safetensors`` file, or a folder
    that receives ``model.safetensors``), atomically: a temp file, then a rename.

    ``card``: from :func:`unetlab.card.build_card` / ``card_for_dataset``; by default a
    card with what the model itself knows (no class names, no normalisation).
    """
    from .._io import atomic_write, dumps
    from ..card import CARD_KEY, build_card, validate_card

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path / MODEL_FILE
    card = validate_card(card, path) if card is not None else build_card(model)
    if card["architecture"] != model_config(model):
        raise ValueError("the card's architecture does not match the model being saved")
    meta = {CONFIG_KEY: json.dumps(model_config(model)), CARD_KEY: dumps(card, indent=None)}
    for key, value in (metadata or {}).items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata=meta))


def resolve_model_file(path) -> Path:
    """A model file, a checkpoint folder, or a training-run folder (its best checkpoint,
    else its last)."""
    path = Path(path)
    if path.is_dir() and not (path / MODEL_FILE).is_file():
        for which in ("best", "last"):
            if (path / "checkpoints" / which / MODEL_FILE).is_file():
                return path / "checkpoints" / which / MODEL_FILE
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise UnetlabError(f"no model file at {path}")
    return path


def read_metadata(path) -> dict:
    """Metadata of a saved model, JSON values decoded."""
    path = resolve_model_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnetlabError(f"{path} is not a readable safetensors file "
                           f"({' '.join(str(exc).split())})") from None
    out = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
        except RecursionError:
            raise UnetlabError(f"{path}: metadata {key!r} is nested too deeply to be a "
                               "model card or config") from None
    return out


def header_shapes(path) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes from a safetensors header (nothing is loaded)."""
    path = resolve_model_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnetlabError(f"{path} is not a readable safetensors file "
                           f"({' '.join(str(exc).split())})") from None


def _build_checked(card: dict, path: Path, shapes: dict, max_parameters: int) -> nn.Module:
    """Build the card's model on the meta device (no memory), check it against the
    header's tensor shapes and the size limit, then build it for real."""
    arch = card["architecture"]
    options = {k: tuple(v) if isinstance(v, list) else v
               for k, v in (arch.get("options") or {}).items()}
    kwargs = dict(in_channels=arch["in_channels"], num_classes=arch["num_classes"],
                  spatial_dims=arch.get("spatial_dims", 2), **options)
    in_file = sum(int(np.prod(s)) for s in shapes.values())
    if in_file > max_parameters:
        raise UnetlabError(f"{path}: holds {in_file:,} values, over the limit of "
                           f"{max_parameters:,} (max_parameters raises it)")
    try:
        with torch.device("meta"):
            probe = create_model(arch["name"], **kwargs)
    except (ValueError, TypeError, RuntimeError, OverflowError) as exc:
        raise UnetlabError(f"{path}: model card does not build a model "
                           f"({' '.join(str(exc).split())})") from None
    expected = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    del probe
    if expected != shapes:
        missing = sorted(set(expected) - set(shapes))
        extra = sorted(set(shapes) - set(expected))
        wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
        what = (f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}" if extra
                else f"{wrong[0]} is {shapes[wrong[0]]} in the file, {expected[wrong[0]]} in "
                f"a {arch['name']!r} model")
        raise UnetlabError(f"{path}: weights do not match the {arch['name']!r} model its card "
                           f"describes ({what})")
    return create_model(arch["name"], **kwargs)


def load_model(path, map_location: str | torch.device = "cpu", *,
               max_parameters: int = MAX_PARAMETERS) -> nn.Module:
    """Rebuild a model saved by :func:`save_model` (a file, or a checkpoint folder).

    The card is validated and the architecture checked against the tensor shapes in
    the file's header before any weight is allocated, so a malformed or hostile file is a
    one-line UnetlabError (a ValueError). The model is returned in eval mode, with its
    card as ``model.unetlab_card``.
    """
    from ..card import card_from_metadata

    path = resolve_model_file(path)
    card = card_from_metadata(read_metadata(path), path)
    model = _build_checked(card, path, header_shapes(path), max_parameters)
    try:
        state = load_file(str(path), device=str(map_location))
    except (SafetensorError, OSError) as exc:
        raise UnetlabError(f"{path} is corrupt ({' '.join(str(exc).split())})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UnetlabError(f"{path}: weights do not match a {card['architecture']['name']!r} "
                           f"model ({first})") from None
    model.unetlab_card = card
    return model.to(map_location).eval()
