"""The comparison file: one YAML with a shared training setup and the entries to compare.

::

    base:            # a training config (sections of unetlab.config): data, loss, optim,
      data: {...}    # schedule, train; every entry trains with exactly this setup
      train: {time_budget_s: 180, epochs: null}
    seeds: 3         # train every entry with 3 seeds (train.seed, +1, +2) or a list
                     # [0, 1, 2]; the tables show mean +- std and verdicts only where
                     # the intervals over seeds separate (unetlab.compare.stats)
    eval:            # how costs are measured
      size: [360, 480]        # FLOPs, latency and inference memory at this input size
      latency_runs: 10
      memory: process         # process | inline | off (see unetlab.compare.measure)
      artifact_images: 4      # validation images used for the checkerboard score/crops
    models:          # suite "models": architectures
      - {label: unet, name: unet, options: {channels: [16, 32, 64, 128, 256]}}
    upsampling:      # suite "upsampling": one U-Net, each upsampling method
      model: {name: unet, options: {...}}
      methods: [transpose, bilinear, nearest, unpool]
    losses:          # suite "losses": one model, each loss
      model: {name: unet, options: {...}}
      losses: [{label: ce, name: ce}, {label: dice, name: dice}]

An entry may also carry ``loss: {name, options}`` to replace the base loss, and
``data: {...}`` to replace keys of ``base.data`` for that entry only (an ablation of the
data: ``augment: none``, ``options: {train_slices: 5}``).
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UnetlabError, read_yaml

log = logging.getLogger(__name__)

SUITES = ("models", "upsampling", "losses")
_LABEL = re.compile(r"[A-Za-z0-9_.+=-][A-Za-z0-9_.+=, -]{0,99}")
_TOP_KEYS = ("base", "seeds", "eval", *SUITES)
_EVAL_DEFAULTS = {"size": None, "latency_runs": 10, "memory": "process",
                  "artifact_images": 4, "train_batch": None}


@dataclass
class Entry:
    """One trained model of a suite: a label, the model and the loss it trains with."""

    label: str
    model: str
    options: dict = field(default_factory=dict)
    loss: dict | None = None
    data: dict | None = None


@dataclass
class CompareSpec:
    """A parsed comparison file: the base training config (nested dicts), the
    measurement settings and the entries of each suite."""

    base: dict
    eval: dict
    suites: dict[str, list[Entry]]
    source: str = "<dict>"
    seeds: list[int] = field(default_factory=lambda: [0])


def _entry(raw, where: str) -> Entry:
    if not isinstance(raw, dict) or "name" not in raw:
        raise UnetlabError(f"{where} must be a mapping with at least 'name', got {raw!r}")
    unknown = sorted(set(raw) - {"label", "name", "options", "loss", "data"})
    if unknown:
        raise UnetlabError(f"{where}: unknown key(s) {unknown}; valid: label, name, "
                           "options, loss, data")
    if raw.get("data") is not None and not isinstance(raw["data"], dict):
        raise UnetlabError(f"{where}.data must be a mapping of base.data keys, "
                           f"got {raw['data']!r}")
    return Entry(label=str(raw.get("label", raw["name"])), model=str(raw["name"]),
                 options=dict(raw.get("options") or {}), loss=raw.get("loss"),
                 data=dict(raw["data"]) if raw.get("data") else None)


def _check_label(label: str, where: str) -> None:
    """A label names the entry's folder under ``OUT/<suite>/``: it must stay there."""
    if not _LABEL.fullmatch(label) or label in (".", ".."):
        raise UnetlabError(f"{where}: label {label!r} cannot name a folder inside --out; use "
                           "letters, digits, '.', '_' and '-' (no '/', '\\' or '..')")


def _suite(name: str, raw, where: str) -> list[Entry]:
    if name == "models":
        if not isinstance(raw, list) or not raw:
            raise UnetlabError(f"{where} must be a non-empty list of models")
        entries = [_entry(r, f"{where}[{i}]") for i, r in enumerate(raw)]
    else:
        key = "methods" if name == "upsampling" else "losses"
        if not isinstance(raw, dict) or "model" not in raw or key not in raw:
            raise UnetlabError(f"{where} must be a mapping with 'model' and '{key}'")
        base = _entry(raw["model"], f"{where}.model")
        entries = []
        for i, item in enumerate(raw[key] or []):
            if name == "upsampling":
                entries.append(Entry(label=f"{base.label}_{item}", model=base.model,
                                     options={**base.options, "upsample": str(item)}))
            else:
                if not isinstance(item, dict) or "name" not in item:
                    raise UnetlabError(f"{where}.losses[{i}] must be a mapping with 'name'")
                entries.append(Entry(label=str(item.get("label", item["name"])),
                                     model=base.model, options=dict(base.options),
                                     loss={"name": item["name"],
                                           "options": dict(item.get("options") or {})}))
        if not entries:
            raise UnetlabError(f"{where}.{key} is empty")
    for e in entries:
        _check_label(e.label, where)
    labels = [e.label for e in entries]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise UnetlabError(f"{where}: duplicate label(s) {dupes}; give each entry a label")
    return entries


def parse_seeds(raw, first: int, where: str) -> list[int]:
    """``seeds:`` as a list of distinct ints: N -> first, first+1, ..., or a list."""
    if isinstance(raw, bool):
        raise UnetlabError(f"{where}: seeds must be a count >= 1 or a list of integers, "
                           f"got {raw!r}")
    if isinstance(raw, int):
        if raw < 1:
            raise UnetlabError(f"{where}: seeds must be >= 1, got {raw}")
        return [first + i for i in range(raw)]
    if isinstance(raw, list) and raw and all(isinstance(x, int) and not isinstance(x, bool)
                                             for x in raw):
        if len(set(raw)) != len(raw):
            raise UnetlabError(f"{where}: seeds {raw} repeat a seed")
        return list(raw)
    raise UnetlabError(f"{where}: seeds must be a count >= 1 or a non-empty list of "
                       f"integers, got {raw!r}")


def spec_from_dict(data: dict, source: str = "<dict>", *, overrides=None,
                   data_root: str | None = None, seeds=None) -> CompareSpec:
    """Validate a comparison mapping; ``overrides`` are dotted ``section.key=value``
    strings applied to ``base`` (as ``unetlab train --set``), ``data_root`` sets
    ``base.data.root``, ``seeds`` (a count or a list) replaces the file's ``seeds``."""
    from ..config import apply_overrides, config_from_dict

    if not isinstance(data, dict):
        raise UnetlabError(f"{source}: the top level must be a mapping")
    unknown = sorted(set(data) - set(_TOP_KEYS))
    if unknown:
        raise UnetlabError(f"{source}: unknown key(s) {unknown}; valid: {', '.join(_TOP_KEYS)}")
    for o in overrides or ():
        key = str(o).split("=", 1)[0].strip()
        if key in ("model", "model.name", "model.options") or key.startswith("model.options."):
            raise UnetlabError(f"--set {key}: each entry of {source} names its own model and "
                               "options, which replace the base's; edit the entries instead")
    base = apply_overrides(copy.deepcopy(data.get("base") or {}), overrides)
    if data_root is not None:
        base.setdefault("data", {})["root"] = str(data_root)
    config_from_dict(base)  # validate the shared setup early (UnetlabError naming the key)
    ev = dict(data.get("eval") or {})
    bad = sorted(set(ev) - set(_EVAL_DEFAULTS))
    if bad:
        raise UnetlabError(f"{source}: unknown eval key(s) {bad}; valid: "
                           f"{', '.join(_EVAL_DEFAULTS)}")
    ev = {**_EVAL_DEFAULTS, **ev}
    suites = {name: _suite(name, data[name], f"{source}: {name}")
              for name in SUITES if data.get(name) is not None}
    if "losses" in suites and any(str(o).split("=", 1)[0].strip().startswith("loss")
                                  for o in overrides or ()):
        log.warning("--set loss.*: the losses suite's entries each name their loss, which "
                    "replaces the base's; the setting applies to the other suites only")
    for entries in suites.values():  # each entry's data override must be valid too
        for e in entries:
            if e.data:
                config_from_dict({**base, "data": {**(base.get("data") or {}), **e.data}})
    first = int((base.get("train") or {}).get("seed") or 0)
    raw_seeds = seeds if seeds is not None else data.get("seeds", 1)
    where = "--seeds" if seeds is not None else source
    return CompareSpec(base=base, eval=ev, suites=suites, source=source,
                       seeds=parse_seeds(raw_seeds, first, where))


def load_spec(path, *, overrides=None, data_root: str | None = None,
              seeds=None) -> CompareSpec:
    """Read a comparison YAML file (see the module docstring)."""
    path = Path(path)
    data = read_yaml(path, "comparison config")
    return spec_from_dict(data, str(path), overrides=overrides, data_root=data_root,
                          seeds=seeds)


def quick_config_path() -> Path:
    """``configs/compare_quick.yaml`` of the source tree (``unetlab compare --quick``)."""
    candidates = [Path(__file__).resolve().parents[3] / "configs" / "compare_quick.yaml",
                  Path.cwd() / "configs" / "compare_quick.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    raise UnetlabError("--quick needs configs/compare_quick.yaml (run from the unetlab "
                       "source tree or pass --config)")
