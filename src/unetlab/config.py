"""Training configuration: dataclasses that map one-to-one to a YAML file.

One YAML file has the sections ``model``, ``data``, ``loss``, ``optim``, ``schedule`` and
``train``; every key is a field below. Unknown keys are rejected with the nearest valid
key; values are type-checked and coerced (``"1e-3"`` -> ``0.001``). Command-line overrides
use dotted paths::

    cfg = load_config("configs/membranes.yaml", overrides=["train.epochs=50",
                                                           "model.options.channels=[8,16,32]"])
    save_config(cfg, "runs/x/config.yaml")   # the resolved config, saved with every run

Free-form ``options`` mappings (model, data, loss) are passed through to
``create_model`` / ``build_dataset`` / ``build_loss``, which validate them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UnetlabError, read_yaml

AMP_MODES = ("none", "fp16", "bf16", "auto")
OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("none", "poly", "cosine", "plateau")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass
class ModelConfig:
    """The network: a registered model name and its options (see ``unetlab.list_models``).

    ``in_channels`` / ``num_classes`` default to the dataset's.
    """

    name: str = "unet"
    in_channels: int | None = None
    num_classes: int | None = None
    options: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where the images come from and how they are batched.

    ``val_split``: a split name of the dataset (e.g. ``"val"``), a fraction in (0, 1) of
    the training split held out (its last items, so the choice is reproducible), or null
    for no validation. ``val_items`` (optional) lists explicit item indices of the
    training split to hold out instead. ``batch_size`` is the global batch: with N
    distributed processes each takes ``batch_size / N``. ``max_pixels``: the largest
    image (pixels per channel) decoded before refusing it (null: the default of
    :mod:`unetlab.limits`, 2**28). ``scale``: the resolution the
    model works at, as a factor of the stored images (0.5 = half the height and width;
    images resampled by area when shrinking, bilinear when enlarging, masks by nearest);
    it travels with the weights so that predict and evaluate apply it.
    """

    dataset: str = "membranes"
    root: str | None = None
    split: str = "train"
    val_split: str | float | None = "val"
    val_items: list | None = None
    tile_size: int | list | None = None
    scale: float = 1.0
    augment: str = "light"
    batch_size: int = 4
    val_batch_size: int = 1
    num_workers: int = 0
    options: dict = field(default_factory=dict)
    val_options: dict = field(default_factory=dict)
    max_pixels: int | None = None


@dataclass
class LossConfig:
    """A loss of ``unetlab.losses.build_loss`` and its options (e.g. ``class_weights``)."""

    name: str = "ce"
    options: dict = field(default_factory=dict)


@dataclass
class OptimConfig:
    """Adam / AdamW / SGD. ``momentum`` is used by SGD only (0.99 as in the U-Net paper)."""

    name: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.99
    weight_decay: float = 0.0
    betas: list = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, stepped once per optimizer step, with linear warm-up.

    ``poly``: ``lr * (1 - t/T) ** power``; ``cosine``: half a cosine down to
    ``min_lr_ratio * lr``; ``plateau``: multiply by ``factor`` when the best metric has
    not improved for ``patience`` validations. ``by_time``: poly/cosine progress is the
    fraction of ``train.time_budget_s`` used (or of the steps, whichever is further), so
    a fixed wall-clock budget on a shared machine still ends annealed; the run is then
    not bit-reproducible.
    """

    name: str = "none"
    warmup_steps: int = 0
    power: float = 0.9
    min_lr_ratio: float = 0.0
    factor: float = 0.5
    patience: int = 3
    by_time: bool = False


@dataclass
class TrainConfig:
    """The loop: length, precision, validation, checkpoints, reproducibility.

    Training stops at the first of ``epochs``, ``max_steps`` (optimizer steps) and
    ``time_budget_s`` (wall clock). ``best_metric`` names a key of the validation
    metrics (``miou``, ``mdice``, ``val_loss``, ``pixel_error``, or one class of a
    per-class metric such as ``dice.1``); ``best_mode`` is ``max``/``min``/``auto``
    (auto: ``min`` for losses and errors). ``winograd``: ``auto`` lets the deep 3x3
    convolutions of a 2-D model train with Winograd where it pays, in float32 on a CPU
    with AVX2 (:func:`unetlab.inference.winograd.use_in_training`); ``true`` also on
    other CPUs, ``false`` never.
    """

    epochs: int | None = 10
    max_steps: int | None = None
    time_budget_s: float | None = None
    grad_clip: float | None = None
    accumulate: int = 1
    amp: str = "none"
    channels_last: bool = False
    winograd: bool | str = "auto"
    val_every: int = 1
    best_metric: str = "miou"
    best_mode: str = "auto"
    boundary_metric: bool = True
    early_stop_patience: int | None = None
    checkpoint_every_steps: int | None = None
    last_every_s: float | None = None
    seed: int = 0
    device: str = "auto"
    out_dir: str = "runs/run"
    num_threads: int | None = None
    progress: bool = True


@dataclass
class Config:
    """A whole training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# ---- dict <-> dataclass with strict keys ---------------------------------------------


def _nearest(key: str, valid) -> str:
    close = difflib.get_close_matches(str(key), list(valid), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""



def _number(value, kind: type, where: str):
    """``value`` as an int or float (numeric strings accepted, booleans refused)."""
    noun = "an integer" if kind is int else "a number"
    if not isinstance(value, bool):
        if kind is int and isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int) or (kind is float and isinstance(value, float)):
            number = kind(value)
        else:
            try:
                number = kind(value) if isinstance(value, str) else None
            except ValueError:
                number = None
        if number is not None:
            if kind is float and not math.isfinite(number):
                raise UnetlabError(f"{where} must be a finite number, got {value!r}")
            return number
    raise UnetlabError(f"{where} must be {noun}, got {value!r}")

def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check/convert one value against a type hint; UnetlabError naming ``where``."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None:
            if type(None) in args:
                return None
            raise UnetlabError(f"{where} must not be null")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except UnetlabError as exc:
                errors.append(str(exc))
        raise UnetlabError(errors[0] if len(errors) == 1 else
                           f"{where}: {value!r} matches none of {_hint_name(hint)}")
    if value is None:
        raise UnetlabError(f"{where} must not be null (expected {_hint_name(hint)})")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise UnetlabError(f"{where} must be true or false, got {value!r}")
    if hint is int or hint is float:
        return _number(value, hint, where)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise UnetlabError(f"{where} must be a string, got the number {value!r}")
        raise UnetlabError(f"{where} must be a string, got {value!r}")
    if hint is dict or origin is dict:
        if not isinstance(value, dict):
            raise UnetlabError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if hint is list or origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise UnetlabError(f"{where} must be a list, got {value!r}")
        return value
    return value


def _hint_name(hint) -> str:
    args = typing.get_args(hint)
    if args:
        return " or ".join("null" if a is type(None) else a.__name__ for a in args)
    return getattr(hint, "__name__", str(hint))


def _from_dict(cls, data: Any, where: str):
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UnetlabError(f"{where or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            raise UnetlabError(
                f"unknown config key {path!r}{_nearest(key, names)}; valid keys"
                f"{' in ' + where if where else ''}: {', '.join(names)}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _from_dict(hint, value, path)
        else:
            kwargs[key] = _coerce(value, hint, path)
    return cls(**kwargs)


def config_from_dict(data: dict | None) -> Config:
    """Build and validate a :class:`Config` from nested dicts (UnetlabError if invalid)."""
    cfg = _from_dict(Config, data, "")
    validate(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict:
    """The config as plain nested dicts (YAML/JSON-ready)."""
    return dataclasses.asdict(cfg)


def _check_choice(where: str, value, valid) -> None:
    if value not in valid:
        raise UnetlabError(f"{where} must be one of {', '.join(map(str, valid))}; got "
                           f"{value!r}{_nearest(str(value), [str(v) for v in valid])}")


def validate(cfg: Config) -> None:
    """Check values that types alone do not: choices, ranges, consistency."""
    _check_choice("optim.name", cfg.optim.name, OPTIMIZERS)
    _check_choice("schedule.name", cfg.schedule.name, SCHEDULES)
    _check_choice("train.amp", cfg.train.amp, AMP_MODES)
    _check_choice("train.best_mode", cfg.train.best_mode, ("auto", "max", "min"))
    _check_choice("train.winograd", cfg.train.winograd, ("auto", True, False))
    if cfg.train.device.split(":")[0] not in DEVICES:
        _check_choice("train.device", cfg.train.device, DEVICES)
    positive = {
        "data.batch_size": cfg.data.batch_size, "data.val_batch_size": cfg.data.val_batch_size,
        "train.accumulate": cfg.train.accumulate, "train.val_every": cfg.train.val_every,
        "optim.lr": cfg.optim.lr,
    }
    optional_positive = {
        "train.epochs": cfg.train.epochs, "train.max_steps": cfg.train.max_steps,
        "train.time_budget_s": cfg.train.time_budget_s, "train.grad_clip": cfg.train.grad_clip,
        "train.early_stop_patience": cfg.train.early_stop_patience,
        "train.checkpoint_every_steps": cfg.train.checkpoint_every_steps,
        "train.last_every_s": cfg.train.last_every_s,
        "train.num_threads": cfg.train.num_threads,
        "model.in_channels": cfg.model.in_channels, "model.num_classes": cfg.model.num_classes,
        "data.max_pixels": cfg.data.max_pixels,
    }
    for where, value in {**positive, **optional_positive}.items():
        if value is not None and value <= 0:
            raise UnetlabError(f"{where} must be positive, got {value!r}")
    tile = cfg.data.tile_size
    if tile is not None and not all(isinstance(t, int) and not isinstance(t, bool) and t > 0
                                    for t in (tile if isinstance(tile, list) else [tile])):
        raise UnetlabError(f"data.tile_size must be a positive integer or one per axis "
                           f"(e.g. [48, 48, 16]), got {tile!r}")
    if cfg.data.num_workers < 0:
        raise UnetlabError(f"data.num_workers must be >= 0, got {cfg.data.num_workers}")
    if cfg.schedule.warmup_steps < 0:
        raise UnetlabError(f"schedule.warmup_steps must be >= 0, got {cfg.schedule.warmup_steps}")
    if not 0.0 <= cfg.optim.momentum < 1.0:
        raise UnetlabError(f"optim.momentum must be in [0, 1), got {cfg.optim.momentum}")
    if cfg.optim.weight_decay < 0:
        raise UnetlabError(f"optim.weight_decay must be >= 0, got {cfg.optim.weight_decay}")
    if len(cfg.optim.betas) != 2:
        raise UnetlabError(f"optim.betas must be two numbers, got {cfg.optim.betas!r}")
    for i, item in enumerate(cfg.data.val_items or []):
        if isinstance(item, bool) or not isinstance(item, int):
            raise UnetlabError(f"data.val_items[{i}] must be an item index (an integer), got "
                               f"{item!r}")
    from .card import MIN_SCALE

    if not MIN_SCALE <= cfg.data.scale <= 4.0:  # what a model card can carry
        raise UnetlabError(f"data.scale must be in [1/{round(1 / MIN_SCALE)}, 4], got "
                           f"{cfg.data.scale}")
    vs = cfg.data.val_split
    if isinstance(vs, float) and not 0.0 < vs < 1.0:
        raise UnetlabError(f"data.val_split as a fraction must be in (0, 1), got {vs}")
    if cfg.train.epochs is None and cfg.train.max_steps is None \
            and cfg.train.time_budget_s is None:
        raise UnetlabError("set at least one of train.epochs, train.max_steps, "
                           "train.time_budget_s (otherwise training never stops)")
    if cfg.schedule.by_time and cfg.train.time_budget_s is None:
        raise UnetlabError("schedule.by_time needs train.time_budget_s")
    if cfg.schedule.name in ("poly", "cosine") and cfg.train.epochs is None \
            and cfg.train.max_steps is None and not cfg.schedule.by_time:
        raise UnetlabError(f"schedule.name={cfg.schedule.name!r} needs train.epochs or "
                           "train.max_steps to know its length")


# ---- YAML and dotted overrides -------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.epochs=50"`` -> ``(["train", "epochs"], 50)``; the value is parsed as YAML
    (so ``[8,16]`` is a list, ``null`` is None, ``1e-3`` a number)."""
    import yaml

    if "=" not in text:
        raise UnetlabError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if len(parts) < 2:
        raise UnetlabError(f"override {text!r} must name a section and a key "
                           "(e.g. train.epochs=50)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)
    return parts, value


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip().lower() not in ("nan", "inf", "-inf", "infinity")


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Apply dotted ``key=value`` overrides to nested dicts (returns a new dict)."""
    import copy

    data = copy.deepcopy(data or {})
    sections = {f.name: f.type for f in dataclasses.fields(Config)}
    for text in overrides or []:
        parts, value = parse_override(text)
        if parts[0] not in sections:
            raise UnetlabError(f"unknown config section {parts[0]!r} in override {text!r}"
                               f"{_nearest(parts[0], sections)}; valid sections: "
                               f"{', '.join(sections)}")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UnetlabError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_config(path=None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from the defaults when ``path`` is None), apply the
    overrides and validate. UnetlabError naming the file or key for any problem."""
    if isinstance(overrides, str):  # iterated, it gave one "override" per character
        raise UnetlabError(f"overrides must be a list of 'section.key=value' strings, got "
                           f"the string {overrides!r} (put it in a list)")
    data: dict = {}
    if path is not None:
        path = Path(path)
        data = read_yaml(path, "config file")
        if not isinstance(data, dict):
            raise UnetlabError(f"{path}: the top level must be a mapping of sections")
    try:
        return config_from_dict(apply_overrides(data, overrides))
    except UnetlabError as exc:
        prefix = f"{path}: " if path is not None else ""
        raise UnetlabError(f"{prefix}{exc}") from None


def dump_config(cfg: Config) -> str:
    """The config as YAML text."""
    import yaml

    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path) -> Path:
    """Write the resolved config as YAML, atomically."""
    from ._io import atomic_write_text

    return atomic_write_text(path, dump_config(cfg))
