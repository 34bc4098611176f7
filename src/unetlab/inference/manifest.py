"""The record of a ``unetlab predict`` run: one JSON manifest in the output folder.

Rank 0 writes ``predict_manifest.json`` when the plan is made (every input ``pending``, or
``complete`` from the run being resumed) and again at the end. In between, each process
appends one line per finished input to its own journal (``.predict_journal.<rank>.jsonl``,
flushed and synced), so a job killed part-way loses nothing it finished: ``--resume``
reads the manifest and the journals it finds, and skips every input recorded complete
whose outputs still exist.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import UnetlabError

MANIFEST = "predict_manifest.json"
SCHEMA = 1
STATUSES = ("pending", "complete", "failed")


def journal_path(out: Path, rank: int) -> Path:
    return Path(out) / f".predict_journal.{rank}.jsonl"


def append_journal(out: Path, rank: int, record: dict) -> None:
    """Add one finished input to this process's journal (durable before returning)."""
    with open(journal_path(out, rank), "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def journals(out: Path) -> list[Path]:
    return sorted(Path(out).glob(".predict_journal.*.jsonl"))


def read_previous(out: Path) -> dict | None:
    """The manifest in ``out`` with the journals' records applied (None when absent)."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("inputs"), list):
            raise ValueError("no 'inputs' list")
        entries = {e["input"]: e for e in data["inputs"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise UnetlabError(f"{path}: not a predict manifest ({exc}); move it away or pass "
                           "--overwrite") from None
    for journal in journals(out):
        for line in journal.read_text().splitlines():
            try:
                record = json.loads(line)
                entries[record["input"]].update(record)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by the kill, or an input no longer planned
    data["inputs"] = list(entries.values())
    return data


def check_same_settings(previous: dict, settings: dict, path: Path) -> None:
    """``--resume`` continues a run only with the settings that made its outputs."""
    old = previous.get("settings") or {}
    for key, value in settings.items():
        if old.get(key) != value:
            raise UnetlabError(f"{path}: the run being resumed used {key}={old.get(key)!r}, "
                               f"this one {value!r}; use the same settings, another --out, "
                               "or --overwrite")


def is_complete(entry: dict) -> bool:
    """Recorded complete, and every output it wrote is still there."""
    return entry.get("status") == "complete" and all(
        Path(p).is_file() for p in (entry.get("outputs") or {}).values() if p)


def summarize(entries: list[dict]) -> dict:
    return {s: sum(e.get("status") == s for e in entries) for s in STATUSES}
