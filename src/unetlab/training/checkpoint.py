"""Training checkpoints without pickle: a folder of safetensors files and one JSON file.

Layout of a checkpoint folder (e.g. ``runs/x/checkpoints/last``)::

    model.safetensors      weights + model config (+ class names, palette): load_model()
    optimizer.safetensors  every tensor of the optimizer state, flattened by key
    rng.safetensors        torch CPU (and CUDA) generator states
    state.json             epoch, step, resolved config, the optimizer's non-tensor state,
                           scheduler, grad scaler, numpy/python RNG, history, best metric

The folder is written next to its destination under a temporary name and swapped in by
renames, so a crash (or SIGKILL) at any moment leaves either the old or the new
checkpoint, never a half-written one. ``unetlab.load_model(folder)`` needs nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .._io import as_any_new_file
from ..errors import UnetlabError
from ..models.serialization import MODEL_FILE, read_metadata, save_model

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
RNG_FILE = "rng.safetensors"
FORMAT_VERSION = 1


# ---- optimizer state <-> (tensors, JSON) ----------------------------------------------


def flatten_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into flat tensors and a JSON-able remainder.

    Tensors go under keys ``"state.<param id>.<name>"``; everything else (param groups,
    non-tensor per-parameter values such as a ``None`` momentum buffer) stays in JSON.
    """
    tensors: dict[str, torch.Tensor] = {}
    rest_state: dict[str, dict] = {}
    for pid, per_param in state_dict["state"].items():
        rest_state[str(pid)] = {}
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{pid}.{name}"] = value.detach().contiguous().cpu()
            else:
                rest_state[str(pid)][name] = value
    return tensors, {"state": rest_state, "param_groups": state_dict["param_groups"]}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], rest: dict) -> dict:
    """Inverse of :func:`flatten_optimizer_state`."""
    state: dict[int, dict] = {int(pid): dict(values) for pid, values in rest["state"].items()}
    for key, value in tensors.items():
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


# ---- RNG states ------------------------------------------------------------------------


def capture_rng() -> tuple[dict[str, torch.Tensor], dict]:
    """Every global RNG state: torch tensors and a JSON part (numpy, python)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002 (global state is what we save)
    py_version, py_state, py_gauss = random.getstate()
    meta = {"numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
            "python": [py_version, list(py_state), py_gauss]}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    kind, keys, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    py_version, py_state, py_gauss = meta["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))


# ---- writing and reading ----------------------------------------------------------------


def save_checkpoint(path, *, model, optimizer=None, state: dict | None = None,
                    model_metadata: dict | None = None, card: dict | None = None) -> Path:
    """Write a checkpoint folder at ``path`` atomically.

    ``state``: JSON-able training state (epoch, step, config, scheduler, scaler, ...).
    ``model_metadata``: extra model metadata; ``card``: the model card
    (:func:`unetlab.card.card_for_dataset`), stored with the weights.
    A full disk or any other OSError becomes a one-line UnetlabError; the previous
    checkpoint at ``path`` is then left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    old = path.with_name(f".{path.name}.old{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        net = model.module if hasattr(model, "module") else model
        save_model(net, tmp / MODEL_FILE, metadata=model_metadata, card=card)
        full_state = {"format_version": FORMAT_VERSION, **(state or {})}
        if optimizer is not None:
            tensors, rest = flatten_optimizer_state(optimizer.state_dict())
            save_file(tensors, str(tmp / OPTIMIZER_FILE))
            as_any_new_file(tmp / OPTIMIZER_FILE)
            full_state["optimizer"] = rest
        rng_tensors, rng_meta = capture_rng()
        save_file(rng_tensors, str(tmp / RNG_FILE))
        as_any_new_file(tmp / RNG_FILE)
        full_state["rng"] = rng_meta
        with open(tmp / STATE_FILE, "w") as f:
            json.dump(full_state, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        # Swap in: the old folder (if any) moves aside, the new one takes its name.
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if not path.exists() and old.exists():
            os.replace(old, path)
        reason = exc.strerror or str(exc)
        raise UnetlabError(f"cannot write checkpoint {path}: {reason}") from None
    return path


def _recover(path: Path) -> Path:
    """If a crash happened between the two renames, put the old folder back."""
    if path.exists():
        return path
    leftovers = sorted(path.parent.glob(f".{path.name}.old*")) if path.parent.is_dir() else []
    if leftovers:
        os.replace(leftovers[-1], path)
        log.warning("recovered checkpoint %s from an interrupted write", path)
    return path


def checkpoint_exists(path) -> bool:
    """Whether a checkpoint can be loaded from ``path``: the folder itself, or the backup
    that a write cut short between its two renames leaves (:func:`load_checkpoint` puts
    it back). Reads nothing and moves nothing."""
    path = Path(path)
    return path.exists() or (path.parent.is_dir()
                             and any(path.parent.glob(f".{path.name}.old*")))


def read_checkpoint_state(path) -> dict | None:
    """The JSON state (epoch, step, elapsed_s, ...) of the checkpoint at ``path``, without
    its weights, after the same recovery as :func:`load_checkpoint`; None when there is
    no readable one."""
    path = Path(path)
    if not checkpoint_exists(path):
        return None
    try:
        state = json.loads((_recover(path) / STATE_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return state if isinstance(state, dict) else None


def load_checkpoint(path, *, model=None, optimizer=None, restore_rng_state: bool = True,
                    map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint folder; load weights/optimizer into the given objects.

    Returns the JSON state (epoch, step, config, ...). Raises UnetlabError for a missing,
    corrupt or mismatching checkpoint (another architecture, other class count).
    """
    path = _recover(Path(path))
    state_file = path / STATE_FILE
    if not state_file.is_file():
        raise UnetlabError(f"{path} is not a training checkpoint (no {STATE_FILE})")
    try:
        state = json.loads(state_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UnetlabError(f"{state_file} is corrupt ({exc})") from None
    if not isinstance(state, dict):
        raise UnetlabError(f"{state_file} is corrupt (expected a JSON object, got "
                           f"{type(state).__name__})")
    if model is not None:
        net = model.module if hasattr(model, "module") else model
        _load_weights(path / MODEL_FILE, net, map_location)
    if optimizer is not None and "optimizer" in state:
        tensors = _read_tensors(path / OPTIMIZER_FILE, map_location)
        try:
            optimizer.load_state_dict(unflatten_optimizer_state(tensors, state["optimizer"]))
        except (ValueError, KeyError, RuntimeError, TypeError, AttributeError,
                IndexError) as exc:
            raise UnetlabError(f"{path}: optimizer state does not fit this model or "
                               f"{state_file} was edited ({' '.join(str(exc).split())})") \
                from None
    if restore_rng_state and "rng" in state:
        tensors = _read_tensors(path / RNG_FILE, "cpu")
        try:
            restore_rng(tensors, state["rng"])
        except (ValueError, KeyError, RuntimeError, TypeError, IndexError) as exc:
            raise UnetlabError(f"{state_file}: corrupt random-generator state "
                               f"({' '.join(str(exc).split())})") from None
    return state


def _read_tensors(file: Path, map_location) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise UnetlabError(f"checkpoint file {file} is missing")
    try:
        return load_file(str(file), device=str(map_location))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnetlabError(f"{file} is corrupt ({' '.join(str(exc).split())})") from None


def _load_weights(file: Path, net, map_location) -> None:
    try:
        meta = read_metadata(file)
    except ValueError as exc:
        raise UnetlabError(str(exc)) from None
    saved = meta.get("unetlab_model") or {}
    mine = getattr(net, "unetlab_config", None)
    if mine is not None and saved:
        for key in ("name", "num_classes", "in_channels"):
            if saved.get(key) != mine.get(key):
                raise UnetlabError(
                    f"{file} holds a {saved.get('name')!r} model with {key}="
                    f"{saved.get(key)!r}, but this run builds {key}={mine.get(key)!r}")
    tensors = _read_tensors(file, map_location)
    try:
        net.load_state_dict(tensors)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UnetlabError(f"{file}: weights do not match this model ({first})") from None
