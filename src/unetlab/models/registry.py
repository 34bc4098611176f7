"""A plain registry of model builders: ``create_model(name, ...)`` and friends.

Each builder is a callable ``(in_channels, num_classes, spatial_dims, **options)``.
The arguments a model was built with are kept on the model (``model.unetlab_config``)
so that a saved model can be rebuilt exactly by :func:`unetlab.load_model`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_FIXED = ("in_channels", "num_classes", "spatial_dims")


def register_model(name: str, builder: Callable[..., nn.Module] | None = None):
    """Register ``builder`` under ``name``; usable as a decorator.

    >>> @register_model("my_net")
    ... def my_net(in_channels, num_classes, spatial_dims=2, width=16): ...
    """

    def _add(fn):
        if not isinstance(name, str) or not name:
            raise ValueError("model name must be a non-empty string")
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"a model named {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return _add(builder) if builder is not None else _add


def _ensure_builtin() -> None:
    from . import fcn, resunet, segnet, unet  # noqa: F401  (registration side effect)


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    _ensure_builtin()
    return sorted(_REGISTRY)


def model_options(name: str) -> dict[str, object]:
    """The options a model accepts, with their defaults."""
    builder = _get(name)
    sig = inspect.signature(builder)
    return {
        k: p.default
        for k, p in sig.parameters.items()
        if k not in _FIXED and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def _get(name: str) -> Callable[..., nn.Module]:
    _ensure_builtin()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; valid models: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def create_model(
    name: str, *, in_channels: int, num_classes: int, spatial_dims: int = 2, **options
) -> nn.Module:
    """Build a registered model. Returns a module whose forward gives logits
    ``(N, num_classes, *spatial)``.

    Raises ValueError for an unknown name or option, listing the valid ones.
    """
    builder = _get(name)
    valid = model_options(name)
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(key, valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"model {name!r} has no option {key!r}{hint}; valid options: {sorted(valid)}"
            )
    for arg, value in (("in_channels", in_channels), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer, got {value!r}")
    try:
        model = builder(
            in_channels=in_channels, num_classes=num_classes, spatial_dims=spatial_dims,
            **options
        )
    except ValueError as exc:  # e.g. channels="abc": name the options
        message = " ".join(str(exc).split())
        if "model" in message and name in message:
            raise
        raise ValueError(f"model {name!r} with options {_jsonable(options)}: {message}") \
            from None
    if not callable(getattr(model, "geometry", None)):
        from .geometry import Geometry

        geo = Geometry(spatial_dims=spatial_dims)  # a plain network: no size constraint
        model.geometry = lambda: geo
    resolved = {k: options.get(k, v) for k, v in valid.items()}
    model.unetlab_config = {
        "name": name,
        "in_channels": in_channels,
        "num_classes": num_classes,
        "spatial_dims": spatial_dims,
        "options": _jsonable(resolved),
    }
    return model


def _jsonable(value):
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
