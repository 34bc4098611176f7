"""``backend="auto"``: the fastest backend and precision that keeps fp32's answers here.

A short probe builds each candidate (torch, ONNX Runtime and OpenVINO in fp32; bf16 where
the CPU computes it natively; OpenVINO int8, with the first convolution and the 1x1 head
in fp32 and with everything in int8), runs it on the probe input, and keeps the
fastest whose per-pixel argmax agrees with the fp32 model on at least
:data:`AGREEMENT` of the pixels (so a binary pixel error moves by at most 0.005). The
candidates that pass are timed in interleaved rounds (the median of :data:`ROUNDS` calls
each), so that a slow spell of the machine falls on all of them alike; where holding
them all at once would take more than :data:`INTERLEAVE_BYTES` (or a quarter of the
available memory), they are built and timed one at a time instead.
Reduced precisions are tried only on ``calibration`` data, the user's own images: random
inputs say nothing about their accuracy. bf16 is never a candidate on a CPU without
AVX512-BF16 or AMX (:func:`.cpu.allowed_precisions`).

The choice is cached in ``$UNETLAB_CACHE_DIR`` (default: the user cache folder,
``~/.cache/unetlab``) under a key made of the CPU, the library versions, the model's
config and weights, the probe shape and the calibration data, so the probe runs once.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import statistics
import time
from pathlib import Path

import torch

from ..errors import exception_line
from . import cpu

log = logging.getLogger(__name__)

AGREEMENT = 0.995
AUTO_BACKENDS_ENV = "UNETLAB_AUTO_BACKENDS"
CACHE_FILE = "backend_probe.json"
_ORDER = [("torch", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"),
          ("torch", "bf16"), ("openvino", "bf16"), ("openvino", "int8")]
_PRECISIONS = ("fp32", "bf16", "fp16", "int8", "auto")
ROUNDS = 5  # timed calls per candidate (the median counts)
INTERLEAVE_BYTES = 4 << 30  # the most memory the candidates may hold at once


def _parameter_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def candidates(*, backend: str = "auto", precision: str = "auto", device=None,
               calibration: bool = False, features: cpu.CpuFeatures | None = None) -> list:
    """``(backend, precision)`` pairs the probe tries, fastest-looking first."""
    device = torch.device(device or "cpu")
    if device.type != "cpu":
        return [("torch", "fp32" if precision == "auto" else precision)]
    if precision == "fp16":
        raise ValueError("precision='fp16' needs a CUDA device; on the CPU use 'bf16'")
    features = features or cpu.cpu_features()
    if precision == "bf16" and not features.bf16:
        raise ValueError(f"precision='bf16' needs a CPU with AVX512-BF16 or AMX; this is "
                         f"{features.describe()}")
    allowed = cpu.allowed_precisions(features) if calibration else ("fp32",)
    installed = {"torch": True,
                 "onnxruntime": importlib.util.find_spec("onnxruntime") is not None,
                 "openvino": importlib.util.find_spec("openvino") is not None
                 and importlib.util.find_spec("nncf") is not None}
    only = os.environ.get(AUTO_BACKENDS_ENV)  # e.g. "torch,onnxruntime": auto tries only these
    if only and backend == "auto":
        names = {n.strip() for n in only.split(",") if n.strip()}
        installed = {b: ok and b in names for b, ok in installed.items()}
    out = [(b, p) for b, p in _ORDER
           if installed[b] and backend in ("auto", b) and precision in ("auto", p)
           and (p in allowed or precision == p)]
    if precision not in ("auto", "fp32") and not out:
        raise ValueError(f"precision={precision!r} is not available with backend={backend!r} "
                         f"on {features.describe()}")
    return out or [("torch", "fp32")]


def _default_shape(model) -> tuple:
    from ..models.geometry import geometry_of

    geo = geometry_of(model)
    dims = geo.spatial_dims
    size = 256 if dims == 2 else 64
    if geo.padding == "valid":
        from ..models.unet import valid_input_size

        size = valid_input_size(size, geo.levels)
    return (1, int(getattr(model, "in_channels", 1)), *(size,) * dims)


#: what the exported graphs look like; a change makes cached choices stale (2: no no-op
#: skip crops, OpenVINO's decoder levels split; 3: int8 weights in 7 bits; 4: Winograd
#: layers in OpenVINO's fp32 graphs)
GRAPH_VERSION = 4
#: the int8 variants probed when the caller names no ``keep_fp32``: the default of
#: ``backend="openvino"`` (first conv and head in fp32) and everything in int8, which was
#: faster on an AMX CPU (1.10x in a probe at 256², 1.4x in layer time at 512²), no
#: faster with AVX2 kernels, and kept the accuracy of three trained models
#: (docs/inference.md); the probe's agreement check decides per model
INT8_VARIANTS = (("first", "last"), ())


def variants(pairs, keep_fp32=None) -> list:
    """``(backend, precision, keep_fp32)`` for each candidate pair: int8 in each of
    :data:`INT8_VARIANTS`, or only in ``keep_fp32`` when the caller names it (ValueError
    for names other than "first" and "last")."""
    if keep_fp32 is not None:
        from .openvino import KEEP_FP32

        if isinstance(keep_fp32, str) or not set(keep_fp32 := tuple(keep_fp32)) \
                <= set(KEEP_FP32):
            raise ValueError(f"keep_fp32={keep_fp32!r}: give a tuple of names from "
                             f"{list(KEEP_FP32)}, e.g. ('first', 'last') or ()")
    keeps = INT8_VARIANTS if keep_fp32 is None else (tuple(keep_fp32),)
    return [(b, p, keep) for b, p in pairs
            for keep in (keeps if p == "int8" else (None,))]


def candidate_name(backend, precision, keep=None) -> str:
    """How the probe names a candidate: ``openvino_int8``, ``openvino_int8_all`` (every
    layer in int8), ``torch_fp32``..."""
    return f"{backend}_{precision}" + ("_all" if keep is not None and not keep else "")


def _digest(model, shape, batches, triples, gate=True) -> str:
    from .. import __version__

    h = hashlib.sha256()
    versions = {name: _version(name) for name in ("openvino", "onnxruntime", "nncf")}
    h.update(json.dumps({"cpu": cpu.cpu_features().as_dict(), "torch": torch.__version__,
                         "unetlab": __version__, "versions": versions,
                         "config": getattr(model, "unetlab_config", type(model).__name__),
                         "shape": list(shape), "candidates": triples,
                         "agreement": AGREEMENT, "timing": f"interleaved {ROUNDS}",
                         "gate": gate,
                         "graph": GRAPH_VERSION},
                        sort_keys=True, default=str).encode())
    for tensor in list(model.state_dict().values()) + list(batches):
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _version(name: str):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def cache_path() -> Path:
    root = os.environ.get("UNETLAB_CACHE_DIR")
    if not root:
        import platformdirs

        root = platformdirs.user_cache_dir("unetlab")
    return Path(root) / CACHE_FILE


def _read_cache() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(key: str, entry: dict) -> None:
    path = cache_path()
    data = _read_cache()
    data[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, path)
    except OSError as exc:  # a read-only home: the probe just runs again next time
        log.warning("cannot cache the backend probe in %s: %s", path, exc)


def _agreement(reference: list, outputs: list) -> float:
    same = sum(int((a.argmax(1) == b.argmax(1)).sum()) for a, b in zip(reference, outputs))
    return same / sum(a[:, 0].numel() for a in reference)


def _times(runners: dict, x, rounds: int = ROUNDS) -> dict:
    """Median seconds per call of each runner, timed in interleaved rounds (one call of
    each per round, after one warm-up call each; the order rotates from round to round),
    so that a slower spell of the machine (another job, a clock change) or the threads a
    runner leaves spinning fall on every candidate alike, not on one."""
    names = list(runners)
    for fn in runners.values():
        fn(x)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t = time.perf_counter()
            runners[name](x)
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(values) for name, values in times.items()}


def _rss_bytes() -> int | None:
    """This process's resident memory (Linux), or None where it cannot be read."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _interleave_limit() -> int:
    """At most :data:`INTERLEAVE_BYTES`, and at most a quarter of the memory available."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return min(INTERLEAVE_BYTES, int(line.split()[1]) * 1024 // 4)
    except (OSError, ValueError, IndexError):
        pass
    return INTERLEAVE_BYTES


def choose(model, *, backend="auto", precision="auto", device=None, calibration=None,
           num_threads=None, probe_shape=None, cache=True, keep_fp32=None):
    """The fastest accurate candidate as an InferenceModel with a ``choice`` dict
    (``keep_fp32``: the layers int8 leaves in fp32; None probes :data:`INT8_VARIANTS`)."""
    from .export import optimize_for_inference

    if precision not in _PRECISIONS:
        raise ValueError(f"precision={precision!r} is not valid with backend='auto'; choose "
                         f"one of {list(_PRECISIONS)}")
    batches = [torch.as_tensor(b).float() for b in calibration] if calibration is not None \
        else []
    triples = variants(candidates(backend=backend, precision=precision, device=device,
                                  calibration=bool(batches)), keep_fp32)

    shape = tuple(probe_shape or (batches[0].shape if batches else _default_shape(model)))

    def build(b, p, keep=None):  # keep None: the openvino backend's default layers
        return optimize_for_inference(model, backend=b, precision=p, device=device,
                                      num_threads=num_threads, keep_fp32=keep,
                                      calibration=batches if p == "int8" else None,
                                      probe_shape=shape)  # (OpenVINO's Winograd layers)

    if len(triples) == 1:
        b, p, keep = triples[0]
        fast = build(b, p, keep)
        fast.choice = {"backend": b, "precision": p, "probed": False,
                       **({"keep_fp32": list(keep)} if keep is not None else {})}
        return fast
    gate = precision == "auto"  # see _probe
    key = _digest(model, shape, batches, triples, gate)
    entry = _read_cache().get(key) if cache else None
    if entry is not None:
        fast = build(entry["backend"], entry["precision"], entry.get("keep_fp32"))
        fast.choice = {**entry, "cached": True}
        log.info("backend auto (cached): %s %s", entry["backend"], entry["precision"])
        return fast
    # a precision the caller pinned is what they asked for: if none of its candidates
    # agrees, the most agreeing one is kept (with a warning) instead of an error
    entry, fast = _probe(model, triples, build, shape, batches, device, gate=gate)
    if cache:
        _write_cache(key, entry)
    fast.choice = {**entry, "cached": False}
    return fast


def _probe(model, triples, build, shape, batches, device, gate=True):
    """The fastest candidate that agrees with fp32 on at least :data:`AGREEMENT` of the
    pixels; with ``gate=False`` (a pinned precision), when none does, the most agreeing
    one (rebuilt, with a warning) rather than a ValueError."""
    dev = torch.device(device or "cpu")
    torch.manual_seed(0)
    x = torch.rand(shape)
    checks = batches or [x]
    net = model.eval()
    with torch.inference_mode():
        reference = [net(b.to(dev)).float().cpu() for b in checks]
    agreement, kept, seconds, best, failed = {}, {}, {}, None, {}
    # every candidate that passes is timed together with the others (interleaved rounds),
    # unless holding them all at once would take too much memory: then one at a time.
    # A candidate's memory: what the first one added to the process (weights, buffers at
    # the probe's size), at least twice the weights
    together, before, xd = None, _rss_bytes(), x.to(dev)
    try:
        for b, p, keep in triples:
            name = candidate_name(b, p, keep)
            try:
                fast = build(b, p, keep)
                outputs = [fast(c).float().cpu() for c in checks]
            except Exception as exc:  # an export, compiler or runtime failure: next one
                expected = isinstance(exc, ValueError | ImportError | RuntimeError)
                log.log(logging.INFO if expected else logging.WARNING,
                        "backend probe: %s skipped (%s: %s)", name, type(exc).__name__, exc)
                failed[name] = exception_line(exc)
                continue
            agreement[name] = _agreement(reference, outputs)
            if agreement[name] < AGREEMENT:
                log.info("backend probe: %s rejected, argmax agreement %.4f", name,
                         agreement[name])
                continue
            if together is None:
                fast(xd)
                after = _rss_bytes()
                grown = after - before if None not in (before, after) else 0
                each = max(grown, 2 * _parameter_bytes(net))
                together = each * len(triples) <= _interleave_limit()
            if together:
                kept[name] = (b, p, keep, fast)
                continue
            seconds.update(_times({name: fast}, xd))
            if best is None or seconds[name] < seconds[best[0]]:
                best = (name, b, p, keep, fast)
        if kept:
            seconds = _times({name: item[-1] for name, item in kept.items()}, xd)
            name = min(seconds, key=seconds.get)
            best = (name, *kept[name])
    finally:
        kept.clear()  # the others go now, also when a candidate failed
    if best is None and not gate and agreement:
        name = max(agreement, key=agreement.get)
        b, p, keep = next(t for t in triples if candidate_name(*t) == name)
        log.warning("backend auto: no %s candidate agrees with fp32 on %.1f%% of the "
                    "probe's pixels; keeping the closest, %s (%.4f)", p, 100 * AGREEMENT,
                    name, agreement[name])
        best = (name, b, p, keep, build(b, p, keep))
    if best is None:
        why = "; ".join([f"{k} agrees with fp32 on {v:.4f} of the pixels (at least "
                         f"{AGREEMENT} needed)" for k, v in agreement.items()]
                        + [f"{k} failed: {v}" for k, v in failed.items()])
        raise ValueError(f"no backend passed the probe ({why or 'no candidate'})")
    name, b, p, keep, fast = best
    entry = {"backend": b, "precision": p, "seconds": seconds, "agreement": agreement,
             **({"keep_fp32": list(keep)} if keep is not None else {}),
             "shape": list(shape), "cpu": cpu.cpu_features().describe(),
             "calibration_batches": len(batches)}
    log.info("backend auto: %s (%s s per %s; %s)", name,
             f"{seconds[name]:.3f}" if name in seconds else "untimed", list(shape),
             ", ".join(f"{k} {v:.3f} s" for k, v in seconds.items()))
    return entry, fast
