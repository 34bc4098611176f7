"""Result tables: one CSV row per entry (every number, per-class IoU as ``iou.<class>``
columns) and a Markdown table of the headline columns."""

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
    ("checkerboard", "checkerboard", "{:.2f}"),
)


def _fmt(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    try:
        return fmt.format(value)
    except (ValueError, TypeError):
        return str(value)


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
        item = {k: row.get(k) for k, _, _ in COLUMNS}
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
    body = ["| " + " | ".join(_fmt(row.get(k), f) for k, _, f in COLUMNS) + " |"
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


def write_markdown(rows: list[dict], path, *, title: str = "unetlab compare") -> Path:
    """The headline table and the per-class IoU table in one Markdown file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = rows[0].get("device") if rows else "?"
    text = (f"# {title}\n\nDevice: {device}. Memory: peak above the process baseline "
            "(CPU RSS) or CUDA max allocated; latency: median of batch-1 forward passes "
            "at the evaluation size.\n\n" + markdown_table(rows)
            + "\n\n## IoU per class\n\n" + per_class_table(rows) + "\n")
    path.write_text(text)
    return path
