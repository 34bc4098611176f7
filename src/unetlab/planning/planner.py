"""The planner: from a dataset fingerprint, a machine probe and a time budget to an
ordinary training config, every choice with its reason.

The rules (docs/fit.md gives the evidence for each):

1. Probe geometry: batch-normed same-padding U-Net, 4 poolings, tiles of 192 px and
   batches of 4 on a CPU (256 px x 16 on a GPU), smaller tiles when the images are.
2. Width: the widest probed network that still makes ``MIN_STEPS`` optimizer steps in
   the training budget (steps first, then capacity); the narrowest otherwise. A step
   counts the measured input pipeline: added to it without loader workers, a ceiling on
   the step rate with them (:func:`effective_rates`).
3. Resolution: the largest scale (1, 0.75, 0.5, 0.375, 0.25) at which the budget shows
   the model every training pixel ``MIN_PASSES`` times, never so small that a class of
   over 5 % of the pixels gets thinner than 4 px, or a class of at least 0.2 % thinner
   than 2 px (rarer classes do not hold the scale up: a defect class of 0.03 % may thin
   below 2 px; declare ``data.scale`` to keep it), nor the typical image's short side
   under ``MIN_SHORT_SIDE`` px.
4. Depth: the fewest poolings (3-5) whose receptive field covers the typical object at
   that scale; the tile: the probe's, or the typical (median) image's scaled short side
   if smaller (smaller images are padded by reflection in training); fewer poolings
   when the bottleneck would be under 2 x 2 px.
5. Loss: Dice + cross-entropy; class weights (square root of SegNet's median-frequency
   weights) when the most frequent class is over ``IMBALANCE`` times the rarest.
6. Augmentation: ``upright`` when classes sit in the top or bottom half
   (``vertical_layout`` >= 0.3); ``paper`` for up to 100 images when the budget makes
   at least ``PAPER_MIN_STEPS`` steps (a regulariser for long training); else ``light``.
7. Adam, lr 2e-3 (x sqrt(batch / 4)), warm-up 3 % of the expected steps, cosine
   annealed over the wall-clock budget (``schedule.by_time``).
8. Validation: about 8 % of the budget, 2-12 validations; the budget also reserves the
   final evaluation at native resolution.
9. Normalisation (folder data): per-channel mean and std from the fingerprint when the
   images are far from unit range (|mean| > 2, or std outside [0.02, 2]); else none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import UnetlabError
from .fingerprint import Fingerprint

MIN_STEPS = 2500
PAPER_MIN_STEPS = 10_000
MIN_PASSES = 20.0
MIN_SHORT_SIDE = 64        # px, the typical short side no scale goes below
MIN_THICKNESS = 2.0        # px, any class of at least 0.2 % of the pixels
MIN_MAJOR_THICKNESS = 4.0  # px, classes of at least MAJOR_FREQUENCY of the pixels
MAJOR_FREQUENCY = 0.05
IMBALANCE = 10.0
NORM_MAX_MEAN = 2.0        # rule 9: |mean| above this, or a std outside the band below,
NORM_MIN_STD = 0.02        # in training units (integers / type max, floats as stored)
NORM_MAX_STD = 2.0         # means the images are normalised with their own statistics
SCALES = (1.0, 0.75, 0.5, 0.375, 0.25)
PROBE_DEPTH = 4
VAL_SHARE = 0.08
FALLBACK_VAL_FRACTION = 0.2


@dataclass
class Plan:
    """A config (nested dicts, :func:`unetlab.config.config_from_dict` accepts it), the
    reason for each choice keyed by dotted path, and the numbers behind them."""

    config: dict
    reasons: dict = field(default_factory=dict)
    expected: dict = field(default_factory=dict)


def probe_geometry(fp: Fingerprint, device_type: str) -> tuple[int, int, int]:
    """(depth, tile, batch) the probe measures: rule 1."""
    tile, batch = (256, 16) if device_type == "cuda" else (192, 4)
    align = 2 ** PROBE_DEPTH
    tile = min(tile, short_side(fp) // align * align)
    if tile < align:
        raise UnetlabError(f"images of {short_side(fp)} px are too small to plan for (at "
                           f"least {align} px on the short side)")
    return PROBE_DEPTH, tile, batch


def short_side(fp: Fingerprint) -> int:
    """The typical image's short side (of the median height and width), which bounds the
    tile: one small image among large ones no longer shrinks every tile, since training
    pads an image smaller than its tile by reflection."""
    return min(fp.image_height, fp.image_width)


def train_count(fp: Fingerprint) -> int:
    """Training images: all of them with an own validation split, else all but the
    held-out fraction."""
    n = fp.num_images
    return n if fp.has_own_val else max(1, n - max(1, round(n * FALLBACK_VAL_FRACTION)))


def augmentation(fp: Fingerprint, steps: float | None = None) -> tuple[str, str]:
    """Rule 6: the augmentation preset and why. ``steps``: the optimizer steps the
    budget makes (None: not known yet, as if unlimited)."""
    n_train = train_count(fp)
    if fp.vertical_layout >= 0.3:
        return "upright", (f"classes sit in the top or bottom half (vertical layout "
                           f"{fp.vertical_layout:.2f} >= 0.3): no vertical flips or large "
                           "rotations")
    if n_train <= 100 and (steps is None or steps >= PAPER_MIN_STEPS):
        return "paper", (f"{n_train} training images (<= 100) and no up or down: the "
                         "U-Net paper's elastic deformations, rotations and flips")
    if n_train <= 100:
        return "light", (f"{n_train} training images (<= 100), but ~{steps:.0f} steps (< "
                         f"{PAPER_MIN_STEPS}): the paper's elastic deformations and full "
                         "rotations regularise long training; in a short one `light` "
                         "warps cost less, so the budget makes more steps")
    return "light", f"{n_train} training images: flips and mild affine changes"


def effective_rates(rates: dict, input_s_per_tile: float | None, batch: int,
                    workers: int) -> dict:
    """Optimizer steps per second once the input pipeline is counted: in the main
    process (no workers) its time adds to each step; ``workers`` processes run beside
    the network, which then waits only when they are slower."""
    if not input_s_per_tile:
        return dict(rates)
    data_s = batch * input_s_per_tile
    if workers:
        return {w: min(r, workers / data_s) for w, r in rates.items()}
    return {w: 1.0 / (1.0 / r + data_s) for w, r in rates.items()}


def _cpus(probe: dict) -> int:
    return int((probe.get("key") or {}).get("cpus") or 4)


def loader_workers(device: str, probe: dict) -> int:
    """DataLoader processes: none on a CPU (they would compete with the network for the
    cores), on a GPU all but two CPUs, at most 8."""
    if device != "cuda":
        return 0
    return max(1, min(8, _cpus(probe) - 2))


def receptive_field(depth: int) -> int:
    """Receptive field in pixels of a same-padding U-Net with two 3x3 convolutions per
    level, 2x2 pooling and ``depth`` poolings (96, 200, 408 for 3, 4, 5)."""
    rf, jump = 1, 1
    for level in range(depth + 1):
        rf += 4 * jump
        if level < depth:
            rf += jump
            jump *= 2
    for _ in range(depth):
        jump //= 2
        rf += 4 * jump
    return rf


def scale_floor(fp: Fingerprint) -> tuple[float, str]:
    """The smallest scale the thin structures allow (rule 3), and why."""
    floor, why = 0.0, "no thin structure limits the scale"
    for c, t in enumerate(fp.class_thickness):
        f = fp.class_frequencies[c] if c < len(fp.class_frequencies) else 0.0
        if t is None or f < 0.002:
            continue
        need = MIN_MAJOR_THICKNESS if f >= MAJOR_FREQUENCY else MIN_THICKNESS
        if need / t > floor:
            name = fp.class_names[c] if c < len(fp.class_names) else str(c)
            floor = need / t
            why = (f"{name} ({f:.1%} of the pixels, {t:.1f} px thick) stays >= {need:.0f} px "
                   f"down to scale {min(floor, 1.0):.2f}")
    return min(1.0, floor), why


def _normalization(fp: Fingerprint) -> tuple[dict, str] | None:
    """Rule 9: per-channel ``(x - mean) / std`` from the fingerprint when the images are
    far from the unit range the other rules assume: floats in physical units (CT in
    Hounsfield units, reflectance x 10000) or integers using a sliver of their type (12-bit
    data in 16-bit files: std ~0.01). Images in [0, 1] units with a usual spread are
    left as they are (ISBI, CamVid: the evidence behind the other rules)."""
    mean, std = fp.intensity_mean, fp.intensity_std
    if not mean or not std or len(mean) != len(std):
        return None
    far = any(abs(m) > NORM_MAX_MEAN for m in mean) or \
        any(not NORM_MIN_STD <= s <= NORM_MAX_STD for s in std)
    if not far or any(s <= 0 for s in std):
        return None
    why = (f"images far from the unit range (mean {', '.join(f'{m:.4g}' for m in mean)}, std "
           f"{', '.join(f'{s:.4g}' for s in std)} in training units; wanted |mean| <= "
           f"{NORM_MAX_MEAN:g}, std in [{NORM_MIN_STD:g}, {NORM_MAX_STD:g}]): normalised per "
           "channel with the fingerprint's statistics (the model card carries them to "
           "predict)")
    return {"mean": [float(m) for m in mean], "std": [float(s) for s in std]}, why


def estimate_val_seconds(images: int, pixels: float, px_per_s: float) -> float:
    """One pass over the validation images: a forward pass of one image costs about what
    a training step costs per pixel (measured on CamVid at 180x240, 8..128 channels:
    7.1k px/s forward at batch 1 vs 6.2k px/s in training at batch 4), plus the metrics."""
    return images * (pixels / px_per_s + 0.1)


def make_plan(fp: Fingerprint, probe: dict, budget_s: float, *, dataset: str,
              root=None, data_options: dict | None = None, spent_s: float = 0.0,
              out_dir: str = "runs/fit", seed: int = 0,
              input_s_per_tile: float | None = None, light_input_s: float | None = None,
              _augment: tuple[str, str] | None = None) -> Plan:
    """The plan for ``fp`` on the probed machine within ``budget_s`` seconds in total,
    of which ``spent_s`` are already used (fingerprint and probe). ``input_s_per_tile``:
    the measured seconds to augment one training tile in one process
    (:func:`unetlab.planning.session.measure_input`) with the preset rule 6 picks
    before the steps are known; the step rates then count it. ``light_input_s``: the
    same for ``light``, used to plan again when rule 6 falls back to ``light`` because
    the budget is short.
    Deterministic: the same inputs give the same plan."""
    device = probe["device"]
    _, probe_tile, batch = probe_geometry(fp, device)
    rates = {int(w): float(r) for w, r in probe["steps_per_s"].items()}
    if not rates:
        raise UnetlabError("the machine probe measured no network")
    r = {}
    n_total = fp.num_images
    n_train = train_count(fp)
    # without an own split, a single image is validated on itself (see data.val_split)
    n_val = None if fp.has_own_val else max(1, n_total - n_train)
    workers = loader_workers(device, probe)
    net_rates = rates

    def rates_for(s: float, t: int) -> dict:
        # steps/s at scale s with tiles of t px, expressed per probe-tile step (the unit
        # of every rate below). The network's rate follows the tile's area; the
        # augmentation warps the whole scaled image before the crop, so its time is
        # taken to follow the scaled image's area (it was measured at scale 1; the
        # colour changes after the crop make this an approximation)
        k = (probe_tile / t) ** 2
        eff = effective_rates({w: r * k for w, r in net_rates.items()},
                              input_s_per_tile and input_s_per_tile * s * s, batch, workers)
        return {w: r / k for w, r in eff.items()}

    def rates_at(s: float) -> dict:
        return rates_for(s, max(16, min(probe_tile, int(short_side(fp) * s) // 16 * 16)))
    native_px = fp.image_height * fp.image_width

    # the budget: what is left after fingerprint and probe, less the final evaluation;
    # that reserve depends on the width and scale chosen from the budget, so iterate
    # from the slowest measured network at full resolution until the choice is stable
    val_images = n_val if n_val is not None else max(1, round(n_total * 0.25))
    floor, floor_why = scale_floor(fp)
    # nor so small that the typical short side falls under MIN_SHORT_SIDE px (a thin
    # strip is not shrunk to a few pixels: it keeps the context its tiles can hold)
    keep = min(MIN_SHORT_SIDE, short_side(fp))
    allowed = [s for s in SCALES if s >= floor - 1e-9 and short_side(fp) * s >= keep] or [1.0]
    narrow = min(rates)
    width, scale = max(rates), 1.0
    for _ in range(4):
        final_eval = 2.0 * estimate_val_seconds(val_images, native_px * scale * scale,
                                                net_rates[width] * batch * probe_tile ** 2)
        reserve = final_eval + 0.03 * budget_s + 3.0
        train_s = budget_s - spent_s - reserve
        if train_s < 5.0:
            need = spent_s + reserve + 5.0
            raise UnetlabError(f"--budget {budget_s:.0f}s is too short for this dataset on "
                               f"this machine: at least {math.ceil(need)}s (fingerprint and "
                               f"probe {spent_s:.0f}s, final evaluation ~{final_eval:.0f}s)")
        # rule 2: width
        rates = rates_at(scale)
        fits = [w for w in sorted(rates) if train_s * rates[w] >= MIN_STEPS]
        new_width = max(fits) if fits else narrow

        # rule 3: resolution
        def passes(s, w=new_width, train_s=train_s):
            return rates_at(s)[w] * batch * probe_tile ** 2 * train_s / (
                n_train * native_px * s * s)

        good = [s for s in allowed if passes(s) >= MIN_PASSES]
        new_scale = max(good) if good else min(allowed)
        if (new_width, new_scale) == (width, scale):
            break
        width, scale = new_width, new_scale
    rates = rates_at(scale)
    steps_probe = train_s * rates[width]
    why_w = (f"widest of the probed widths {sorted(rates)} that still makes >= {MIN_STEPS} "
             f"steps in {train_s:.0f}s of training ({steps_probe:.0f} expected at "
             f"{rates[width]:.2f} steps/s)") if fits else (
        f"no probed width makes {MIN_STEPS} steps in {train_s:.0f}s; the narrowest "
        f"({steps_probe:.0f} steps expected)")
    r["data.scale"] = (
        f"{passes(scale):.0f} passes over the training pixels at this scale (>= "
        f"{MIN_PASSES:.0f} wanted; {passes(1.0):.1f} at full resolution); {floor_why}")

    # rule 4: depth and tile
    obj = fp.object_size * scale
    depth = next((d for d in (3, 4, 5) if receptive_field(d) >= obj), 5)
    align = 2 ** depth
    short = int(short_side(fp) * scale)
    tile = min(probe_tile, short // align * align)
    if tile < align:
        depth = max(1, int(math.log2(max(short, 2))) - 2)
        align = 2 ** depth
        tile = short // align * align
    while depth > 1 and tile // align < 2:
        # a bottleneck of at least 2 x 2: on 1 x 1 a batch of one tile (an epoch's last)
        # leaves batch norm a single value per channel, which it cannot train on
        depth -= 1
        align = 2 ** depth
        tile = min(probe_tile, short // align * align)
    channels = [width * 2 ** i for i in range(depth + 1)]
    r["model.options"] = (
        f"width: {why_w}; depth {depth}: receptive field {receptive_field(depth)} px covers "
        f"the typical object ({fp.object_size:.0f} px x scale {scale} = {obj:.0f} px); "
        "batch norm with a same-padding U-Net: any tile size, stable with Adam")
    r["data.tile_size"] = (f"the probe's tile ({probe_tile} px) or the typical image's scaled "
                           f"short side ({short} px), a multiple of {align}")
    r["data.batch_size"] = ("4 tiles per step on a CPU (the ISBI evidence), 16 on a GPU"
                            if device != "cuda" else "16 tiles per step on a GPU")
    rates = rates_for(scale, tile)
    steps = train_s * rates[width] * (probe_tile / tile) ** 2
    steps_per_epoch = math.ceil(n_train / batch)
    epochs = steps / steps_per_epoch

    # rule 5: loss
    loss = {"name": "dice_ce", "options": {}}
    present = [f for f in fp.class_frequencies if f > 0]
    if fp.imbalance > IMBALANCE and len(present) > 1:
        w = [math.sqrt(x) if x > 0 else 1.0 for x in fp.median_frequency_weights]
        mean = sum(w) / len(w)
        loss["class_weights"] = [round(x / mean, 4) for x in w]
        r["loss"] = (f"Dice + cross-entropy; classes imbalanced {fp.imbalance:.0f}x (> "
                     f"{IMBALANCE:.0f}x): cross-entropy weighted by the square root of the "
                     "median-frequency weights (full weights over-predict rare classes)")
    else:
        r["loss"] = (f"Dice + cross-entropy; classes balanced enough ({fp.imbalance:.1f}x "
                     f"<= {IMBALANCE:.0f}x) for no class weights")

    # rule 6: augmentation
    augment, r["data.augment"] = _augment or augmentation(fp, steps)
    timed = augmentation(fp)[0] if _augment is None else augment  # the preset of the rates
    if augment != timed and light_input_s and augment == "light":
        # decided on the steps with the slower preset's time; plan again with light's own
        return make_plan(fp, probe, budget_s, dataset=dataset, root=root,
                         data_options=data_options, spent_s=spent_s, out_dir=out_dir,
                         seed=seed, input_s_per_tile=light_input_s,
                         _augment=(augment, r["data.augment"]))

    # rule 7: optimiser and schedule
    lr = round(min(5e-3, 2e-3 * math.sqrt(batch / 4)), 6)
    warmup = int(min(200, max(10, round(0.03 * steps))))
    r["optim"] = f"Adam, lr {lr:g} (2e-3 x sqrt(batch / 4)): the batch-normed U-Net's rate"
    r["schedule"] = (f"{warmup} warm-up steps (3% of ~{steps:.0f}), cosine annealed over the "
                     "wall-clock budget so the run ends annealed whatever the machine's load")

    # rule 8: validation cadence and the rest of the loop
    val_cost = estimate_val_seconds(val_images, native_px * scale * scale,
                                    net_rates[width] * batch * probe_tile ** 2)
    n_validations = int(max(2, min(12, (VAL_SHARE * train_s) // max(val_cost, 1e-6))))
    val_every = max(1, int(round(epochs / n_validations)))
    binary = fp.num_classes == 2 and fp.ignore_index is None
    best = "pixel_error" if binary else "miou"
    share = n_validations * val_cost / max(train_s, 1e-6)
    r["train.val_every"] = (f"~{n_validations} validations of ~{val_cost:.1f}s each in "
                            f"~{epochs:.0f} epochs of {steps_per_epoch} steps "
                            + (f"(<= {VAL_SHARE:.0%} of the training time)"
                               if share <= VAL_SHARE + 1e-9 else
                               f"(~{share:.0%} of the training time: at least 2 "
                               f"validations, each dearer than {VAL_SHARE:.0%} allows)"))
    r["train.time_budget_s"] = (f"{budget_s:.0f}s in all: {spent_s:.0f}s fingerprint and "
                                f"probe, {reserve:.0f}s reserved for the final evaluation")
    r["train.boundary_metric"] = ("no boundary F1 during training: its distance transforms "
                                  "per class and image can cost more than the forward pass "
                                  "(unetlab evaluate measures it afterwards)")
    r["train.best_metric"] = ("binary data without an ignore label: the share of wrong "
                              "pixels" if binary else "mean IoU over the classes")
    amp = str(probe.get("amp", "bf16" if device == "cuda" else "none"))
    channels_last = bool(probe.get("channels_last", False))
    modes = probe.get("modes") or {}
    tried = ", ".join(f"{m} {v:.2f}" for m, v in modes.items() if v)
    if device == "cuda":
        r["train.amp"] = "bfloat16 autocast on the GPU"
    elif amp == "bf16":
        r["train.amp"] = (f"bfloat16 autocast: this CPU computes bf16 natively and the probe "
                          f"measured it fastest (steps/s: {tried})")
    else:
        r["train.amp"] = ("full precision: " + (f"no other mode the probe measured was "
                                                 f"15% faster or more (steps/s: {tried})"
                                                 if tried else "the CPU default"))
    if channels_last:
        r["train.channels_last"] = "channels-last layout: faster in the probe"
    r["data.num_workers"] = (
        "decoding and augmentation in the main process: on a CPU the workers would take "
        "cores from the network" if not workers else
        f"{workers} loader processes (of {_cpus(probe)} CPUs) keep the GPU fed; the decoded "
        "images are loaded once and shared with them")
    if input_s_per_tile:
        at_scale = input_s_per_tile * scale * scale
        limit = (f"at most {workers / (batch * at_scale):.1f} steps/s from "
                 f"{workers} processes" if workers else
                 f"{batch * at_scale * 1000:.0f} ms added to each step")
        bound = " (the input pipeline sets the pace)" if rates[width] < 0.9 * net_rates[
            width] and workers else ""
        with_preset = f" with `{timed}`" if timed != augment else ""
        r["data.num_workers"] += (f"; augmenting a tile{with_preset} takes "
                                  f"{input_s_per_tile * 1000:.1f} ms at scale 1, "
                                  f"~{at_scale * 1000:.1f} ms at scale {scale}: {limit}{bound}")
    r["train.last_every_s"] = ("checkpoints/last (model and optimizer state) at most once a "
                               "minute, and at every validation and the end: writing it "
                               "after every short epoch cost 10% of a 30-minute ISBI budget")
    val_split = "val" if fp.has_own_val else FALLBACK_VAL_FRACTION
    r["data.val_split"] = ("the dataset's own validation split" if fp.has_own_val else
                           f"no validation split: the last {FALLBACK_VAL_FRACTION:.0%} of "
                           "the training items are held out" + (
                               f"; WARNING: {', '.join(fp.held_out_only)} only in those"
                               + ("" if fp.sampled_images == fp.num_images else
                                  f" of the {fp.sampled_images} images read")
                               + ", so maybe never trained on (rename an image holding it "
                               "to sort earlier, or give the data a val/ folder)"
                               if fp.held_out_only else ""))
    if not fp.has_own_val and n_total < 2 and dataset == "folder":
        # holding out the only image leaves nothing to train on; the folder format's
        # fallback validates on the training image instead, and says so (data/splits.py)
        val_split = "val"
        r["data.val_split"] = ("no validation split and a single image: validation runs on "
                               "the training image (it measures fitting, not generalisation)")
    loss_cfg = {"name": "dice_ce", "options": ({"class_weights": loss["class_weights"]}
                                               if "class_weights" in loss else {})}
    options = dict(data_options or {})
    norm = _normalization(fp) if dataset == "folder" and "normalize" not in options else None
    if norm is not None:
        options["normalize"], r["data.options"] = norm
    config = {
        "model": {"name": "unet", "options": {"channels": channels, "norm": "batch"}},
        "data": {"dataset": dataset, "root": None if root is None else str(root),
                 "split": "train", "val_split": val_split, "tile_size": tile,
                 "scale": scale, "augment": augment, "batch_size": batch,
                 "val_batch_size": 1, "num_workers": workers,
                 "options": options},
        "loss": loss_cfg,
        "optim": {"name": "adam", "lr": lr},
        "schedule": {"name": "cosine", "warmup_steps": warmup, "by_time": True},
        "train": {"epochs": None, "time_budget_s": round(train_s, 1), "val_every": val_every,
                  "best_metric": best, "boundary_metric": False, "amp": amp,
                  "channels_last": channels_last, "last_every_s": 60, "seed": seed,
                  "out_dir": str(out_dir),
                  "device": device},
    }
    expected = {"train_s": round(train_s, 1), "steps": round(steps), "epochs": round(epochs, 1),
                "passes": round(passes(scale), 1), "validations": n_validations,
                "val_seconds": round(val_cost, 2), "reserve_s": round(reserve, 1),
                "steps_per_s": rates[width] * (probe_tile / tile) ** 2}
    return Plan(config=config, reasons=r, expected=expected)
