"""Train every entry of a suite under the same setup and measure it.

For each entry (see :mod:`unetlab.compare.spec`) :func:`run_suite`

1. builds the training config: the shared ``base`` plus the entry's model (and loss),
   ``train.out_dir = OUT/<suite>/<label>/run``, and trains it with
   :class:`unetlab.training.Trainer` (same data, split, augmentation, loss, optimizer
   and budget for every entry);
2. evaluates the final model on the validation split through the trainer's validation,
   which is the one evaluator (:func:`unetlab.training.evaluation.evaluate_model`, the
   numbers ``unetlab evaluate`` gives for the run's last checkpoint on that split);
3. measures parameters, FLOPs and latency at the evaluation size, peak training and
   inference memory (:mod:`unetlab.compare.measure`), training images/s (the trainer's
   own count, data loading included) and the checkerboard score of the output logits on
   the first validation images (:mod:`unetlab.compare.artifacts`);
4. writes ``OUT/<suite>/<label>/seed_<s>/result.json``. A later run finds it and does
   not retrain the entry, unless the setup changed (a fingerprint of base, entry, seed
   and eval settings).

Every entry is trained once per seed of ``spec.seeds``; :func:`run_suite` then writes
``OUT/<suite>/<label>/summary.json`` (mean, std and interval over seeds,
:mod:`unetlab.compare.stats`) and the suite's tables with verdicts only where the
intervals separate.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import UnetlabError
from .spec import CompareSpec, Entry

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
RUNNING_FILE = "RUNNING"  # the pid of the process training the entry
METRIC_KEYS = ("miou", "mdice", "pixel_accuracy", "class_accuracy", "boundary_f1",
               "pixel_error")
SUMMARY_FILE = "summary.json"


def fingerprint(spec: CompareSpec, entry: Entry, device: str, seed: int | None = None) -> str:
    """A short hash of everything that decides an entry's result."""
    blob = json.dumps({"base": spec.base, "eval": spec.eval, "entry": entry.__dict__,
                       "device": device, "seed": seed}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _merged(base: dict, over: dict) -> dict:
    """``over`` on ``base``, mappings merged recursively (as ``--set`` on a config)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and \
            isinstance(out.get(key), dict) else value
    return out


def entry_config(spec: CompareSpec, entry: Entry, out_dir: Path, device: str,
                 seed: int | None = None):
    """The resolved :class:`unetlab.config.Config` an entry trains with."""
    from ..config import config_from_dict

    data = copy.deepcopy(spec.base)
    data["model"] = {**data.get("model", {}), "name": entry.model,
                     "options": copy.deepcopy(entry.options)}
    if entry.loss is not None:
        data["loss"] = copy.deepcopy(entry.loss)
    if entry.data:  # merged key by key: an entry's data.options keeps the base's others
        data["data"] = _merged(data.get("data", {}), copy.deepcopy(entry.data))
    train = data.setdefault("train", {})
    train["out_dir"] = str(out_dir / "run")
    train["device"] = device
    train.setdefault("progress", False)
    if seed is not None:
        train["seed"] = int(seed)
    return config_from_dict(data)


def _final_metrics(trainer) -> dict:
    last = trainer.history[-1] if trainer.history else {}
    if "miou" in last and last.get("step") == trainer.step:
        return dict(last)
    return trainer.validate()


def _eval_size(spec: CompareSpec, val_set) -> tuple[int, int]:
    size = spec.eval.get("size")
    if size is None:
        h, w = val_set[0]["image"].shape[-2:]
        return int(h), int(w)
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def _artifact_outputs(net, val_set, count: int, device) -> tuple[list, list]:
    """Logits of the first ``count`` validation images (CPU) and the items."""
    net.eval()
    logits, items = [], []
    with torch.no_grad():
        for i in range(min(count, len(val_set))):
            item = val_set[i]
            out = net(item["image"][None].to(device)).float().cpu()[0]
            logits.append(out)
            items.append(item)
    return logits, items


def _save_crop(entry_dir: Path, item: dict, logits: torch.Tensor, palette) -> None:
    """Input, ground truth and prediction of the first validation image, as arrays."""
    image = item["image"].numpy()
    np.savez_compressed(entry_dir / "crop.npz", image=image,
                        mask=item["mask"].numpy().astype(np.int16),
                        prediction=logits.argmax(0).numpy().astype(np.int16),
                        palette=np.asarray(palette, dtype=np.uint8))


def _resolved_amp(spec: CompareSpec, entry: Entry, device: str) -> str:
    """The autocast an entry trains with on this machine ("none", "bf16", "fp16")."""
    import torch

    from ..training.builder import resolve_amp, select_device

    amp = str(((spec.base.get("train") or {}).get("amp")) or "none")
    dtype = resolve_amp(amp, select_device(device))
    return {None: "none", torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, str(dtype))


def _check_not_running(entry_dir: Path, label: str) -> None:
    """Refuse to touch a run that another live process is training (``--only`` splits)."""
    marker = entry_dir / RUNNING_FILE
    try:
        pid = int(marker.read_text().strip())
    except (OSError, ValueError):
        return
    if pid != os.getpid():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return  # an interrupted run: set aside like any earlier one
        except PermissionError:
            pass
        raise UnetlabError(f"{label}: {entry_dir} is being trained by process {pid}; wait "
                           f"for it (or remove {marker} if that process is gone)")


def _set_aside(entry_dir: Path) -> Path:
    """Move an earlier run of an entry (retrained because its setup changed, or on
    ``--no-resume``) to ``superseded/<name>-<n>`` beside it: never deleted, and out of
    the ``seed_*`` folders that the suite's tables and curves read."""
    folder = entry_dir.parent / "superseded"
    folder.mkdir(parents=True, exist_ok=True)
    n = 1
    while (folder / f"{entry_dir.name}-{n}").exists():
        n += 1
    target = folder / f"{entry_dir.name}-{n}"
    entry_dir.rename(target)
    return target


def run_entry(spec: CompareSpec, suite: str, entry: Entry, out: Path, *,
              device: str = "cpu", resume: bool = True,
              seed: int | None = None) -> tuple[dict, bool]:
    """Train and measure one entry with one seed (``None``: the base config's seed, in
    ``OUT/<suite>/<label>``); returns (result row, reused from a previous run)."""
    from ..models.profile import count_flops, count_parameters
    from ..training import Trainer
    from ..training.builder import select_device
    from .artifacts import blockiness_score, checkerboard_score
    from .measure import measure_latency, measure_memory
    from .stats import machine_description

    entry_dir = out / suite / entry.label
    if seed is not None:
        entry_dir = entry_dir / f"seed_{seed}"
    key = fingerprint(spec, entry, device, seed)
    amp = _resolved_amp(spec, entry, device)
    result_file = entry_dir / RESULT_FILE
    if resume and result_file.is_file():
        try:
            old = json.loads(result_file.read_text())
        except (OSError, ValueError):
            old = {}
        # train.amp "auto" resolves by machine (bf16 only on CPUs with native bf16): a
        # result is reused only in the numeric mode it was trained in (older results
        # without the field are taken as they are)
        if old.get("fingerprint") == key and old.get("amp", amp) == amp:
            return old, True
        log.info("%s: setup changed since the last run, training again", entry.label)
    _check_not_running(entry_dir, entry.label)
    if entry_dir.is_dir() and any(entry_dir.iterdir()):
        kept = _set_aside(entry_dir)
        log.warning("%s: the earlier run is kept in %s", entry.label, kept)
    entry_dir.mkdir(parents=True, exist_ok=True)
    cfg = entry_config(spec, entry, entry_dir, device, seed)
    if cfg.data.val_split is None:
        raise UnetlabError("the comparison needs a validation split (base.data.val_split)")
    start = time.perf_counter()
    marker = entry_dir / RUNNING_FILE
    marker.write_text(f"{os.getpid()}\n")
    try:
        trainer = Trainer(cfg, overwrite=True)  # this entry's own folder: retrained on purpose
        summary = trainer.fit()
    finally:
        marker.unlink(missing_ok=True)
    metrics = _final_metrics(trainer)
    net, info, dev = trainer.net, trainer.info, select_device(device)
    num_classes = int(info.num_classes)
    in_ch = int(getattr(info, "in_channels", 3))
    h, w = _eval_size(spec, trainer.val_set)
    logits, items = _artifact_outputs(net, trainer.val_set,
                                      int(spec.eval.get("artifact_images") or 0), dev)
    if items and "mask" in items[0]:
        _save_crop(entry_dir, items[0], logits[0], getattr(info, "palette", []))
    rates = [r["images_per_s"] for r in trainer.history if r.get("images_per_s")]
    tile = cfg.data.tile_size
    train_hw = (tile, tile) if isinstance(tile, int) else tuple(tile or (h, w))
    batch = int(spec.eval.get("train_batch") or cfg.data.batch_size)
    kwargs = {"in_channels": in_ch, "num_classes": num_classes,
              **{k: tuple(v) if isinstance(v, list) else v for k, v in entry.options.items()}}
    memory = measure_memory({"name": entry.model, "kwargs": kwargs}, (1, in_ch, h, w),
                            (batch, in_ch, *train_hw), device=dev,
                            mode=str(spec.eval.get("memory", "process")))
    names = list(getattr(info, "class_names", [])) or [str(i) for i in range(num_classes)]
    row = {
        "suite": suite, "label": entry.label, "model": entry.model,
        "options": entry.options, "loss": cfg.loss.name,
        "parameters": count_parameters(net),
        "gflops": count_flops(net, (1, in_ch, h, w), device=dev) / 1e9,
        "eval_size": [h, w],
        "latency_ms": 1e3 * measure_latency(net, (1, in_ch, h, w), device=dev,
                                            runs=int(spec.eval.get("latency_runs", 10))),
        **memory,
        "train_images_per_s": float(np.mean(rates)) if rates else None,
        "train_steps": summary["steps"], "train_time_s": summary["elapsed_s"],
        **{k: metrics.get(k) for k in METRIC_KEYS},
        **{k: metrics[k] for k in ("pixel_error", "rand_error") if k in metrics},
        "class_names": names,
        "iou_per_class": [metrics.get(f"iou.{i}") for i in range(num_classes)],
        "checkerboard": (float(np.mean([checkerboard_score(x) for x in logits]))
                         if logits else None),
        "blockiness": (float(np.mean([blockiness_score(x) for x in logits]))
                       if logits else None),
        "seed": cfg.train.seed, "device": str(dev), "machine": machine_description(str(dev)),
        "wall_s": time.perf_counter() - start, "fingerprint": key, "amp": amp,
    }
    from .._io import write_json

    write_json(result_file, row)
    return json.loads(result_file.read_text()), False


def _check_entries(spec: CompareSpec, suite: str, entries, out: Path, device: str) -> None:
    """Every entry's model name and options and loss name, before anything trains: a
    typo in the last entry used to surface only after the others had trained."""
    import difflib

    from ..losses.factory import list_losses
    from ..models.registry import _get, model_options

    for entry in entries:
        cfg = entry_config(spec, entry, out / suite / entry.label, device,
                           spec.seeds[0] if spec.seeds else None)
        where = f"{spec.source}, {suite} entry {entry.label!r}"
        try:
            _get(cfg.model.name)
        except ValueError as exc:
            raise UnetlabError(f"{where}: {exc}") from None
        valid = {**model_options(cfg.model.name), "spatial_dims": 2}  # create_model's too
        unknown = [k for k in (cfg.model.options or {}) if k not in valid]
        if unknown:
            close = difflib.get_close_matches(unknown[0], valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnetlabError(f"{where}: model {cfg.model.name!r} has no option "
                               f"{unknown[0]!r}{hint}; valid options: {sorted(valid)}")
        if cfg.loss.name not in list_losses():
            close = difflib.get_close_matches(cfg.loss.name, list_losses(), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UnetlabError(f"{where}: unknown loss {cfg.loss.name!r}{hint}; valid "
                               f"losses: {', '.join(list_losses())}")


def run_suite(spec: CompareSpec, suite: str, out, *, device: str = "cpu",
              resume: bool = True, callback=None, command: str | None = None,
              only: list[str] | None = None) -> list[dict]:
    """Run every entry of ``suite`` once per seed of ``spec.seeds``; write each entry's
    ``summary.json`` and the suite's CSV, Markdown table (with the budget mode, seeds,
    machine, ``command`` and verdicts) and plots to ``OUT/<suite>/``; return one
    aggregated row per entry. ``callback(index, total, row, reused)`` is called after
    each run (progress display). ``only``: run just the entries with these labels
    (e.g. to split a suite over processes); the suite's tables are then not written,
    since they would lack the other entries (a later run without ``only`` reuses these
    runs and writes them)."""
    from .._io import write_json
    from .plots import plot_suite
    from .report import write_csv, write_markdown
    from .stats import aggregate

    if suite not in spec.suites:
        raise UnetlabError(f"{spec.source} has no {suite!r} section; it has: "
                           f"{', '.join(spec.suites) or 'none'}")
    out = Path(out)
    entries = spec.suites[suite]
    if only:
        labels = [e.label for e in entries]
        unknown = [o for o in only if o not in labels]
        if unknown:
            raise UnetlabError(f"--only {', '.join(unknown)}: no such entry in the {suite} "
                               f"suite of {spec.source}; it has: {', '.join(labels)}")
        entries = [e for e in entries if e.label in only]
    _check_entries(spec, suite, entries, out, device)
    total = len(entries) * len(spec.seeds)
    rows, done = [], 0
    for entry in entries:
        runs = []
        for seed in spec.seeds:
            run, reused = run_entry(spec, suite, entry, out, device=device, resume=resume,
                                    seed=seed)
            runs.append(run)
            if callback is not None:
                callback(done, total, run, reused)
            done += 1
        row = aggregate(runs)
        write_json(out / suite / entry.label / SUMMARY_FILE, row)
        rows.append(row)
    if only:
        return rows
    folder = out / suite
    write_csv(rows, folder / "results.csv")
    write_markdown(rows, folder / "results.md", title=f"unetlab compare: {suite}",
                   spec=spec, command=command)
    plot_suite(rows, folder, suite=suite)
    return rows
