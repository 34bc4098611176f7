"""Where a run's numbers go: ``metrics.csv``, TensorBoard (when installed), ``curves.png``.

Only rank 0 writes. The CSV is rewritten from the whole history each time (a few
hundred rows at most), so a resumed run continues the same file and new metric columns
can appear later without breaking the header.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path

from .._io import atomic_write

log = logging.getLogger(__name__)

CURVE_INTERVAL_S = 20.0


class RunLogger:
    """Log rows of metrics for a run folder; ``enabled=False`` on non-zero ranks."""

    def __init__(self, out_dir, *, enabled: bool = True, history: list[dict] | None = None):
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.history = history if history is not None else []
        self._tb = None
        self._last_plot = 0.0
        if enabled:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: CSV and PNG only
                SummaryWriter = None
            if SummaryWriter is not None:
                self._tb = SummaryWriter(str(self.out_dir / "tensorboard"))

    def log_row(self, row: dict) -> None:
        """Record one row (already appended to ``history`` by the caller or not)."""
        if not self.enabled:
            return
        if not self.history or self.history[-1] is not row:
            self.history.append(row)
        write_csv(self.out_dir / "metrics.csv", self.history)
        if self._tb is not None:
            for key, value in row.items():
                if isinstance(value, int | float) and key not in ("epoch", "step"):
                    self._tb.add_scalar(key, value, row.get("step", 0))
        if time.monotonic() - self._last_plot > CURVE_INTERVAL_S:
            self.plot()

    def plot(self) -> None:
        if self.enabled and self.history:
            plot_curves(self.history, self.out_dir / "curves.png")
            self._last_plot = time.monotonic()

    def close(self) -> None:
        if not self.enabled:
            return
        self.plot()
        if self._tb is not None:
            self._tb.close()


def write_csv(path, rows: list[dict]) -> Path:
    """All rows under the union of their keys (first-seen order), atomically."""
    path = Path(path)
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: _fmt(row.get(k)) for k in keys})

    return atomic_write(path, write)


def _fmt(value):
    """A CSV cell: floats to 6 significant digits; None, NaN and inf as an empty field
    (the JSON files write null for them)."""
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else ""
    return "" if value is None else value


CURVE_KEYS = ("miou", "mdice", "pixel_accuracy", "boundary_f1", "pixel_error", "rand_error")


def plot_curves(history: list[dict], path, extra: str | None = None) -> Path:
    """Training/validation loss and the main validation metrics against the epoch."""
    from ..plotting import subplots

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_metric) = subplots(1, 2, figsize=(10, 4))
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        pts = [(e, r[key]) for e, r in zip(epochs, history) if r.get(key) is not None]
        if pts:
            ax_loss.plot(*zip(*pts), style, marker=".", label=key)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.legend()
    keys = list(CURVE_KEYS) + ([extra] if extra and extra not in CURVE_KEYS else [])
    for key in keys:
        pts = [(e, r[key]) for e, r in zip(epochs, history) if r.get(key) is not None]
        if pts:
            ax_metric.plot(*zip(*pts), marker=".", label=key)
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel("validation metric")
    if ax_metric.lines:
        ax_metric.legend()
    fig.tight_layout()
    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
