"""What ``unetlab plan`` and ``unetlab fit`` share: read the dataset, measure it,
probe the machine, plan. Every step's seconds are kept (the budget counts them)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..data.splits import DEFAULT_VAL_FRACTION
from ..errors import UnetlabError
from .fingerprint import Fingerprint, compute_fingerprint
from .planner import (
    MIN_STEPS,
    Plan,
    augmentation,
    loader_workers,
    make_plan,
    probe_geometry,
)
from .probe import PROBE_SECONDS, probe_machine

log = logging.getLogger(__name__)

SETUP_S = 3.0  # building model, loss, optimiser and datasets in the trainer
PROBE_SHARE = 0.03  # of the budget, at most, spent measuring wider networks


@dataclass
class Planned:
    fingerprint: Fingerprint
    probe: dict
    plan: Plan
    seconds: dict


def own_val_split(name: str, root, options: dict) -> bool:
    """Whether the dataset has its own labelled ``val`` split."""
    from ..data import SYNTHETIC, build_dataset

    if name in SYNTHETIC:
        return True
    if name == "folder":  # the folder format falls back to ROOT for any split name
        images = options.get("images", "images")
        return root is not None and (Path(root) / "val" / str(images)).is_dir()
    try:
        return len(build_dataset(name, root, split="val", cache=False, **options)) > 0
    except (UnetlabError, ValueError, OSError):
        return False


def plan_dataset(name: str, root, options: dict | None, budget_s: float, *,
                 device="cpu", out_dir="runs/fit", seed: int = 0, cache_dir=None,
                 use_cache: bool = True, started: float | None = None,
                 count_spent: bool = True, probe: dict | None = None) -> Planned:
    """Fingerprint, probe and plan. ``count_spent``: the plan's budget includes the time
    already spent here (``fit``); ``plan`` writes a config for a later run (no).
    ``probe``: a saved probe (``probe.json`` of an earlier run) instead of probing."""
    import torch

    from ..data import build_dataset

    options = dict(options or {})
    started = time.perf_counter() if started is None else started
    t0 = time.perf_counter()
    dataset = build_dataset(name, root, split="train", cache=False, **options)
    fp = compute_fingerprint(dataset, name=name,
                             has_own_val=own_val_split(name, root, options))
    if fp.held_out_only:
        read = "" if fp.sampled_images == fp.num_images else \
            f" (of the {fp.sampled_images} of {fp.num_images} images read)"
        log.warning("class(es) %s appear only in the last %d%% of the images by name%s, "
                    "which are held out for validation: training may never see them; rename "
                    "one such image to sort earlier, or give the data a val/ folder",
                    ", ".join(fp.held_out_only), round(100 * DEFAULT_VAL_FRACTION), read)
    t1 = time.perf_counter()
    device = torch.device(device)
    depth, tile, batch = probe_geometry(fp, device.type)
    left = budget_s - (t1 - started)
    if probe is None:
        probe = probe_machine(depth=depth, tile=tile, batch=batch, in_channels=fp.channels,
                              num_classes=fp.num_classes, device=device, budget_s=left,
                              min_steps=MIN_STEPS, cache_dir=cache_dir, use_cache=use_cache,
                              seconds=min(PROBE_SECONDS, max(0.05, 0.004 * budget_s)),
                              time_limit_s=max(1.0, PROBE_SHARE * budget_s))
    else:
        check_probe(probe, device.type, tile, batch)
    preset = augmentation(fp)[0]
    # rule 6 falls back from `paper` to `light` when the budget is short: time both, so
    # that the plan counts the preset it chooses
    presets = [preset] + (["light"] if augmentation(fp, 0)[0] != preset else [])
    measured_on = {"dataset": name, "root": None if root is None else str(root),
                   "options": {k: str(v) for k, v in sorted(options.items())},
                   "preset": preset, "tile": tile, "presets": presets}
    saved = probe.get("input_s_by_preset")
    if probe.get("input_for") == measured_on and isinstance(saved, dict) \
            and all(_positive(saved.get(p)) for p in presets):
        times = {p: float(saved[p]) for p in presets}  # a saved probe of this data
    else:
        limit = min(2.0, max(0.2, 0.002 * budget_s)) / len(presets)
        times = {p: measure_input(name, root, options, p, tile, time_limit_s=limit)
                 for p in presets}
        probe = {**probe, "input_s_per_tile": times[preset], "input_for": measured_on,
                 "input_s_by_preset": times}
    input_s = times[preset]
    t2 = time.perf_counter()
    setup = SETUP_S
    if count_spent and loader_workers(device.type, probe):
        # the trainer decodes the training and validation images once before its
        # loader workers start; the fingerprint's reading rate says for how long
        per_image = (t1 - t0) / max(1, fp.sampled_images)
        # (num_images holds the held-out images when there is no own val split)
        setup += per_image * fp.num_images * (1.25 if fp.has_own_val else 1.0)
    spent = (t2 - started) + setup if count_spent else 0.0
    plan = make_plan(fp, probe, budget_s, dataset=name, root=root, data_options=options,
                     spent_s=spent, out_dir=str(out_dir), seed=seed,
                     input_s_per_tile=input_s, light_input_s=times.get("light"))
    seconds = {"fingerprint_s": round(t1 - t0, 2), "probe_s": round(t2 - t1, 2)}
    log.info("planned in %.1fs (fingerprint %.1fs, probe and input %.1fs)", t2 - t0,
             t1 - t0, t2 - t1)
    return Planned(fingerprint=fp, probe=probe, plan=plan, seconds=seconds)


def _positive(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def measure_input(name: str, root, options: dict, preset: str, tile: int, *,
                  samples: int = 6, time_limit_s: float = 1.0) -> float | None:
    """Seconds to augment one training tile of ``tile`` px with ``preset`` and make its
    tensors, in one process, from decoded images (training keeps them decoded in memory):
    the input pipeline's share of a step. ``None`` when nothing could be timed."""
    from ..data.transforms import augmentation_threads

    try:
        with augmentation_threads():                  # as the trainer runs it
            return _time_input(name, root, options, preset, tile, samples, time_limit_s)
    except Exception as exc:  # an estimate: the plan goes on without it
        log.warning("input pipeline not measured (%s); the plan counts the network only",
                    exc)
        return None


def _time_input(name, root, options, preset, tile, samples, time_limit_s) -> float | None:
    from ..data import build_dataset, build_transforms

    ds = build_dataset(name, root, split="train", cache=True,
                       transform=build_transforms(preset, tile), **options)
    n = len(ds)
    if n == 0:
        return None
    picks = sorted({round(i * (n - 1) / max(1, samples - 1)) for i in range(samples)})
    for i in picks:
        ds[i]                          # decodes into the cache (not timed) and warms up
    done, start = 0, time.perf_counter()
    while True:
        for i in picks:
            ds[i]
            done += 1
        took = time.perf_counter() - start
        if took >= time_limit_s or done >= 8 * len(picks):
            return took / done


def check_probe(probe: dict, device_type: str, tile: int, batch: int) -> None:
    """A saved probe must be for this device and the geometry the planner probes."""
    try:
        ok = (probe["device"] == device_type and int(probe["tile"]) == tile
              and int(probe["batch"]) == batch and probe["steps_per_s"])
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise UnetlabError(f"the saved probe does not fit: it needs device {device_type!r}, "
                           f"tile {tile}, batch {batch} and steps_per_s")
    amp, cl, modes = probe.get("amp", "none"), probe.get("channels_last", False), \
        probe.get("modes", {})
    if amp not in ("none", "bf16") or not isinstance(cl, bool) or not isinstance(modes, dict):
        raise UnetlabError("the saved probe's numeric mode is malformed: amp must be 'none' "
                           "or 'bf16', channels_last true or false, modes an object")
    if amp == "bf16" and device_type == "cpu":
        from ..inference.cpu import cpu_features

        if not cpu_features().bf16:
            raise UnetlabError("the saved probe chose bf16, which this CPU does not compute "
                               "natively (it would be several times slower here); probe "
                               "this machine instead (leave out --probe)")


def load_probe(path) -> dict:
    """A probe.json written by ``unetlab fit`` (one-line error otherwise)."""
    import json

    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UnetlabError(f"{path}: not a readable probe JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UnetlabError(f"{path}: not a probe (expected a JSON object)")
    return data
