"""The model card: everything needed to use a model, stored with its weights.

A card is a JSON object in the safetensors metadata (key ``"unetlab_card"``) of every
model file and checkpoint that unetlab writes::

    {"schema_version": 1, "unetlab_version": "0.1.0",
     "architecture": {"name", "in_channels", "num_classes", "spatial_dims", "options"},
     "input": {"channels": [names] | null, "scaling": "dtype" | "none",
               "normalize": null | {"name", "mean": [...], "std": [...]}, "scale": 1.0},
     "classes": {"names": [...], "palette": [[r, g, b], ...], "ignore_index": int | null},
     "geometry": {"spatial_dims", "divisor", "padding", "levels", "margin"},
     "training": null | {"dataset", "split", "steps", "epochs", "best_metric", "best_value",
                         "elapsed_s", ...},
     "extensions": {}}

``input`` says how an image file becomes the model's input (see
:mod:`unetlab.preprocess`): integer images divided by their type's maximum
(``scaling="dtype"``), then ``(x - mean) / std`` per channel; ``scale`` is the resolution
factor applied to images before the model (1.0: native resolution). ``extensions`` holds
what a capability adds (e.g. ``"optimization"``, ``"geo"``, ``"medical"``, ``"plan"``).

Files written before cards existed still load: :func:`read_card` fills in what is
assumed and logs one line that says so. A card of a newer schema is an error.
"""

from __future__ import annotations

import logging
import math
from copy import deepcopy

import numpy as np

from .errors import UnetlabError
from .models.serialization import model_config

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
CARD_KEY = "unetlab_card"
CONFIG_KEY = "unetlab_model"  # the architecture alone (files before the card; kept)
SECTIONS = ("schema_version", "unetlab_version", "architecture", "input", "classes",
            "geometry", "training", "extensions")
# Bounds that keep a hostile or absurd card from hanging or exhausting what reads it:
MIN_SCALE = 1 / 32   # input.scale; the planner picks 0.25 at the least
MAX_LEVELS = 16      # architecture.options.channels entries (a 16-level U-Net pads to 32,768 px)
MIN_STD = 1e-12      # input.normalize.std, compared in float32 (the input's type); as low as
#                      the per-band statistics of a GeoTIFF dataset go (smaller: a constant band)
MAX_DEPTH = 32       # nesting of lists and objects in a card


def _version() -> str:
    from . import __version__

    return __version__


def _palette_list(palette, num_classes: int) -> list[list[int]]:
    if palette is None or len(palette) == 0:
        from .inference.palette import default_palette

        palette = default_palette(num_classes)
    arr = np.asarray(palette)
    return np.clip(arr, 0, 255).astype(int).tolist()


def build_card(model, *, preprocessing=None, class_names=None, palette=None,
               ignore_index=None, channel_names=None, scale: float = 1.0, training=None,
               extensions=None) -> dict:
    """The card of a model made by :func:`unetlab.create_model`.

    ``preprocessing``: a :class:`~unetlab.preprocess.Preprocessing` (default: dtype scaling,
    no normalisation). Missing class names become ``"0"``, ``"1"``, ...
    """
    from .models.geometry import geometry_of
    from .preprocess import Preprocessing

    arch = deepcopy(model_config(model))
    k, c = int(arch["num_classes"]), int(arch["in_channels"])
    if preprocessing is None:
        preprocessing = Preprocessing(channels=c)
    names = [str(n) for n in (class_names or [])] or [str(i) for i in range(k)]
    card = {
        "schema_version": SCHEMA_VERSION,
        "unetlab_version": _version(),
        "architecture": arch,
        "input": {"channels": list(channel_names) if channel_names else None,
                  **preprocessing.to_card(), "scale": float(scale)},
        "classes": {"names": names, "palette": _palette_list(palette, k),
                    "ignore_index": None if ignore_index is None else int(ignore_index)},
        "geometry": geometry_of(model).to_dict(),
        "training": deepcopy(training) if training else None,
        "extensions": deepcopy(extensions) if extensions else {},
    }
    return validate_card(card, "the model card")


def card_for_dataset(model, dataset, *, training=None, extensions=None,
                     scale: float = 1.0) -> dict:
    """The card of ``model`` trained on ``dataset`` (its class names, palette, ignore
    index, channel names, preprocessing and ``card_extensions``)."""
    ext = deepcopy(getattr(dataset, "card_extensions", None) or {})
    ext.update(extensions or {})
    channels = int(model_config(model)["in_channels"])
    prep = dataset.preprocessing(channels) if hasattr(dataset, "preprocessing") else None
    return build_card(model, preprocessing=prep,
                      class_names=list(getattr(dataset, "class_names", ()) or ()),
                      palette=getattr(dataset, "palette", None),
                      ignore_index=getattr(dataset, "ignore_index", None),
                      channel_names=getattr(dataset, "channel_names", None),
                      scale=scale, training=training, extensions=ext)


# ---- validation --------------------------------------------------------------------


def _fail(source, message: str):
    raise UnetlabError(f"{source}: model card {message}")


def _positive_int(value, source, key) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        _fail(source, f"{key} must be a positive integer, got {value!r}")
    return value


def _dict(value, source, key) -> dict:
    if not isinstance(value, dict):
        _fail(source, f"{key} must be an object, got {type(value).__name__}")
    return value


def validate_architecture(arch, source) -> dict:
    """Check the ``architecture`` section (types only; the registry checks names and
    options when the model is built)."""
    arch = _dict(arch, source, "architecture")
    name = arch.get("name")
    if not isinstance(name, str) or not name:
        _fail(source, f"architecture.name must be a model name, got {name!r}")
    for key in ("in_channels", "num_classes"):
        if key not in arch:
            _fail(source, f"architecture has no {key}")
        _positive_int(arch[key], source, f"architecture.{key}")
    if arch.get("spatial_dims", 2) not in (2, 3):
        _fail(source, f"architecture.spatial_dims must be 2 or 3, got {arch.get('spatial_dims')!r}")
    options = _dict(arch.get("options", {}), source, "architecture.options")
    channels = options.get("channels")
    if isinstance(channels, str | list | tuple) and len(channels) > MAX_LEVELS:
        _fail(source, f"architecture.options.channels lists {len(channels)} levels; a model "
                      f"has at most {MAX_LEVELS}")
    return arch


def _check_depth(card, source) -> None:
    """Refuse lists and objects nested deeper than MAX_DEPTH (iteratively: no recursion)."""
    stack = [(card, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list | tuple):
            if depth >= MAX_DEPTH:
                _fail(source, f"is nested more than {MAX_DEPTH} levels deep")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items if isinstance(v, dict | list | tuple))


def validate_card(card, source="model card") -> dict:
    """Check a card; returns it. One-line UnetlabError naming ``source`` and the key at
    fault; a card of a newer schema is refused (upgrade unetlab to read it)."""
    from .preprocess import SCALINGS, resolve_normalize

    card = _dict(card, source, "")
    _check_depth(card, source)
    version = card.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        _fail(source, f"schema_version must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise UnetlabError(f"{source}: model card schema {version} is newer than this unetlab "
                           f"({_version()}, schema {SCHEMA_VERSION}); upgrade unetlab")
    arch = validate_architecture(card.get("architecture"), source)
    k, c = arch["num_classes"], arch["in_channels"]
    inp = _dict(card.get("input", {}), source, "input")
    names = inp.get("channels")
    if names is not None and (not isinstance(names, list) or len(names) != c
                              or not all(isinstance(n, str) for n in names)):
        _fail(source, f"input.channels must list {c} channel name(s), got {names!r}")
    if inp.get("scaling", "dtype") not in SCALINGS:
        _fail(source, f"input.scaling must be one of {SCALINGS}, got {inp.get('scaling')!r}")
    try:
        norm = resolve_normalize(inp.get("normalize"), c)
    except UnetlabError as exc:
        _fail(source, f"input.{exc}")
    if norm is not None:
        with np.errstate(over="ignore"):
            mean32, std32 = (np.asarray(norm[k], np.float32) for k in ("mean", "std"))
        if not (np.isfinite(mean32).all() and np.isfinite(std32).all()):
            _fail(source, f"input.normalize: mean and std must be finite in float32, got "
                          f"mean {norm['mean']}, std {norm['std']}")
        if (std32 < np.float32(MIN_STD)).any():
            _fail(source, f"input.normalize: std must be at least {MIN_STD:g}, "
                          f"got {norm['std']}")
    scale = inp.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, int | float) or \
            not math.isfinite(scale) or not MIN_SCALE <= scale <= 4:
        _fail(source, f"input.scale must be a number in [1/{round(1 / MIN_SCALE)}, 4], "
                      f"got {scale!r}")
    if scale != 1 and arch.get("spatial_dims", 2) != 2:
        _fail(source, f"input.scale={scale} is for 2-D models only")
    classes = _dict(card.get("classes", {}), source, "classes")
    cnames = classes.get("names", [])
    if not isinstance(cnames, list) or not all(isinstance(n, str) for n in cnames) or \
            (cnames and len(cnames) != k):
        _fail(source, f"classes.names must list {k} class name(s), got {cnames!r}")
    palette = classes.get("palette", [])
    try:
        arr = np.asarray(palette, dtype=np.float64)
    except (TypeError, ValueError):
        arr = np.zeros((1, 1))
    if len(palette) and (arr.ndim != 2 or arr.shape[1] != 3 or len(arr) < k or
                         (arr < 0).any() or (arr > 255).any()):
        _fail(source, f"classes.palette must hold {k} [r, g, b] colours in 0..255")
    ignore = classes.get("ignore_index")
    if ignore is not None and (isinstance(ignore, bool) or not isinstance(ignore, int)):
        _fail(source, f"classes.ignore_index must be an integer or null, got {ignore!r}")
    geo = _dict(card.get("geometry", {}), source, "geometry")
    if geo.get("padding", "same") not in ("same", "valid"):
        _fail(source, f"geometry.padding must be 'same' or 'valid', got {geo.get('padding')!r}")
    for key in ("divisor", "levels"):
        if key in geo:
            _positive_int(geo[key], source, f"geometry.{key}")
    if card.get("training") is not None:
        _dict(card["training"], source, "training")
    _dict(card.get("extensions", {}), source, "extensions")
    return card


# ---- reading ------------------------------------------------------------------------


def assumed_card(meta: dict, source, *, warn: bool = True) -> dict:
    """A card for a file saved before cards existed, from its model config (and its
    ``class_names``/``palette``/``normalize`` keys when present); logs what is assumed."""
    from .models.geometry import Geometry, valid_margin
    from .preprocess import Preprocessing

    if CONFIG_KEY not in meta:
        raise UnetlabError(f"{source} holds no unetlab model card or config "
                           "(was it saved by unetlab?)")
    arch = validate_architecture(meta[CONFIG_KEY], source)
    k, c = arch["num_classes"], arch["in_channels"]
    names = meta.get("class_names")
    normalize = meta.get("normalize")
    assumed = []
    if not (isinstance(names, list) and len(names) == k):
        names = [str(i) for i in range(k)]
        assumed.append(f"class names 0..{k - 1}")
    if normalize is None:
        assumed.append("no normalisation")
    opts = arch.get("options") or {}
    padding = opts.get("padding", "same") if arch["name"] in ("unet", "resunet",
                                                               "attention_unet") else "same"
    levels = len(opts.get("channels") or ()) or 1
    geo = Geometry(spatial_dims=arch.get("spatial_dims", 2),
                   divisor=2 ** (levels - 1) if padding in ("same", "valid") else 1,
                   padding=padding, levels=levels,
                   margin=valid_margin(levels) if padding == "valid" else 0)
    card = {
        "schema_version": SCHEMA_VERSION, "unetlab_version": None, "architecture": arch,
        "input": {"channels": None, **Preprocessing(channels=c, normalize=normalize).to_card(),
                  "scale": 1.0},
        "classes": {"names": [str(n) for n in names],
                    "palette": _palette_list(meta.get("palette"), k), "ignore_index": None},
        "geometry": geo.to_dict(), "training": None, "extensions": {}, "assumed": True,
    }
    if warn:
        log.warning("%s has no model card (saved by an older unetlab): assuming images "
                    "scaled by their type's range, %s", source, ", ".join(assumed)
                    or "the metadata's class names and normalisation")
    return card


def card_from_metadata(meta: dict, source, *, warn: bool = True) -> dict:
    """The validated card in decoded safetensors metadata (or the assumed one)."""
    if CARD_KEY not in meta:
        return assumed_card(meta, source, warn=warn)
    return validate_card(meta[CARD_KEY], source)


def read_card(path, *, warn: bool = True) -> dict:
    """The card of a model file or checkpoint folder (validated; assumed for old files)."""
    from .models.serialization import read_metadata, resolve_model_file

    path = resolve_model_file(path)
    return card_from_metadata(read_metadata(path), path, warn=warn)


def preprocessing_of(card: dict):
    """The :class:`~unetlab.preprocess.Preprocessing` a card describes."""
    from .preprocess import Preprocessing

    return Preprocessing.from_card(card)


def palette_of(card: dict) -> np.ndarray:
    """The card's palette as ``(K, 3)`` uint8."""
    k = int(card["architecture"]["num_classes"])
    return np.asarray(_palette_list(card["classes"].get("palette"), k), dtype=np.uint8)[:k]


# ---- showing ------------------------------------------------------------------------


def flat_card(card: dict) -> dict:
    """The keys outside checks read at the top level (``name``, ``in_channels``,
    ``num_classes``, ``class_names``, ``normalize``, ``schema_version``) plus the card."""
    arch = card["architecture"]
    norm = card["input"].get("normalize")
    return {"schema_version": card["schema_version"], "name": arch["name"],
            "in_channels": arch["in_channels"], "num_classes": arch["num_classes"],
            "class_names": card["classes"]["names"],
            "normalize": None if norm is None else {"mean": norm["mean"], "std": norm["std"],
                                                    "name": norm.get("name")},
            **{k: v for k, v in card.items() if k not in ("schema_version",)}}


def format_card(card: dict, source=None) -> str:
    """The card as readable text (``unetlab info``)."""
    arch, inp, classes, geo = (card["architecture"], card["input"], card["classes"],
                               card["geometry"])
    lines = []
    if source is not None:
        lines.append(f"model card of {source}" + (" (assumed: saved before cards)"
                                                  if card.get("assumed") else ""))
    opts = ", ".join(f"{k}={v}" for k, v in sorted((arch.get("options") or {}).items()))
    lines.append(f"architecture  {arch['name']} ({arch.get('spatial_dims', 2)}-D)"
                 + (f": {opts}" if opts else ""))
    chans = inp.get("channels")
    lines.append(f"input         {arch['in_channels']} channel(s)"
                 + (f" ({', '.join(chans)})" if chans else ""))
    scaling = ("integers divided by their type's maximum (uint8 /255, uint16 /65535), "
               "floats as they are") if inp.get("scaling", "dtype") == "dtype" else "raw values"
    lines.append(f"  scaling     {scaling}")
    norm = inp.get("normalize")
    if norm:
        fmt = lambda v: "[" + ", ".join(f"{x:.4g}" for x in v) + "]"  # noqa: E731
        lines.append(f"  normalise   ({norm.get('name', 'custom')}) (x - {fmt(norm['mean'])}) / "
                     f"{fmt(norm['std'])}")
    else:
        lines.append("  normalise   none")
    if inp.get("scale", 1.0) != 1.0:
        lines.append(f"  resolution  images resized by {inp['scale']:g} before the model")
    ignore = classes.get("ignore_index")
    lines.append(f"classes       {arch['num_classes']}: {', '.join(classes['names'])}"
                 + (f"; ignore index {ignore}" if ignore is not None else ""))
    lines.append(f"geometry      {geo.get('padding', 'same')} padding, sizes padded to a "
                 f"multiple of {geo.get('divisor', 1)}"
                 + (f", {geo['margin']} px context lost per side" if geo.get("margin") else ""))
    train = card.get("training")
    if train:
        parts = [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                 for k, v in train.items() if v is not None and not isinstance(v, dict | list)]
        lines.append("training      " + ", ".join(parts))
    for key, value in (card.get("extensions") or {}).items():
        lines.append(f"extension     {key}: {value}")
    lines.append(f"schema        {card['schema_version']}, unetlab "
                 f"{card.get('unetlab_version') or 'unknown'}")
    return "\n".join(lines)
