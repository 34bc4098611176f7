"""Result tables: one CSV row per entry (every number, its std and interval over seeds,
per-class IoU as ``iou.<class>`` columns) and a Markdown report: how the entries were
trained (budget mode, seeds, machine, command), the headline columns as mean +- std,
and verdicts only where the intervals over seeds separate."""

from __future__ import annotations

import csv
import math
from pathlib import Path

# (key, Markdown header, format)
COLUMNS = (
    ("label", "entry", "{}"),
    ("loss", "loss", "{}"),
    ("parameters", "params", "{:,}"),
    ("gflops", "GFLOPs", "{:.2f}"),
    ("peak_train_mb", "train MiB", "{:.0f}"),
    ("peak_infer_mb", "infer MiB", "{:.0f}"),
    ("latency_ms", "latency ms", "{:.1f}"),
    ("train_images_per_s", "train img/s", "{:.1f}"),
    ("train_steps", "steps", "{}"),
    ("miou", "mIoU", "{:.3f}"),
    ("mdice", "mDice", "{:.3f}"),
    ("pixel_accuracy", "global acc", "{:.3f}"),
    ("class_accuracy", "class acc", "{:.3f}"),
    ("boundary_f1", "BF1", "{:.3f}"),
    ("checkerboard", "checkerboard", "{:.3f}"),
    ("blockiness", "blockiness", "{:.2f}"),
)


def _fmt(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


def _cell(row: dict, key: str, fmt: str) -> str:
    """``mean ± std`` where the row has a spread over seeds, else the value."""
    text = _fmt(row.get(key), fmt)
    std = row.get(f"{key}_std")
    if std is not None and text != "n/a" and key != "train_steps":
        text += f" ± {_fmt(std, fmt.replace(',', ''))}"
    return text


def _class_names(rows: list[dict]) -> list[str]:
    names: list[str] = []
    for row in rows:
        for n in row.get("class_names", []):
            if n not in names:
                names.append(n)
    return names


def csv_rows(rows: list[dict]) -> list[dict]:
    """Flat dicts, one per entry: the scalar columns, ``options`` as ``k=v;...``, and
    one ``iou.<class name>`` column per class."""
    names = _class_names(rows)
    flat = []
    for row in rows:
        item = {}
        for k, _, _ in COLUMNS:
            item[k] = row.get(k)
            if f"{k}_std" in row:
                interval = row.get(f"{k}_interval") or [None, None]
                item[f"{k}_std"] = row.get(f"{k}_std")
                item[f"{k}_lo"], item[f"{k}_hi"] = interval
        item["seeds"] = " ".join(str(x) for x in row.get("seeds") or [])
        item["model"] = row.get("model")
        item["options"] = ";".join(f"{k}={v}" for k, v in (row.get("options") or {}).items())
        item["device"] = row.get("device")
        item["train_time_s"] = row.get("train_time_s")
        per_class = dict(zip(row.get("class_names", []), row.get("iou_per_class", [])))
        for n in names:
            item[f"iou.{n}"] = per_class.get(n)
        flat.append(item)
    return flat


def write_csv(rows: list[dict], path) -> Path:
    """Write :func:`csv_rows` to ``path`` (empty cells for missing values)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = csv_rows(rows)
    fields = list(flat[0]) if flat else [k for k, _, _ in COLUMNS]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for item in flat:
            writer.writerow({k: "" if v is None else v for k, v in item.items()})
    return path


def markdown_table(rows: list[dict]) -> str:
    """The headline columns as a GitHub Markdown table."""
    head = "| " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    align = "|" + "|".join("---" if k in ("label", "loss") else "---:"
                           for k, _, _ in COLUMNS) + "|"
    body = ["| " + " | ".join(_cell(row, k, f) for k, _, f in COLUMNS) + " |"
            for row in rows]
    return "\n".join([head, align, *body])


def per_class_table(rows: list[dict]) -> str:
    """Per-class IoU, one column per entry."""
    names = _class_names(rows)
    head = "| class | " + " | ".join(r["label"] for r in rows) + " |"
    align = "|---|" + "---:|" * len(rows)
    lines = [head, align]
    for n in names:
        cells = []
        for r in rows:
            per = dict(zip(r.get("class_names", []), r.get("iou_per_class", [])))
            cells.append(_fmt(per.get(n), "{:.3f}"))
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def setup_lines(rows: list[dict], spec=None, command: str | None = None) -> list[str]:
    """How the numbers were made: budget mode, seeds, machine, command."""
    from .stats import LEVEL, MIN_SEEDS, budget_mode

    first = rows[0] if rows else {}
    runs = first.get("runs") or [first]
    seeds = first.get("seeds") or [first.get("seed")]
    lines = []
    if spec is not None:
        lines.append(f"- Budget: {budget_mode(spec.base)}.")
    lines.append(f"- Seeds: {', '.join(str(s) for s in seeds)} ({len(seeds)} per entry); "
                 f"cells are mean ± standard deviation over seeds; intervals are "
                 f"{LEVEL:.0%} bootstrap intervals of the mean over seeds; a verdict needs "
                 f"{MIN_SEEDS} seeds on each side, and latency and memory get none (load "
                 "changes between entries are not in any entry's spread).")
    lines.append(f"- Machine: {runs[0].get('machine') or first.get('device', '?')} "
                 f"(device {first.get('device', '?')}).")
    if command:
        lines.append(f"- Command: `{command}`")
    lines.append("- Memory: peak above the process baseline (CPU RSS) or CUDA max "
                 "allocated; latency: median of batch-1 forward passes at the evaluation "
                 "size; checkerboard / blockiness: unetlab.compare.artifacts on the logits "
                 "of the first validation images (0 = none).")
    return lines


def verdict_lines(rows: list[dict]) -> list[str]:
    """One sentence per metric (unetlab.compare.stats.verdicts)."""
    from .stats import verdict_sentence, verdicts

    found = verdicts(rows)
    if not found:
        return ["No verdict: fewer than two entries with the metric."]
    return [f"- {verdict_sentence(v)}" for v in found]


def write_markdown(rows: list[dict], path, *, title: str = "unetlab compare", spec=None,
                   command: str | None = None) -> Path:
    """The setup, the headline table, the verdicts and the per-class IoU table."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (f"# {title}\n\n" + "\n".join(setup_lines(rows, spec, command)) + "\n\n"
            + markdown_table(rows)
            + "\n\n## Verdicts (only where the intervals over seeds separate)\n\n"
            + "\n".join(verdict_lines(rows))
            + "\n\n## IoU per class (mean over seeds)\n\n" + per_class_table(rows) + "\n")
    path.write_text(text)
    return path
