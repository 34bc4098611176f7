"""The training loop, written out: forward, loss, zero_grad, backward, step.

:class:`Trainer` takes a resolved :class:`~unetlab.config.Config`, builds what it needs
(:mod:`unetlab.training.builder`), and runs :meth:`Trainer.fit`. Everything the course
explains happens in :meth:`Trainer.train_step` and :meth:`Trainer.train_epoch`; the
rest is book-keeping (validation, checkpoints, logs, resuming, several processes).

A run folder (``train.out_dir``) receives::

    config.yaml          the resolved config
    metrics.csv          one row per validation (train loss, lr, images/s, metrics)
    curves.png           loss and metric curves
    checkpoints/last/    the latest state (for --resume)
    checkpoints/best/    the best model by ``train.best_metric``
    summary.json         what happened, written at the end
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import Config, config_to_dict, save_config
from ..data.transforms import augmentation_threads
from ..errors import UnetlabError
from ..limits import pixel_limit
from ..models.geometry import geometry_of
from . import builder, distributed
from .checkpoint import checkpoint_exists, load_checkpoint, save_checkpoint
from .evaluation import crop_targets
from .logger import RunLogger
from .sampler import EpochSampler, SeededSampler

log = logging.getLogger(__name__)


class TrainingDiverged(UnetlabError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (libraries may use the global RNG)
    torch.manual_seed(seed)


def _transform_of(dataset):
    while hasattr(dataset, "dataset") and not hasattr(dataset, "transform"):
        dataset = dataset.dataset
    return getattr(dataset, "transform", None)


def _seed_transform(dataset, seed: int) -> None:
    """Re-seed an augmentation pipeline that owns its RNG (albumentations 2.x)."""
    transform = _transform_of(dataset)
    for method in ("set_seed", "set_random_seed"):
        if transform is not None and hasattr(transform, method):
            getattr(transform, method)(seed)
            return


def _ignore_ctrl_c(worker_id: int = 0) -> None:
    """In a loader worker: Ctrl-C at a terminal reaches the workers too; the main process
    stops the run after its step and saves it (Trainer._interrupt_at_a_step), so the
    workers must outlive it (they end with the run)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _worker_init(worker_id: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # each loader process one thread (see augmentation_threads)
    _ignore_ctrl_c()
    info = torch.utils.data.get_worker_info()
    seed = info.seed % 2**31
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002
    _seed_transform(info.dataset, seed)


class SeededItems(torch.utils.data.Dataset):
    """Items fetched by ``(index, seed)`` (:class:`~.sampler.SeededSampler`): every RNG a
    worker's augmentation may draw from is seeded from ``seed`` before the item is made."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        index, seed = key
        seed_everything(seed)
        _seed_transform(self.dataset, seed)
        return self.dataset[index]


def preload_for_workers(dataset) -> bool:
    """Decode ``dataset`` into its in-memory cache now, when its ``cache`` setting keeps
    decoded samples at all, so that DataLoader workers forked later share it. Under a
    ``Subset`` only the subset's items are decoded. Returns whether it preloaded."""
    if dataset is None:
        return False
    indices = getattr(dataset, "indices", None)
    base = dataset.dataset if indices is not None and hasattr(dataset, "dataset") else dataset
    if not (hasattr(base, "load") and hasattr(base, "cache")):
        return False
    order = list(indices) if indices is not None else list(range(len(base)))
    if not order:
        return False
    if base.cache == "auto":
        base.load(order[0])    # decides from one sample's size (1 GiB for the split)
    if base.cache is not True:
        return False
    for i in order:
        base.load(i)
    return True


def flatten_metrics(metrics: dict) -> dict[str, float]:
    """``{"iou": [a, b], "miou": m}`` -> ``{"iou.0": a, "iou.1": b, "miou": m}``."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, torch.Tensor):
            value = value.tolist()
        if isinstance(value, list | tuple | np.ndarray):
            for i, v in enumerate(value):
                if isinstance(v, int | float | np.floating) and not isinstance(v, bool):
                    out[f"{key}.{i}"] = float(v)
        elif isinstance(value, int | float | np.floating) and not isinstance(value, bool):
            out[key] = float(value)
    return out


RUN_OUTPUTS = ("config.yaml", "metrics.csv", "curves.png", "summary.json", "checkpoints",
               "tensorboard")


def check_run_folder(out_dir: Path, *, resume: bool, overwrite: bool,
                     can_resume: bool = True) -> None:
    """Refuse to start a new run over an earlier one (its best model, metrics.csv, ...)
    unless ``overwrite``; with it, the earlier run's outputs are removed first, so no
    stale best checkpoint or curve survives into the new run."""
    if resume or not out_dir.is_dir():
        return
    earlier = [name for name in RUN_OUTPUTS if (out_dir / name).exists()]
    if earlier == ["config.yaml"]:  # a run that stopped before its first row or checkpoint:
        return                     # nothing of it is lost when the new run rewrites it
    if not earlier:
        return
    if not overwrite:
        go_on = "continue it with --resume, " if can_resume else ""  # demo has no --resume
        raise UnetlabError(f"{out_dir} already holds a run ({', '.join(earlier)}); {go_on}"
                           "choose another --out, or pass --overwrite (overwrite=True in "
                           "Python) to replace it")
    import shutil

    for name in earlier:
        target = out_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    log.warning("%s: removed the earlier run's %s (--overwrite)", out_dir, ", ".join(earlier))


class Trainer:
    """Train a segmentation model as ``cfg`` says; ``resume=True`` continues the run in
    ``cfg.train.out_dir`` from its last checkpoint. A new run into a folder that holds an
    earlier run is refused unless ``overwrite=True`` (which removes the earlier run's
    outputs first).

    With ``train.winograd`` in effect, ``self.net``'s deep 3x3 convolutions are
    :class:`~unetlab.inference.winograd.TrainingWinogradConv2d` from construction until
    :meth:`fit` returns (or fails); to export a model from a Trainer that never ran
    ``fit``, load its checkpoint instead, or call ``winograd.stop_in_training(net)``."""

    def __init__(self, cfg: Config, *, resume: bool = False, overwrite: bool = False):
        if not isinstance(cfg, Config):
            raise UnetlabError(f"train() takes a Config, got {type(cfg).__name__}: "
                               "unetlab.config.load_config('config.yaml', ['train.epochs=2'])"
                               " (or config_from_dict for a mapping)")
        self.cfg = cfg
        t = cfg.train
        if t.num_threads:
            torch.set_num_threads(t.num_threads)
        self.device = builder.select_device(t.device)
        self.dist = distributed.init_distributed(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.amp_dtype = builder.resolve_amp(t.amp, self.device)
        self.out_dir = Path(t.out_dir)
        self.ckpt_dir = self.out_dir / "checkpoints"
        # every rank checks before any can write (DDP's constructor syncs them); only
        # rank 0 removes an earlier run
        if self.dist.is_main or not overwrite:
            check_run_folder(self.out_dir, resume=resume, overwrite=overwrite)
        seed_everything(t.seed)

        with pixel_limit(cfg.data.max_pixels):  # datasets may read headers and masks now
            data = builder.build_datasets(cfg)
            if cfg.data.num_workers:
                # decoded once here, before the loader workers fork, the cache is shared
                # with every worker instead of filled in each
                for ds in (data.train, data.val):
                    preload_for_workers(ds)
        self.train_set, self.val_set, self.info = data.train, data.val, data.info
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed tile shapes: pick the fastest kernels
        self.num_classes = int(self.info.num_classes)
        world = self.dist.world_size
        if cfg.data.batch_size % world:
            raise UnetlabError(f"data.batch_size={cfg.data.batch_size} (the global batch) must "
                               f"be divisible by the {world} processes")
        self.batch_size = cfg.data.batch_size // world

        net = builder.build_model(cfg, self.info).to(self.device)
        if t.channels_last and net_dims(net) == 2:
            net = net.to(memory_format=torch.channels_last)
        # float32 on a CPU: the deep 3x3 convolutions train with Winograd where it pays
        self.winograd_channels = builder.train_with_winograd(t.winograd, net, self.device,
                                                             self.amp_dtype)
        self.net = net
        self.model = distributed.wrap_model(net, self.dist, self.device)
        self.loss_fn = builder.build_loss(cfg, self.info).to(self.device)
        self.optimizer = builder.build_optimizer(cfg, net)
        has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                     for m in net.modules())
        self.sampler = EpochSampler(len(self.train_set), shuffle=True, seed=t.seed,
                                    num_replicas=world, rank=self.dist.rank,
                                    no_batch_of_one=self.batch_size if has_bn else 0)
        self.batches_per_epoch = math.ceil(len(self.sampler) / self.batch_size)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / t.accumulate)
        total = t.max_steps or (t.epochs * self.steps_per_epoch if t.epochs else None)
        self.total_steps = total
        self.schedule = builder.build_schedule(cfg, self.optimizer, total)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        self.mode = builder.best_mode(cfg)

        # Progress of the run (all of it is saved in checkpoints).
        self.epoch = 0            # epoch in progress (0-based)
        self.batch_in_epoch = 0   # micro-batches of that epoch already done
        self.epoch_loss = [0.0, 0]  # loss sum and batch count of that epoch so far
        self.step = 0             # optimizer steps done
        self.elapsed_s = 0.0      # training time over all sessions of the run
        self._last_saved_at: float | None = None   # train.last_every_s
        self._unsaved_epochs = 0
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.bad_validations = 0
        self.history: list[dict] = []
        self.last_good: Path | None = None
        self._epoch_start: float | None = None
        self._worker_loader: DataLoader | None = None   # persistent workers, if any
        self._val_loader: DataLoader | None = None      # the same for validation
        self._fitting = False   # inside _fit, whose finally ends the workers
        self._interrupted = False  # Ctrl-C seen: stop after the step, save, re-raise
        self._saved_step: int | None = None  # the step checkpoints/last holds
        if resume:
            self._resume()
        self.logger = RunLogger(self.out_dir, enabled=self.dist.is_main, history=self.history)

    # ---- the loop ------------------------------------------------------------------

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_step(self, batch: dict, *, first: bool, last: bool) -> float:
        """One micro-batch: forward, loss, [zero_grad], backward, [clip, step].

        ``first``/``last``: whether this micro-batch opens/closes an accumulation window
        (both true without accumulation). Returns the loss value (mean over ranks).
        """
        images = batch["image"].to(self.device, non_blocking=True)
        masks = batch["mask"].to(self.device, non_blocking=True)
        weight = batch.get("weight")
        if weight is not None and getattr(self.loss_fn, "uses_pixel_weight", False):
            weight = weight.to(self.device, non_blocking=True)
        else:
            weight = None
        if self.cfg.train.channels_last and images.dim() == 4:
            images = images.contiguous(memory_format=torch.channels_last)

        sync = contextlib.nullcontext()
        if self.dist.enabled and not last:
            sync = self.model.no_sync()  # accumulate locally, all-reduce on the last one
        with sync:
            with self.autocast():
                logits = self.model(images)                          # forward
            masks, weight = crop_targets(logits, masks, weight)  # valid padding: centre
            loss = self.loss_fn(logits.float(), masks, pixel_weight=weight)   # loss
            value = distributed.all_reduce_mean(loss.detach(), self.dist).item()
            if not math.isfinite(value):
                raise self._diverged(value)
            if first:
                self.optimizer.zero_grad(set_to_none=True)          # zero_grad
            self.scaler.scale(loss / self.cfg.train.accumulate).backward()   # backward
        if last:
            if self.cfg.train.grad_clip:
                self.scaler.unscale_(self.optimizer)
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.cfg.train.grad_clip)
            self.scaler.step(self.optimizer)                        # step
            self.scaler.update()
            budget = self.cfg.train.time_budget_s
            self.schedule.step((self.elapsed_s + self._running_s()) / budget if budget else None)
            self.step += 1
        return value

    def train_epoch(self) -> dict:
        """One pass over the training set (or what is left of it after a resume)."""
        t = self.cfg.train
        self.model.train()
        self.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * self.batch_size)
        if self.batch_in_epoch == 0:
            _seed_transform(self.train_set, t.seed * 100_003 + self.epoch)
        loader = self._loader()
        if self.batch_in_epoch == 0:
            self.epoch_loss = [0.0, 0]
        seen = 0
        self._epoch_start = start = time.perf_counter()
        bar = self._progress(len(loader))
        stop = None
        for batch in loader:
            k = self.batch_in_epoch
            first = k % t.accumulate == 0
            last = (k + 1) % t.accumulate == 0 or k + 1 == self.batches_per_epoch
            value = self.train_step(batch, first=first, last=last)
            self.batch_in_epoch += 1
            self.epoch_loss = [self.epoch_loss[0] + value, self.epoch_loss[1] + 1]
            seen += batch["image"].shape[0] * self.dist.world_size
            if bar is not None:
                rate = seen / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(loss=f"{value:.4f}", img_s=f"{rate:.1f}")
                bar.update(1)
            if last:
                stop = self._should_stop_mid_epoch()
                if stop:
                    break
                every = t.checkpoint_every_steps
                if every and self.step % every == 0 and \
                        self.batch_in_epoch < self.batches_per_epoch:
                    self.save("last")
        if bar is not None:
            bar.close()
        took = time.perf_counter() - start
        self.elapsed_s += took
        self._epoch_start = None
        complete = self.batch_in_epoch >= self.batches_per_epoch
        total_loss, n = self.epoch_loss  # every batch of the epoch, across a resume
        return {"train_loss": total_loss / max(n, 1), "images_per_s": seen / max(took, 1e-9),
                "complete": complete, "stop": stop}

    def _running_s(self) -> float:
        """Seconds spent in the epoch in progress (not yet added to ``elapsed_s``)."""
        return 0.0 if self._epoch_start is None else time.perf_counter() - self._epoch_start

    def fit(self) -> dict:
        """Train until epochs / max_steps / time budget / early stopping; return a summary.
        Afterwards ``self.net`` holds plain ``nn.Conv2d`` layers again (for export).

        Ctrl-C stops after the optimizer step in progress and saves ``checkpoints/last``
        (mid-epoch too, as ``checkpoint_every_steps`` does), then raises
        ``KeyboardInterrupt``: ``--resume`` goes on from that step. A second Ctrl-C stops
        at once."""
        self._winograd(True)
        try:
            with pixel_limit(self.cfg.data.max_pixels), augmentation_threads(), \
                    self._interrupt_at_a_step():
                summary = self._fit()
        finally:
            self._winograd(False)
        if summary.get("reason") == "interrupted":
            raise KeyboardInterrupt
        return summary

    @contextlib.contextmanager
    def _interrupt_at_a_step(self):
        """SIGINT sets a flag that the step loop reads (a KeyboardInterrupt raised inside a
        step would leave nothing consistent to save). Not under DDP (every rank must stop
        at the same step), off the main thread, or where SIGINT is ignored."""
        previous = signal.getsignal(signal.SIGINT)
        if self.dist.enabled or threading.current_thread() is not threading.main_thread() \
                or previous in (signal.SIG_IGN, None):
            yield
            return

        def on_interrupt(signum, frame):
            self._interrupted = True
            signal.signal(signal.SIGINT, previous)  # a second Ctrl-C: at once
            print(f"\nunetlab: stopping after this step to save {self.ckpt_dir / 'last'} "
                  "(after the epoch's validation if the step ends an epoch; Ctrl-C again "
                  "to stop now)", file=sys.stderr, flush=True)

        signal.signal(signal.SIGINT, on_interrupt)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _winograd(self, on: bool) -> None:
        """Let the model's deep convolutions train with Winograd (``train.winograd``), or
        turn them back into plain convolutions."""
        if self.winograd_channels is None:
            return
        from ..inference import winograd

        if on:
            winograd.use_in_training(self.net, self.winograd_channels)
        else:
            winograd.stop_in_training(self.net)

    def _fit(self) -> dict:
        t = self.cfg.train
        if self.dist.is_main:
            save_config(self.cfg, self.out_dir / "config.yaml")
        reason = "finished"
        self._fitting = True
        try:
            while True:
                if t.epochs is not None and self.epoch >= t.epochs:
                    break
                if self._budget_reached():
                    reason = "max_steps" if self._steps_done() else "time_budget"
                    self._validate_last_row()
                    break
                if self._interrupted:  # at an epoch's end (its validation ran): stop here
                    reason = "interrupted"
                    if self._saved_step != self.step:
                        self.save("last")
                    break
                result = self.train_epoch()
                if result["stop"] == "interrupted":  # mid-epoch: save it, no row (the
                    reason = "interrupted"           # resumed epoch logs all its batches)
                    self.save("last")
                    break
                row = {"epoch": self.epoch + 1, "step": self.step,
                       "train_loss": result["train_loss"],
                       "lr": self.schedule.get_last_lr()[0],
                       "images_per_s": result["images_per_s"]}
                validate = (self.epoch + 1) % t.val_every == 0 or bool(result["stop"]) \
                    or (t.epochs is not None and self.epoch + 1 >= t.epochs)
                if result["complete"]:
                    self.epoch += 1
                    self.batch_in_epoch = 0
                early = False
                started = time.perf_counter()
                if validate and self.val_set is not None:
                    metrics = self.validate()
                    row.update(metrics)
                    early = self._track_best(metrics, row["epoch"])
                self.history.append(row)
                self.logger.log_row(row)
                self._report(row)
                self.elapsed_s += time.perf_counter() - started  # the budget counts it
                if self._last_due(force=validate or bool(result["stop"]) or early):
                    started = time.perf_counter()
                    self.save("last")
                    self.elapsed_s += time.perf_counter() - started  # and the write
                if result["stop"]:
                    reason = result["stop"]
                    break
                if early:
                    reason = "early_stop"
                    break
        finally:
            self._fitting = False
            self.logger.close()
            self._close_workers()
        summary = {"out_dir": str(self.out_dir), "reason": reason, "epochs": self.epoch,
                   "steps": self.step, "elapsed_s": round(self.elapsed_s, 2),
                   "best_metric": t.best_metric, "best_value": self.best_value,
                   "best_epoch": self.best_epoch,
                   "last": self.history[-1] if self.history else None}
        if self.dist.is_main:
            from .._io import write_json

            write_json(self.out_dir / "summary.json", summary)
        distributed.barrier(self.dist)
        return summary

    # ---- validation ----------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Loss and metrics on the validation set through the one evaluator
        (:func:`unetlab.training.evaluation.evaluate_model`, the same numbers as
        ``unetlab evaluate`` on this split), reduced over all processes."""
        from .evaluation import evaluate_model

        self.net.eval()
        geo = geometry_of(self.net)
        indices = list(range(len(self.val_set)))[self.dist.rank::self.dist.world_size]
        batch = self.cfg.data.val_batch_size
        # no more workers than batches: a few validation images need few processes
        workers = min(self.cfg.data.num_workers, -(-len(indices) // batch))
        if workers and self._fitting and self._val_loader is None:  # at the first validation
            from torch.utils.data import Subset

            self._val_loader = DataLoader(
                Subset(self.val_set, indices), batch_size=batch, shuffle=False,
                num_workers=workers, persistent_workers=True,
                # a private generator: a loader draws its workers' seed when iterated, and
                # this one is iterated anew only in the fit that made it, so drawing from
                # the global RNG would make a resumed run's dropout differ
                generator=torch.Generator().manual_seed(self.cfg.train.seed),
                worker_init_fn=_ignore_ctrl_c)
        result = evaluate_model(
            self.net, self.val_set, device=self.device, indices=indices,
            tile_size=self.cfg.data.tile_size if geo.padding == "valid" else None,
            boundary=self.cfg.train.boundary_metric, batch_size=batch,
            num_workers=workers, loss_fn=self.loss_fn, loader=self._val_loader,
            autocast=self.autocast, challenge=False, per_image=False, dist=self.dist)
        metrics = dict(result["metrics"])
        loss = metrics.pop("loss")
        out = flatten_metrics(metrics)
        out["val_loss"] = loss
        self.net.train()
        return out

    def _validate_last_row(self) -> None:
        """Stopping between epochs without a validation since the last training: do it
        now so that ``best`` reflects the final weights too."""
        if self.val_set is None or not self.history or "val_loss" in self.history[-1]:
            if self._unsaved_epochs:
                self.save("last")
            return
        started = time.perf_counter()
        metrics = self.validate()
        self.history[-1].update(metrics)
        self._track_best(metrics, self.history[-1]["epoch"])
        self.logger.log_row(self.history[-1])
        self._report(self.history[-1])
        self.elapsed_s += time.perf_counter() - started
        started = time.perf_counter()
        self.save("last")
        self.elapsed_s += time.perf_counter() - started

    def _last_due(self, force: bool) -> bool:
        """Whether ``checkpoints/last`` is written after this epoch: always, unless
        ``train.last_every_s`` asks for at most one write per that many seconds (short
        epochs of a large model); validations and stops always write it."""
        every = self.cfg.train.last_every_s
        now = time.perf_counter()
        due = force or every is None or self._last_saved_at is None \
            or now - self._last_saved_at >= every
        if every is not None:  # each rank's clock differs: all write when any is due
            due = distributed.any_rank(due, self.dist, self.device)
        if due:
            self._last_saved_at = now
            self._unsaved_epochs = 0
            return True
        self._unsaved_epochs += 1
        return False

    def _report(self, row: dict) -> None:
        """One line per epoch under the progress bar (only with ``train.progress``)."""
        if not (self.cfg.train.progress and self.dist.is_main):
            return
        from tqdm import tqdm

        keys = ["train_loss", "val_loss", "miou", self.cfg.train.best_metric]
        parts = [f"{k} {row[k]:.4f}" for k in dict.fromkeys(keys) if row.get(k) is not None]
        best = " (best)" if "val_loss" in row and self.best_epoch == row["epoch"] else ""
        tqdm.write(f"epoch {row['epoch']} step {row['step']}: {', '.join(parts)}{best}")

    def _track_best(self, metrics: dict, epoch: int) -> bool:
        """Save ``best`` on improvement; True when early stopping should happen."""
        t = self.cfg.train
        if t.best_metric not in metrics:
            raise UnetlabError(f"train.best_metric={t.best_metric!r} is not among the "
                               f"validation metrics: {', '.join(sorted(metrics))}")
        value = metrics[t.best_metric]
        self.schedule.observe(value)
        better = self.best_value is None or (
            value > self.best_value if self.mode == "max" else value < self.best_value)
        if better and math.isfinite(value):
            self.best_value, self.best_epoch = value, epoch
            self.bad_validations = 0
            self.save("best")
            return False
        self.bad_validations += 1
        return bool(t.early_stop_patience and self.bad_validations >= t.early_stop_patience)

    # ---- stopping ----------------------------------------------------------------

    def _steps_done(self) -> bool:
        return self.cfg.train.max_steps is not None and self.step >= self.cfg.train.max_steps

    def _budget_reached(self, running: float = 0.0) -> bool:
        budget = self.cfg.train.time_budget_s
        over = budget is not None and self.elapsed_s + running >= budget
        return distributed.any_rank(self._steps_done() or over, self.dist, self.device)

    def _should_stop_mid_epoch(self) -> str | None:
        # Ctrl-C: stop mid-epoch; a step that ends the epoch goes on to the epoch's
        # validation and checkpoint (a resume would not run that validation again)
        if self._interrupted and self.batch_in_epoch < self.batches_per_epoch:
            return "interrupted"
        if self._budget_reached(self._running_s()):
            return "max_steps" if self._steps_done() else "time_budget"
        return None

    def _diverged(self, value: float) -> TrainingDiverged:
        kept = f"last good checkpoint kept at {self.last_good}" if self.last_good \
            else "no checkpoint was written yet"
        return TrainingDiverged(f"loss became {value} at step {self.step + 1} (epoch "
                                f"{self.epoch + 1}); training stopped, {kept}")

    # ---- checkpoints ---------------------------------------------------------------

    def save(self, which: str) -> None:
        """Write ``checkpoints/<which>`` (rank 0 only)."""
        if self.dist.is_main:
            path = save_checkpoint(
                self.ckpt_dir / which, model=self.net, optimizer=self.optimizer,
                state=self._state(), card=self.card())
            if which == "last":
                self.last_good = path
                self._saved_step = self.step
        distributed.barrier(self.dist)

    def card(self) -> dict:
        """The model card of the weights as they are now: the dataset's classes and
        preprocessing, the model's geometry, and a summary of the training so far."""
        from .. import __version__
        from ..card import card_for_dataset
        from ..data import augment_symmetries
        from ..inference.tiling import card_tta_mode
        from ..models.geometry import geometry_of

        t = self.cfg.train
        dims = geometry_of(self.net).spatial_dims
        tta = card_tta_mode(augment_symmetries(self.cfg.data.augment, spatial_dims=dims), dims)
        d = self.cfg.data
        training = {"dataset": d.dataset, "split": d.split,
                    # where validation came from: evaluate repeats a hold-out of a flat
                    # folder (no ROOT/val) on the same data
                    "root": str(Path(d.root).resolve()) if d.root is not None else None,
                    "items": len(self.info) if hasattr(self.info, "__len__") else None,
                    "val_split": d.val_split, "val_items": d.val_items,
                    "epoch": self.epoch, "steps": self.step,
                    "elapsed_s": round(self.elapsed_s + self._running_s(), 1),
                    "best_metric": t.best_metric, "best_value": self.best_value,
                    "best_epoch": self.best_epoch, "seed": t.seed,
                    # the views test-time augmentation may average over (predict --tta)
                    "augment": self.cfg.data.augment, "tta": tta or "none",
                    "unetlab_version": __version__}
        return card_for_dataset(self.net, self.info, training=training,
                                scale=self.cfg.data.scale)

    def _state(self) -> dict:
        return {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                "epoch_loss": list(self.epoch_loss),
                "elapsed_s": self.elapsed_s + self._running_s(), "best_value": self.best_value,
                "best_epoch": self.best_epoch, "bad_validations": self.bad_validations,
                "schedule": self.schedule.state_dict(), "scaler": self.scaler.state_dict(),
                "history": self.history, "config": config_to_dict(self.cfg)}

    def _resume(self) -> None:
        path = self.ckpt_dir / "last"
        if not checkpoint_exists(path):
            raise UnetlabError(f"cannot resume: no checkpoint at {path}")
        _check_resume_config(path / "state.json", self.cfg)
        state = load_checkpoint(path, model=self.net, optimizer=self.optimizer,
                                map_location=self.device)
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise UnetlabError(f"{path / 'state.json'}: edited or corrupt training state "
                               f"({type(exc).__name__}: {detail}); start a new run or restore "
                               "the file") from None
        self.last_good = path
        log.info("resumed %s at epoch %d, step %d", path, self.epoch, self.step)

    def _restore(self, state: dict) -> None:
        counters = {k: state[k] for k in ("epoch", "batch_in_epoch", "step")}
        for key, value in counters.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be a non-negative integer, got {value!r}")
        elapsed = state["elapsed_s"]
        if isinstance(elapsed, bool) or not isinstance(elapsed, int | float) \
                or not math.isfinite(elapsed) or elapsed < 0:
            raise ValueError(f"elapsed_s must be a non-negative number, got {elapsed!r}")
        history = state["history"]
        if not isinstance(history, list) or not all(isinstance(r, dict) for r in history):
            raise ValueError("history must be a list of rows")
        loss = state.get("epoch_loss") or [0.0, 0]
        if not (isinstance(loss, list) and len(loss) == 2
                and all(isinstance(v, int | float) for v in loss)):
            raise ValueError(f"epoch_loss must be [sum, count], got {loss!r}")
        self.epoch, self.batch_in_epoch = counters["epoch"], counters["batch_in_epoch"]
        self.step, self.elapsed_s = counters["step"], float(elapsed)
        self.best_value, self.best_epoch = state["best_value"], state["best_epoch"]
        self.bad_validations = int(state["bad_validations"])
        self.schedule.load_state_dict(state["schedule"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.history = list(history)
        self.epoch_loss = [float(loss[0]), int(loss[1])]

    # ---- helpers -------------------------------------------------------------------

    def _close_workers(self) -> None:
        """End the persistent loader workers now: an exception's traceback would keep
        the loader (and its processes) alive for as long as the exception is held."""
        loaders = (self._worker_loader, self._val_loader)
        self._worker_loader = self._val_loader = None
        for loader in loaders:
            iterator = getattr(loader, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()
                loader._iterator = None

    def _loader(self) -> DataLoader:
        workers = self.cfg.data.num_workers
        if workers:
            # workers live for the whole run (starting them each epoch cost more than a
            # short epoch's steps on a GPU); each item is seeded by its position instead
            if self._worker_loader is None:
                self._worker_loader = DataLoader(
                    SeededItems(self.train_set), batch_size=self.batch_size,
                    sampler=SeededSampler(self.sampler, self.cfg.train.seed),
                    num_workers=workers, persistent_workers=True,
                    worker_init_fn=_worker_init, drop_last=False,
                    # the workers' base seed from a private generator: drawing it from
                    # the global RNG would shift it (dropout) after a resume
                    generator=torch.Generator().manual_seed(self.cfg.train.seed),
                    pin_memory=self.device.type == "cuda")
            return self._worker_loader
        g = torch.Generator().manual_seed(self.cfg.train.seed * 100_003 + self.epoch)
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=self.sampler,
                          num_workers=0, generator=g, drop_last=False,
                          pin_memory=self.device.type == "cuda")

    def _progress(self, total: int):
        if not (self.cfg.train.progress and self.dist.is_main):
            return None
        from tqdm import tqdm

        epochs = self.cfg.train.epochs
        desc = f"epoch {self.epoch + 1}" + (f"/{epochs}" if epochs else "")
        return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


#: settings a resume may change: how long the run goes on and how it is watched or fed,
#: not what it trains (anything else made the saved config.yaml say what was not done:
#: a new optim.lr was recorded but the restored optimizer kept the old one)
RESUME_MAY_CHANGE = ("train.epochs", "train.max_steps", "train.time_budget_s",
                     "train.progress", "train.out_dir", "train.last_every_s", "train.device",
                     "train.num_threads", "train.checkpoint_every_steps", "train.val_every",
                     "train.early_stop_patience",
                     "data.num_workers", "data.max_pixels", "data.root", "data.options.cache",
                     "data.val_batch_size")


def _check_resume_config(state_file: Path, cfg: Config) -> None:
    """A one-line error when ``cfg`` changes what the run trains (see
    :data:`RESUME_MAY_CHANGE`) against the config saved in ``state_file``."""
    import json

    try:
        saved = json.loads(Path(state_file).read_text()).get("config")
    except (OSError, ValueError, AttributeError):
        return  # the state is checked, with its own message, when it is restored
    if not isinstance(saved, dict):
        return

    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and v:
                out.update(flat(v, key + "."))
            else:
                out[key] = v
        return out

    # as JSON holds them (tuples become lists); a key the saved config lacks (written by
    # an older version, or an option left at its default) is not a change
    old = flat(saved)
    new = flat(json.loads(json.dumps(config_to_dict(cfg), default=str)))
    changed = [k for k in sorted(old)
               if k in new and k not in RESUME_MAY_CHANGE and old[k] != new[k]]
    changed += [k for k in sorted(set(new) - set(old))
                if ".options." in k and k not in RESUME_MAY_CHANGE]  # an option added
    if changed:
        shown = "; ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
        more = f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""
        raise UnetlabError(f"cannot resume with changed settings: {shown}{more}. A resume "
                           "continues the same training; it may change only how long it goes on, "
                           "where it runs and how it is fed and watched: "
                           f"{', '.join(RESUME_MAY_CHANGE)}. Start a new run (another "
                           "--out) for the others")


def net_dims(net) -> int:
    return geometry_of(net).spatial_dims


def train(cfg: Config, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Build a :class:`Trainer` for ``cfg`` and run it; returns the summary dict."""
    trainer = Trainer(cfg, resume=resume, overwrite=overwrite)
    finished = False
    try:
        summary = trainer.fit()
        finished = True
        return summary
    finally:
        # drop the DDP wrapper (its reducer holds gloo/NCCL work) before the group goes;
        # cleanup() collects the Trainer's reference cycles first
        del trainer
        distributed.cleanup(synchronize=finished)
