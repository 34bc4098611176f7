"""The machine probe: a few seconds of forward + backward passes of candidate networks
on the device in use, cached per machine, torch version and thread count.

A candidate is a same-padding U-Net with batch norm of ``depth`` poolings and base width
``w`` (channels ``w, 2w, ...``), trained on ``batch`` random tiles of ``tile`` pixels with
Adam. The probe times whole optimizer steps (forward, loss, backward, step) after one
warm-up step and stops measuring wider networks once one is too slow to matter.

The numeric mode is measured too, on one reference width: on a CPU, float32 in the
default layout and in channels-last, and bfloat16 autocast in channels-last only where
the CPU computes bfloat16 natively (AVX512-BF16 or AMX: emulated bf16 is several times
slower, so it is never tried elsewhere); on a GPU, bfloat16 autocast in the default layout
and in channels-last, compared on the widest candidate (narrow networks on a GPU time
kernel launches, not layouts). A mode other than the first must be ``MODE_GAIN`` times
faster to be used. The chosen mode is used for every width and recorded in the probe
(``amp``, ``channels_last``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from ..errors import UnetlabError

log = logging.getLogger(__name__)

CPU_WIDTHS = (8, 16, 24, 32, 48)
GPU_WIDTHS = (16, 32, 48, 64)
PROBE_SECONDS = 0.6      # per candidate, after the warm-up step
PROBE_VERSION = 3  # 3: float32 steps with Winograd where the trainer uses it
MODE_WIDTH = 16          # the width the CPU modes are compared on
MODE_GAIN = 1.15         # a mode other than the first must be this much faster to be used


def cpu_modes() -> list[tuple[str, bool]]:
    """(amp, channels_last) modes worth measuring on this CPU: bf16 only where native."""
    from ..inference.cpu import cpu_features

    modes = [("none", False), ("none", True)]
    if cpu_features().bf16:
        modes.append(("bf16", True))
    return modes


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "unetlab"


def machine_key(device: torch.device) -> dict:
    """What the cached numbers depend on."""
    from ..inference.cpu import cpu_features

    key = {"node": platform.node(), "machine": platform.machine(),
           "processor": platform.processor() or _cpu_model(),
           "cpu": cpu_features().describe(), "cpus": os.cpu_count(),
           "torch": torch.__version__, "threads": torch.get_num_threads(),
           "device": device.type, "probe_version": PROBE_VERSION}
    if device.type == "cuda":
        key["gpu"] = torch.cuda.get_device_name(device)
    return key


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def candidate_channels(width: int, depth: int) -> list[int]:
    return [width * 2 ** i for i in range(depth + 1)]


def _step_seconds(width, depth, tile, batch, in_ch, classes, device, amp, seconds,
                  channels_last: bool = False) -> float:
    before = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer runs it
    try:
        return _time_steps(width, depth, tile, batch, in_ch, classes, device, amp, seconds,
                           channels_last)
    finally:
        torch.backends.cudnn.benchmark = before


def _time_steps(width, depth, tile, batch, in_ch, classes, device, amp, seconds,
                channels_last) -> float:
    from .. import create_model

    torch.manual_seed(0)
    net = create_model("unet", in_channels=in_ch, num_classes=classes,
                       channels=tuple(candidate_channels(width, depth)), norm="batch")
    net = net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.randn(batch, in_ch, tile, tile, device=device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    from ..training.builder import train_with_winograd

    train_with_winograd("auto", net, device, amp)  # as the trainer runs it
    y = torch.randint(0, classes, (batch, tile, tile), device=device)

    def step():
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = net(x)
        loss = torch.nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step()  # warm-up (allocations, kernels)
    return median_step_seconds(step, seconds)


def median_step_seconds(step, seconds: float, max_steps: int = 20) -> float:
    """The median time of ``step()`` over ``seconds`` (at most ``max_steps`` calls): one
    step slowed by another process on a shared machine moved the mean, and with it the
    plan's width, by more than the candidates differ."""
    times, start = [], time.perf_counter()
    while True:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start >= seconds or len(times) >= max_steps:
            return float(statistics.median(times))


def probe_machine(*, depth: int, tile: int, batch: int, in_channels: int, num_classes: int,
                  device: torch.device | str = "cpu", widths=None, budget_s: float | None = None,
                  cache_dir=None, use_cache: bool = True, seconds: float = PROBE_SECONDS,
                  min_steps: int | None = None, time_limit_s: float | None = None) -> dict:
    """Seconds per optimizer step of each candidate width at ``tile``/``batch``.

    Returns ``{"device", "key", "tile", "batch", "depth", "steps_per_s": {width: value},
    "amp", "channels_last", "modes", "cached": bool, "probe_s"}``: ``amp`` ("none" or
    "bf16") and ``channels_last`` are the fastest numeric mode, in which every width is
    measured; ``modes`` holds the steps/s of each mode tried at :data:`MODE_WIDTH`.
    With ``budget_s`` and ``min_steps``, widths are not
    measured past the first that would make fewer than ``min_steps / 2`` steps in
    ``budget_s`` (wider is only slower). Results are cached in ``cache_dir`` (default
    ``~/.cache/unetlab``) under a key of the machine, torch version, threads and the
    candidate geometry.
    """
    device = torch.device(device)
    widths = tuple(widths or (GPU_WIDTHS if device.type == "cuda" else CPU_WIDTHS))
    modes = [("bf16", False), ("bf16", True)] if device.type == "cuda" else cpu_modes()
    key = {**machine_key(device), "depth": depth, "tile": tile, "batch": batch,
           "in_channels": in_channels, "num_classes": num_classes, "widths": list(widths),
           "modes": [f"{a}{'+cl' if c else ''}" for a, c in modes]}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / f"probe-{digest}.json"
    rates: dict[str, float] = {}
    mode_rates: dict[str, float] = {}
    rates_mode = None

    def name(amp_name, cl):
        return f"{amp_name}{'+cl' if cl else ''}"

    if use_cache and path.is_file():
        try:
            cached = json.loads(path.read_text())
            if cached.get("key") == key:
                rates = {str(k): float(v) for k, v in cached["steps_per_s"].items()}
                mode_rates = {str(k): float(v) for k, v in cached["modes"].items()}
                rates_mode = name(str(cached["amp"]), bool(cached["channels_last"]))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError,
                AttributeError):
            log.warning("ignoring unreadable probe cache %s", path)
            rates, mode_rates = {}, {}
    start = time.perf_counter()
    measured = 0

    if device.type == "cuda":
        ref = max(widths)
    else:
        ref = MODE_WIDTH if MODE_WIDTH in widths else widths[0]
    if len(modes) > 1:
        for amp_name, cl in modes:
            if name(amp_name, cl) in mode_rates:
                continue
            if mode_rates and time_limit_s is not None \
                    and time.perf_counter() - start > time_limit_s:
                log.info("probe: mode comparison stopped after %.1fs (limit %.1fs)",
                         time.perf_counter() - start, time_limit_s)
                break
            dtype = torch.bfloat16 if amp_name == "bf16" else None
            mode_rates[name(amp_name, cl)] = round(1.0 / _step_seconds(
                ref, depth, tile, batch, in_channels, num_classes, device, dtype,
                seconds, channels_last=cl), 4)
            measured += 1
            log.info("probe: mode %s at width %d, %.3f steps/s", name(amp_name, cl), ref,
                     mode_rates[name(amp_name, cl)])
        first = name(*modes[0])   # float32 on a CPU, bf16 in the default layout on a GPU
        best = max(mode_rates, key=lambda m: mode_rates[m])  # among the modes measured
        if mode_rates[best] < MODE_GAIN * mode_rates[first]:
            best = first
    else:
        best = name(*modes[0])
        mode_rates.setdefault(best, 0.0)
    if rates_mode is not None and rates_mode != best:
        rates = {}  # the widths were measured in another mode (a completed partial probe)
    amp_name, cl = best.split("+")[0], best.endswith("+cl")
    amp = torch.bfloat16 if amp_name == "bf16" else None
    if len(modes) > 1 and best in mode_rates and str(ref) not in rates:
        # the reference width was measured in the chosen mode already: keep it even when
        # the time limit stops the loop below first (on a GPU it is the widest candidate)
        rates[str(ref)] = mode_rates[best]
    for w in widths:
        if str(w) not in rates:
            rates[str(w)] = round(1.0 / _step_seconds(w, depth, tile, batch, in_channels,
                                                      num_classes, device, amp, seconds,
                                                      channels_last=cl), 4)
            measured += 1
            log.info("probe: width %d, %.3f steps/s", w, rates[str(w)])
        if budget_s and min_steps and budget_s * rates[str(w)] < min_steps / 2:
            break  # wider networks are only slower
        if time_limit_s is not None and time.perf_counter() - start > time_limit_s:
            log.info("probe: stopped after %.1fs (limit %.1fs)", time.perf_counter() - start,
                     time_limit_s)
            break
    result = {"device": device.type, "key": key, "tile": tile, "batch": batch,
              "depth": depth, "steps_per_s": rates, "amp": amp_name, "channels_last": cl,
              "modes": mode_rates, "cached": measured == 0,
              "probe_s": round(time.perf_counter() - start, 2)}
    if use_cache and measured:
        try:
            from .._io import write_json

            write_json(path, result)
        except (OSError, UnetlabError) as exc:  # a cache that cannot be written is no error
            log.warning("could not cache the probe in %s: %s", path, exc)
    return result

