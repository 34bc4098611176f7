"""The report ``unetlab fit`` leaves in its run folder: the best checkpoint measured on
the validation split at the dataset's own resolution (and, from training, at the
model's), a per-class table, overlays of the first validation images, the curves."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

OVERLAYS = 4


def native_val_set(cfg):
    """The validation set of ``cfg`` at the stored resolution, without augmentation,
    with the dataset's class attributes (None when the run has no validation)."""
    import copy

    from ..training.builder import build_datasets

    native = copy.deepcopy(cfg)
    native.data.scale = 1.0
    native.data.augment = "none"
    native.data.tile_size = None
    sets = build_datasets(native)
    val = sets.val
    if val is None:
        return None
    for attr in ("num_classes", "class_names", "palette", "ignore_index", "in_channels"):
        if not hasattr(val, attr):
            setattr(val, attr, getattr(sets.info, attr))
    return val


def best_row(history: list[dict], metric: str, mode: str) -> dict | None:
    rows = [r for r in history if r.get(metric) is not None]
    if not rows:
        return None
    pick = max if mode == "max" else min
    return pick(rows, key=lambda r: r[metric])


def selection(history: list[dict], metric: str, mode: str) -> dict | None:
    """How ``checkpoints/best`` was chosen: among how many validations on the same images,
    at which step, and what the last validation scored (None without validations).
    The best of many noisy validations on one split leans optimistic on that split; the
    last is the number chosen on nothing."""
    rows = [r for r in history if isinstance(r.get(metric), int | float)
            and math.isfinite(r[metric])]                  # as the trainer skips them
    best = best_row(rows, metric, mode)
    if best is None:
        return None
    last = rows[-1]
    return {"metric": metric, "validations": len(rows), "best_step": _int(best.get("step")),
            "best": best[metric], "last_step": _int(last.get("step")), "last": last[metric]}


def _int(value):
    return int(value) if isinstance(value, int | float) and math.isfinite(value) else None


def selection_sentence(report: dict) -> str:
    """One sentence on what choosing ``best`` on the validation images means here."""
    sel = report.get("selection")
    if not sel or sel["validations"] < 2:
        return ""
    best, last = _step(sel["best_step"]), _step(sel["last_step"])
    if best == last:
        return (f"checkpoints/best is the last of {sel['validations']} validations on these "
                f"images (step {last}), so no choice among them flatters it.")
    final = ", the weights in checkpoints/last" if last == _step(
        report.get("training", {}).get("steps")) else ""
    return (f"checkpoints/best is the best {sel['metric']} of {sel['validations']} "
            f"validations on these same images (step {best}, {sel['best']:.4f} at the "
            f"model's scale), so its numbers lean optimistic here; the last validation "
            f"(step {last}{final}) scored {sel['last']:.4f}. For a number that nothing was "
            f"chosen on, evaluate on images outside the validation split.")


def _step(value) -> str:
    return "?" if not isinstance(value, int | float) else str(int(value))


def write_overlays(model, dataset, out: Path, *, scale: float, count: int = OVERLAYS) -> list:
    """``<name>_overlay.png`` for the first ``count`` validation images."""
    import torch

    from ..data.resample import resize_tensor_image, upsample_logits
    from ..imageio import write_image
    from ..inference import overlay

    out.mkdir(parents=True, exist_ok=True)
    palette = np.asarray(getattr(dataset, "palette", None))
    written = []
    for i in range(min(count, len(dataset))):
        item = dataset[i]
        image = item["image"]
        with torch.no_grad():
            logits = model(resize_tensor_image(image, scale)[None])[0]
        labels = upsample_logits(logits, image.shape[-2:]).argmax(0).numpy().astype(np.uint8)
        shown = image.numpy().transpose(1, 2, 0)
        shown = shown[..., 0] if shown.shape[-1] == 1 else shown[..., :3]
        lo, hi = float(shown.min()), float(shown.max())
        shown = ((shown - lo) / max(hi - lo, 1e-6) * 255).astype(np.uint8)
        path = out / f"{item.get('name', i)}_overlay.png"
        write_image(path, overlay(shown, labels, palette))
        written.append(str(path))
    return written


def _rate(value) -> str:
    return f" at {value:.2f}/s" if value else ""


def _made_rate(training: dict) -> float | None:
    elapsed = training.get("elapsed_s")
    return training["steps"] / elapsed if elapsed else None


def format_report(report: dict, table: str | None) -> str:
    """report.md: the plan's expectations, what happened, both resolutions' numbers."""
    t, e = report["timings"], report["expected"]
    made = _made_rate(report["training"])
    lines = [f"# unetlab fit: {report['dataset']}", "",
             f"Budget {report['budget_s']:.0f}s; used {t['total_s']:.0f}s (fingerprint "
             f"{t['fingerprint_s']:.1f}s, probe {t['probe_s']:.1f}s, training and validation "
             f"{t['train_s']:.0f}s, final evaluation and report {t['report_s']:.1f}s)"
             + (f"; resumed, {report['sessions']} sessions (the time between them not "
                "counted)." if report.get("sessions", 1) > 1 else "."),
             f"Planned ~{e['steps']} steps{_rate(e.get('steps_per_s'))}; made "
             f"{report['training']['steps']}{_rate(made)}"
             f"{' counting validations' if made else ''} "
             f"({report['training']['reason']}). Config: plan.yaml (with the reasons).",
             f"Device: {report['device']}; seed {report['seed']}."
             + (f" Machine: {report['machine']}." if report.get("machine") else ""),
             f"Numeric mode: {report['plan']['train'].get('amp', 'none')}"
             + (", channels-last" if report['plan']['train'].get('channels_last') else "")
             + ".", ""]
    native, trained = report.get("val_native"), report.get("val_training_scale")
    tta = report.get("val_native_tta") or {}
    with_tta = tta.get("measures")
    if native is not None:
        keys = [k for k in ("miou", "mdice", "pixel_accuracy", "pixel_error", "rand_error")
                if native.get(k) is not None]
        head = f"| validation measure | at the model's scale ({report['scale']}) | at native " \
            "resolution |" + (" native, with `--tta` |" if with_tta else "")
        lines += [head, "|---|---:|---:|" + ("---:|" if with_tta else "")]
        for k in keys:
            tv = trained.get(k) if trained else None
            tv = "-" if tv is None else f"{tv:.4f}"
            extra = ""
            if with_tta:
                extra = " - |" if with_tta.get(k) is None else f" {with_tta[k]:.4f} |"
            lines.append(f"| {k} | {tv} | {native[k]:.4f} |{extra}")
        chosen = selection_sentence(report)
        lines += ["", tta_sentence(report)] + (["", chosen] if chosen else []) + [
                  "", "Per class at native resolution:", "",
                  "```", table or "", "```"]
    else:
        lines.append("No validation split: no measures.")
    if report.get("overlays"):
        lines += ["", "Overlays: " + ", ".join(Path(p).name for p in report["overlays"])]
    lines += ["", "Curves: curves.png; rows: metrics.csv; best model: checkpoints/best"]
    return "\n".join(lines) + "\n"


def tta_sentence(report: dict) -> str:
    """Whether test-time augmentation helped the run's best metric, in one sentence."""
    tta = report.get("val_native_tta") or {}
    metric = report["plan"]["train"].get("best_metric")
    if "skipped" in tta:
        return f"Test-time augmentation not measured: {tta['skipped']}."
    native, with_tta = report.get("val_native") or {}, tta.get("measures") or {}
    if native.get(metric) is None or with_tta.get(metric) is None:
        return "Test-time augmentation not measured."
    lower = "error" in metric or "loss" in metric  # as the trainer's best_mode
    better = with_tta[metric] < native[metric] if lower else with_tta[metric] > native[metric]
    verb = "improves" if better else "does not improve"
    advice = ("predict with `unetlab predict --tta` for these numbers" if better
              else "predict without it")
    worse = _worse_measures(native, with_tta, metric) if better else []
    if worse:
        advice = ("predict with `unetlab predict --tta` if " + metric + " is what matters, "
                  "but it makes " + ", ".join(f"{m} worse ({a:.4f} -> {b:.4f})"
                                             for m, a, b in worse))
    return (f"Test-time augmentation ({tta.get('mode', 'dihedral')}: {tta['transforms']} "
            f"views, {tta['seconds']:.0f}s) "
            f"{verb} {metric} on the validation images ({native[metric]:.4f} -> "
            f"{with_tta[metric]:.4f}): {advice}. One run on the split the checkpoint was "
            "chosen on, not a verdict.")


#: measures whose direction is known (anything else, e.g. a chosen threshold, is skipped)
LOWER_IS_BETTER = frozenset({"pixel_error", "rand_error", "challenge_pixel_error",
                             "challenge_rand_error", "loss", "val_loss", "mhd95"})
HIGHER_IS_BETTER = frozenset({"miou", "mdice", "pixel_accuracy", "class_accuracy", "fwiou",
                              "boundary_f1"})


def _worse_measures(native: dict, with_tta: dict, chosen: str, *, rel: float = 0.05):
    """Other measures (of known direction) that test-time augmentation moves the wrong
    way by more than ``rel`` of their value: ``[(name, without, with)]``. A pixel-error
    gain can come with a much worse Rand error (a membrane broken by averaging views)."""
    out = []
    for name in sorted(LOWER_IS_BETTER | HIGHER_IS_BETTER):
        a, b = native.get(name), with_tta.get(name)
        if name == chosen or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                     for v in (a, b)):
            continue
        loss = (b - a) if name in LOWER_IS_BETTER else (a - b)
        if loss > rel * max(abs(a), 1e-12):
            out.append((name, float(a), float(b)))
    return out
