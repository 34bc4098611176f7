"""``fit``: plan, train, evaluate and report within one wall-clock budget."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import UnetlabError

log = logging.getLogger(__name__)


def fit(dataset: str, root, budget_s: float, out_dir, *, options: dict | None = None,
        device: str = "auto", seed: int = 0, cache_dir=None, use_cache: bool = True,
        progress: bool = True, probe: dict | None = None) -> dict:
    """Plan for ``dataset`` on this machine, train within ``budget_s`` seconds in all,
    evaluate the best checkpoint and write the report into ``out_dir``. Returns the
    report dict (also ``out_dir/report.json``)."""
    from .._io import atomic_write_text, write_json
    from ..config import config_from_dict
    from ..training import train
    from ..training.builder import select_device
    from .render import render_plan
    from .session import plan_dataset

    started = time.perf_counter()
    out_dir = Path(out_dir)
    dev = select_device(device)
    planned = plan_dataset(dataset, root, options, budget_s, device=dev, out_dir=out_dir,
                           seed=seed, cache_dir=cache_dir, use_cache=use_cache,
                           started=started, probe=probe)
    plan = planned.plan
    plan.config["train"]["progress"] = progress
    cfg = config_from_dict(plan.config)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "plan.yaml", render_plan(plan, planned.fingerprint,
                                                         planned.probe, budget_s))
    write_json(out_dir / "fingerprint.json", planned.fingerprint.to_dict())
    write_json(out_dir / "probe.json", planned.probe)
    state = {"version": 1, "dataset": dataset, "data": None if root is None else str(root),
             "data_resolved": None if root is None else str(Path(root).resolve()),
             "options": dict(options or {}),
             "budget_s": budget_s, "device": str(dev), "seed": seed,
             "plan": plan.config, "reasons": plan.reasons, "expected": plan.expected,
             "seconds": planned.seconds,
             "class_names": list(planned.fingerprint.class_names)}
    write_json(out_dir / FIT_STATE, state)  # what --resume needs to finish the run

    t_train = time.perf_counter()
    summary = train(cfg)
    write_json(out_dir / FIT_STATE, {**state, "trained": True})
    return _finish(out_dir, cfg, state, summary, planning_s=t_train - started,
                   trained_s=time.perf_counter() - t_train, sessions=1)


def resume_fit(out_dir, *, progress: bool = True) -> dict:
    """Continue an interrupted ``fit`` in ``out_dir`` from ``checkpoints/last`` (its
    training budget counts the time already trained), then evaluate and report as
    :func:`fit` does. One-line errors for a folder that is not such a run."""
    from .._io import write_json
    from ..config import config_from_dict
    from ..errors import read_yaml
    from ..training import train

    out_dir = Path(out_dir)
    state = read_fit_state(out_dir)
    if (out_dir / "report.json").is_file():
        raise UnetlabError(f"{out_dir}: this fit has finished (report.json); nothing to "
                           "resume")
    if not (out_dir / "config.yaml").is_file():
        raise UnetlabError(f"{out_dir}: no config.yaml; the training never started, so "
                           "start it again with --overwrite")
    data = read_yaml(out_dir / "config.yaml")
    if not isinstance(data, dict) or not isinstance(data.get("train"), dict) \
            or not isinstance(data.get("data"), dict):
        raise UnetlabError(f"{out_dir / 'config.yaml'}: not a training config")
    data["train"]["out_dir"] = str(out_dir)  # not through YAML: any folder name holds
    data["train"]["progress"] = progress
    resolved = state.get("data_resolved")
    root = data["data"].get("root")
    if resolved and root and not Path(root).exists() and Path(resolved).exists():
        data["data"]["root"] = resolved  # resumed from another working folder
    cfg = config_from_dict(data)
    earlier = float(sum(state["seconds"].values()))
    sessions = int(state.get("sessions", 1))
    if state.get("trained"):  # stopped during the final evaluation: only that is left
        summary = _read_summary(out_dir)
        return _finish(out_dir, cfg, state, summary, planning_s=earlier,
                       trained_s=float(summary["elapsed_s"]), sessions=sessions)
    if not has_checkpoint(out_dir):
        raise UnetlabError(f"{out_dir}: no checkpoints/last, so the fit stopped before its "
                           "first checkpoint; start it again with --overwrite")
    before = checkpoint_counters(out_dir)
    started = time.perf_counter()
    try:
        summary = train(cfg, resume=True)
    finally:  # a session counts when it trained (its checkpoint's step moved on)
        after = checkpoint_counters(out_dir)
        if after and after[0] > (before[0] if before else 0):
            state["sessions"] = sessions = sessions + 1
            write_json(out_dir / FIT_STATE, state)
    state["trained"] = True
    write_json(out_dir / FIT_STATE, state)
    trained_s = (before[1] if before else 0.0) + time.perf_counter() - started
    return _finish(out_dir, cfg, state, summary, planning_s=earlier, trained_s=trained_s,
                   sessions=sessions)


def _read_summary(out_dir: Path) -> dict:
    import json

    path = out_dir / "summary.json"
    try:
        summary = json.loads(path.read_text())
        ok = isinstance(summary, dict) and all(
            k in summary for k in ("reason", "epochs", "steps", "elapsed_s", "best_metric",
                                   "best_value", "best_epoch")) \
            and isinstance(summary["elapsed_s"], int | float)
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise UnetlabError(f"{path}: missing, unreadable or edited; the training summary "
                           "of this run is needed to report it")
    return summary


def has_checkpoint(out_dir: Path) -> bool:
    """Whether the run has a ``checkpoints/last`` the trainer can resume from."""
    from ..training.checkpoint import checkpoint_exists

    return checkpoint_exists(Path(out_dir) / "checkpoints" / "last")


def checkpoint_counters(out_dir: Path) -> tuple[int, float] | None:
    """``(step, training seconds)`` that ``checkpoints/last`` records; None when it is
    missing or unreadable."""
    from ..training.checkpoint import read_checkpoint_state

    state = read_checkpoint_state(Path(out_dir) / "checkpoints" / "last")
    try:
        return int(state["step"]), float(state["elapsed_s"])
    except (KeyError, TypeError, ValueError):
        return None


FIT_STATE = "fit.json"


def read_fit_state(out_dir: Path) -> dict:
    """``RUN_DIR/fit.json`` (written when ``fit`` has planned), checked."""
    import json

    path = out_dir / FIT_STATE
    if not path.is_file():
        raise UnetlabError(f"{out_dir}: no {FIT_STATE}; --resume continues a run folder of "
                           "`unetlab fit` that was interrupted (made by this version of "
                           "unetlab); for another run use `unetlab train --resume --out DIR`")
    try:
        state = json.loads(path.read_text())
        ok = (isinstance(state, dict) and isinstance(state.get("plan"), dict)
              and isinstance(state.get("seconds"), dict)
              and all(isinstance(v, int | float) for v in state["seconds"].values())
              and isinstance(state.get("budget_s"), int | float)
              and isinstance(state.get("dataset"), str)
              and isinstance(state.get("sessions", 1), int)
              and not isinstance(state.get("sessions", 1), bool))
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise UnetlabError(f"{path}: edited or corrupt; it must hold the plan, the budget "
                           "and the planning times that fit wrote")
    return state


def _finish(out_dir: Path, cfg, state: dict, summary: dict, *, planning_s: float,
            trained_s: float, sessions: int) -> dict:
    """Evaluate ``checkpoints/best`` at native resolution, measure TTA if the budget has
    room, write report.json and report.md. ``planning_s``: the budget spent before
    training (fingerprint, probe, the plan's files); ``trained_s``: the budget spent
    training, over every session (this session's wall clock plus what the checkpoint it
    resumed from records)."""
    from .. import load_model
    from .._io import atomic_write_text, write_json
    from ..compare.stats import machine_description
    from ..training.builder import best_mode
    from ..training.evaluation import evaluate_model, format_table
    from .report import best_row, format_report, native_val_set, selection, write_overlays

    t_report = time.perf_counter()
    budget_s = float(state["budget_s"])
    best_path = out_dir / "checkpoints" / "best"
    if not best_path.exists():
        raise UnetlabError(f"training wrote no best checkpoint in {out_dir}; the budget was "
                           "too short for one validation")
    model = load_model(best_path).eval()
    scale = cfg.data.scale
    val = native_val_set(cfg)
    native = table = tta = None
    overlays = []
    spent = planning_s + trained_s  # the budget so far
    if val is not None:
        t_eval = time.perf_counter()
        result = evaluate_model(model, val, boundary=False, scale=scale)
        eval_s = time.perf_counter() - t_eval
        native = _measures(result)
        table = format_table(result)
        overlays = write_overlays(model, val, out_dir / "overlays", scale=scale)
        tta = _tta_if_time(model, val, scale, eval_s,
                           budget_s - spent - (time.perf_counter() - t_report))
    history = _history(out_dir)
    trained = best_row(history, cfg.train.best_metric, best_mode(cfg))
    report_s = time.perf_counter() - t_report
    report = {
        "dataset": state["dataset"], "data": state.get("data"),
        "budget_s": budget_s, "device": state.get("device"), "seed": state.get("seed"),
        "scale": scale, "machine": machine_description(str(state.get("device"))),
        "plan": state["plan"], "reasons": state.get("reasons", {}),
        "expected": state.get("expected", {}),
        "training": {k: summary[k] for k in ("reason", "epochs", "steps", "elapsed_s",
                                             "best_metric", "best_value", "best_epoch")},
        "timings": {**state["seconds"],
                    "train_s": round(trained_s, 2),
                    "report_s": round(report_s, 2), "total_s": round(spent + report_s, 2)},
        "sessions": sessions,
        "val_training_scale": trained, "val_native": native, "val_native_tta": tta,
        "selection": selection(history, cfg.train.best_metric, best_mode(cfg)),
        "overlays": overlays,
        "class_names": list(state.get("class_names") or []),
    }
    write_json(out_dir / "report.json", report)
    atomic_write_text(out_dir / "report.md", format_report(report, table))
    return report


def _measures(result: dict) -> dict:
    return {k: v for k, v in result["metrics"].items() if k != "confusion_matrix"}


def _tta_if_time(model, val, scale: float, eval_s: float, left_s: float) -> dict:
    """The best checkpoint measured again with test-time augmentation (``predict --tta``:
    the views the training augmentation showed the model, e.g. the 8 flips and 90-degree
    turns for ``paper``, left-right mirrors for ``upright``), when the time left in the
    budget covers its estimated cost (one plain pass times the number of views, + 15 %).
    ``{"measures", "transforms", "mode", "seconds"}`` or ``{"skipped": reason, ...}``."""
    from ..inference.tiling import tta_for_card, tta_transforms
    from ..training.evaluation import evaluate_model

    mode = tta_for_card("auto", getattr(model, "unetlab_card", None))  # views it was shown
    if not mode:
        return {"skipped": "the training augmentation showed no flips or rotations",
                "transforms": 1, "mode": None}
    n = len(tta_transforms(2, mode, square=True))  # evaluation's whole-image tile is square
    need = eval_s * n * 1.15
    if need > left_s:
        return {"skipped": f"would take ~{need:.0f}s; {max(left_s, 0):.0f}s of the budget "
                           "left", "transforms": n, "mode": mode}
    t = time.perf_counter()
    result = evaluate_model(model, val, boundary=False, scale=scale, tta=mode)
    return {"measures": _measures(result), "transforms": n, "mode": mode,
            "seconds": round(time.perf_counter() - t, 2)}


def _history(out_dir: Path) -> list[dict]:
    """Rows of metrics.csv as dicts of floats (the trainer's validation history)."""
    import csv

    path = out_dir / "metrics.csv"
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            out = {}
            for k, v in row.items():
                try:
                    out[k] = float(v) if v not in ("", None) else None
                except ValueError:
                    out[k] = v
            rows.append(out)
    return rows
