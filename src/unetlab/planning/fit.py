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
    from .. import load_model
    from .._io import atomic_write_text, write_json
    from ..compare.stats import machine_description
    from ..config import config_from_dict
    from ..training import train
    from ..training.builder import best_mode, select_device
    from ..training.evaluation import evaluate_model, format_table
    from .render import render_plan
    from .report import best_row, format_report, native_val_set, write_overlays
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

    t_train = time.perf_counter()
    summary = train(cfg)
    t_report = time.perf_counter()
    best_path = out_dir / "checkpoints" / "best"
    if not best_path.exists():
        raise UnetlabError(f"training wrote no best checkpoint in {out_dir}; the budget was "
                           "too short for one validation")
    model = load_model(best_path).eval()
    scale = cfg.data.scale
    val = native_val_set(cfg)
    native = table = tta = None
    overlays = []
    if val is not None:
        t_eval = time.perf_counter()
        result = evaluate_model(model, val, boundary=False, scale=scale)
        eval_s = time.perf_counter() - t_eval
        native = _measures(result)
        table = format_table(result)
        overlays = write_overlays(model, val, out_dir / "overlays", scale=scale)
        tta = _tta_if_time(model, val, scale, eval_s, budget_s - (time.perf_counter()
                                                                  - started))
    trained = best_row(_history(out_dir), cfg.train.best_metric,
                       best_mode(cfg))
    finished = time.perf_counter()
    report = {
        "dataset": dataset, "data": None if root is None else str(root),
        "budget_s": budget_s, "device": str(dev), "seed": seed, "scale": scale,
        "machine": machine_description(str(dev)),
        "plan": plan.config, "reasons": plan.reasons, "expected": plan.expected,
        "training": {k: summary[k] for k in ("reason", "epochs", "steps", "elapsed_s",
                                             "best_metric", "best_value", "best_epoch")},
        "timings": {**planned.seconds, "train_s": round(t_report - t_train, 2),
                    "report_s": round(finished - t_report, 2),
                    "total_s": round(finished - started, 2)},
        "val_training_scale": trained, "val_native": native, "val_native_tta": tta,
        "overlays": overlays,
        "class_names": list(planned.fingerprint.class_names),
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
