"""Build every object a run needs from its :class:`~unetlab.config.Config`.

One function per object, each a few lines, so that the trainer receives built objects
and never reads YAML (pytorch-3dunet's good idea, without its kwargs-swallowing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, Subset

from ..config import Config
from ..data.splits import fallback_holdout, holdout_indices, holdout_items
from ..errors import UnetlabError

log = logging.getLogger(__name__)


def select_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda``/``cuda:1``/``cpu``/``mps``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UnetlabError(f"train.device={name!r} but no CUDA device is available; "
                           "use 'cpu' or 'auto'")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UnetlabError(f"train.device={name!r} but MPS is not available; use 'cpu'")
    return device


def resolve_winograd(setting, net, device: torch.device, amp_dtype) -> int | None:
    """The narrowest layer that trains with Winograd for ``train.winograd`` (None = off):
    float32 on the CPU, 2-D models; ``auto`` where :func:`.cpu.training_winograd` says
    it pays on this CPU, ``true`` also elsewhere."""
    from ..inference.cpu import training_winograd
    from ..inference.winograd import TRAIN_MIN_CHANNELS
    from ..models.geometry import geometry_of

    if setting is False or device.type != "cpu" or amp_dtype is not None \
            or geometry_of(net).spatial_dims != 2:
        return None
    channels = training_winograd()
    return TRAIN_MIN_CHANNELS if channels is None and setting is True else channels


def train_with_winograd(setting, net, device: torch.device, amp_dtype) -> int | None:
    """:func:`resolve_winograd`, and where it says so, let ``net`` train with Winograd
    (in place); returns the narrowest layer that may use it (None = off). What the
    trainer, the planner's probe and the benchmarks all run."""
    channels = resolve_winograd(setting, net, device, amp_dtype)
    if channels is not None:
        from ..inference.winograd import use_in_training

        use_in_training(net, channels)
    return channels


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None = full precision)."""
    if amp == "none":
        return None
    if amp == "auto":
        if device.type == "cpu":  # bf16 only where the CPU computes it natively
            from ..inference.cpu import cpu_features

            return torch.bfloat16 if cpu_features().bf16 else None
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if amp == "fp16":
        if device.type != "cuda":
            raise UnetlabError("train.amp='fp16' needs a CUDA device (loss scaling); "
                               "use 'bf16' or 'none' on the CPU")
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UnetlabError("train.amp='bf16' is not supported by this GPU; use 'fp16'")
    if device.type == "cpu":
        from ..inference.cpu import cpu_features

        features = cpu_features()
        if not features.bf16:  # e.g. a plan made on another machine
            log.warning("train.amp='bf16' on a CPU without AVX512-BF16 or AMX (%s): bf16 is "
                        "emulated here, several times slower than full precision; set "
                        "train.amp=auto (or none) unless you mean to", features.describe())
    return torch.bfloat16


@dataclass
class Datasets:
    """The training set, the validation set (or None) and the dataset that describes
    the classes (``num_classes``, ``class_names``, ``palette``, ``ignore_index``)."""

    train: Dataset
    val: Dataset | None
    info: Dataset


def _build(cfg: Config, split: str, transform, extra: dict | None = None):
    from ..data import build_dataset

    options = {**cfg.data.options, **(extra or {})}
    if cfg.data.scale != 1.0:
        options["scale"] = cfg.data.scale
    return build_dataset(cfg.data.dataset, root=cfg.data.root, split=split,
                         transform=transform, **options)


def _val_options(cfg: Config, train) -> dict:
    """``data.val_options``, plus the training split's mask mapping when it was read from
    the training masks (folder data declaring no classes): a validation split's own masks
    may lack a class, and reading them alone would number the classes differently."""
    options = dict(cfg.data.val_options or {})
    inferred = getattr(train, "inferred_mapping", None)
    declared = {"mapping", "num_classes", "class_names"} & (set(cfg.data.options) |
                                                            set(options))
    if inferred is not None and not declared:
        options["mapping"] = dict(inferred)
    if getattr(train, "inferred_num_classes", False) and not declared:
        options["num_classes"] = int(train.num_classes)  # (NIfTI: counted from the labels)
    return options


def _check_val_values(val) -> None:
    """Read every validation mask once through the training masks' mapping: a value only
    the validation masks hold (a class the model would never learn) is a one-line error
    naming the file now, not a failure at the first validation."""
    for i in range(len(val)):
        try:
            val.load_mask(i)
        except UnetlabError as exc:
            raise UnetlabError(f"validation split: {exc} (the classes were read from the "
                               "training masks: move such images into training, or declare "
                               "the classes: --option num_classes=N, or mapping)") from None


def build_datasets(cfg: Config) -> Datasets:
    """Training and validation sets as the ``data`` section describes them."""
    from ..data import build_transforms, dataset_class

    d = cfg.data
    transform = None  # "none" without cropping: skip the (no-op) pipeline
    if d.augment != "none" or d.tile_size is not None:
        dims = int(getattr(dataset_class(d.dataset), "spatial_dims", 2))
        transform = build_transforms(d.augment, tile_size=d.tile_size, spatial_dims=dims)
    train = _build(cfg, d.split, transform)
    if len(train) == 0:
        raise UnetlabError(f"dataset {d.dataset!r} split {d.split!r} at {d.root} is empty")
    info = train
    val = None
    split = None
    if d.val_items is not None:
        split = holdout_items(len(train), d.val_items)
    elif isinstance(d.val_split, float):
        split = holdout_indices(len(train), d.val_split)
    elif isinstance(d.val_split, str) and d.val_split:
        options = _val_options(cfg, train)
        val = _build(cfg, d.val_split, None, options)
        if "mapping" in options and "mapping" not in (d.val_options or {}) and \
                getattr(val, "split_found", True) is not False:
            _check_val_values(val)
        if getattr(val, "split_found", True) is False and \
                getattr(train, "split_found", False) is False:
            # no ROOT/<val_split> folder: val would be the training images themselves;
            # hold some out instead (a single image: say that val is the training image)
            split = fallback_holdout(len(train), f"{d.dataset} data at {d.root}")
    if split is not None:
        keep, held = split
        val = Subset(_build(cfg, d.split, None, d.val_options), held)
        train = Subset(train, keep)
    return Datasets(train=train, val=val, info=info)


def build_model(cfg: Config, info) -> torch.nn.Module:
    from .. import create_model

    in_ch = cfg.model.in_channels or int(getattr(info, "in_channels", 1))
    classes = cfg.model.num_classes or int(info.num_classes)
    if cfg.model.num_classes and cfg.model.num_classes != info.num_classes:
        raise UnetlabError(f"model.num_classes={cfg.model.num_classes} but dataset "
                           f"{cfg.data.dataset!r} has {info.num_classes} classes")
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.model.options.items()}
    options.setdefault("spatial_dims", int(getattr(info, "spatial_dims", 2)))  # volumes: 3
    return create_model(cfg.model.name, in_channels=in_ch, num_classes=classes, **options)


def build_loss(cfg: Config, info) -> torch.nn.Module:
    from ..losses import build_loss as _build_loss

    loss = _build_loss(cfg.loss.name, num_classes=int(info.num_classes),
                       ignore_index=getattr(info, "ignore_index", None), **cfg.loss.options)
    if getattr(loss, "uses_pixel_weight", False) and getattr(info, "weight_map", True) is False:
        raise UnetlabError(f"loss {cfg.loss.name!r} needs the border weight map: set "
                           "data.options.weight_map: true")
    return loss


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    params = [p for p in model.parameters() if p.requires_grad]
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum,
                               weight_decay=o.weight_decay)
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)


def best_mode(cfg: Config) -> str:
    """``max`` or ``min`` for the best-checkpoint metric."""
    if cfg.train.best_mode != "auto":
        return cfg.train.best_mode
    name = cfg.train.best_metric
    return "min" if ("loss" in name or "error" in name) else "max"


def build_schedule(cfg: Config, optimizer, total_steps: int | None):
    from .schedule import LRSchedule

    s = cfg.schedule
    return LRSchedule(optimizer, s.name, total_steps=total_steps, warmup_steps=s.warmup_steps,
                      power=s.power, min_lr_ratio=s.min_lr_ratio, factor=s.factor,
                      patience=s.patience, mode=best_mode(cfg), by_time=s.by_time)
