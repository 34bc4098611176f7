"""Learning-rate schedules with linear warm-up, stepped once per optimizer step.

One small class instead of chained torch schedulers, so that its whole state is a few
numbers (saved as JSON in checkpoints) and the formula is readable in one place::

    lr(t) = base_lr * warmup(t) * decay(t) * plateau_scale
"""

from __future__ import annotations

import math

import torch

from ..config import SCHEDULES
from ..errors import UnetlabError


class LRSchedule:
    """``name``: none | poly | cosine | plateau (see :class:`unetlab.config.ScheduleConfig`).

    ``total_steps`` is needed by poly and cosine. For plateau, call :meth:`observe` with
    each validation value (``mode`` "max" or "min").
    """

    def __init__(self, optimizer: torch.optim.Optimizer, name: str = "none", *,
                 total_steps: int | None = None, warmup_steps: int = 0, power: float = 0.9,
                 min_lr_ratio: float = 0.0, factor: float = 0.5, patience: int = 3,
                 mode: str = "max", by_time: bool = False):
        if name not in SCHEDULES:
            raise UnetlabError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
        if name in ("poly", "cosine") and not total_steps and not by_time:
            raise UnetlabError(f"schedule {name!r} needs the total number of steps")
        self.optimizer = optimizer
        self.name, self.total_steps, self.warmup_steps = name, total_steps, warmup_steps
        self.power, self.min_lr_ratio = power, min_lr_ratio
        self.factor, self.patience, self.mode = factor, patience, mode
        self.base_lrs = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self.step_count = 0
        self.by_time = by_time
        self.progress: float | None = None  # fraction of the time budget (by_time)
        self.plateau_scale = 1.0
        self.best: float | None = None
        self.bad_epochs = 0
        self._apply()

    def factor_at(self, step: int) -> float:
        """The multiplier of the base learning rate after ``step`` optimizer steps."""
        warm = 1.0
        if self.warmup_steps and step < self.warmup_steps:
            warm = (step + 1) / self.warmup_steps
        decay = 1.0
        if self.name in ("poly", "cosine"):
            t = 0.0
            if self.total_steps:
                span = max(1, self.total_steps - self.warmup_steps)
                t = min(1.0, max(0, step - self.warmup_steps) / span)
            if self.by_time and self.progress is not None:
                t = max(t, min(1.0, self.progress))
            if self.name == "poly":
                shape = (1.0 - t) ** self.power
            else:
                shape = 0.5 * (1.0 + math.cos(math.pi * t))
            decay = self.min_lr_ratio + (1.0 - self.min_lr_ratio) * shape
        return warm * decay * self.plateau_scale

    def _apply(self) -> None:
        f = self.factor_at(self.step_count)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * f

    def step(self, progress: float | None = None) -> None:
        """Call after each ``optimizer.step()``; ``progress``: fraction of the time
        budget used (only read when ``by_time``)."""
        self.step_count += 1
        if progress is not None:
            self.progress = progress
        self._apply()

    def observe(self, value: float) -> None:
        """A validation result; for ``plateau``, shrinks the lr after ``patience`` misses."""
        if self.name != "plateau" or value is None or not math.isfinite(value):
            return
        better = self.best is None or (value > self.best if self.mode == "max"
                                       else value < self.best)
        if better:
            self.best, self.bad_epochs = value, 0
            return
        self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.plateau_scale *= self.factor
            self.bad_epochs = 0
            self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"step_count": self.step_count, "plateau_scale": self.plateau_scale,
                "best": self.best, "bad_epochs": self.bad_epochs, "base_lrs": self.base_lrs,
                "progress": self.progress}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.plateau_scale = float(state["plateau_scale"])
        self.best = state["best"]
        self.bad_epochs = int(state["bad_epochs"])
        self.base_lrs = list(state["base_lrs"])
        self.progress = state.get("progress")
        self._apply()
