"""Cost measurements for one model: parameters, FLOPs, inference latency and peak memory.

Memory is the peak the operating system saw (CPU) or the peak of PyTorch's CUDA caching
allocator (``torch.cuda.max_memory_allocated``):

- ``mode="process"`` (CPU, the robust default): a fresh Python process imports torch,
  runs one warm-up convolution, reads its resident set size (``VmRSS`` in
  ``/proc/self/status``) as the baseline, builds the model, runs one inference pass and
  reads the peak (``VmHWM``); then resets the peak (``/proc/self/clear_refs``), runs two
  training steps (forward, loss, backward, Adam step) and reads the peak again. Both
  numbers are peaks *above the baseline*, so they include the weights, the gradients,
  the optimizer state and the activations, but not the Python/torch runtime.
- ``mode="inline"`` (CPU): the same in this process; cheaper but approximate (memory
  freed earlier and kept by the allocator hides part of the peak).
- CUDA: always inline, with ``torch.cuda.reset_peak_memory_stats``.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

import torch

from ..errors import UnetlabError

log = logging.getLogger(__name__)

MEMORY_MODES = ("process", "inline", "off")
_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``), None off Linux."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_latency(model, input_shape, *, device="cpu", runs: int = 10,
                    warmup: int = 2) -> float:
    """Median wall-clock seconds of one forward pass (eval mode, no gradients)."""
    device = torch.device(device)
    x = torch.randn(*input_shape, device=device)
    was_training = model.training
    model.eval()
    times = []
    try:
        with torch.no_grad():
            for i in range(warmup + runs):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
                model(x)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return statistics.median(times)


def _one_pass(model, x, train: bool, optimizer=None) -> None:
    if not train:
        model.eval()
        with torch.no_grad():
            model(x)
        return
    model.train()
    logits = model(x)
    target = torch.zeros(logits.shape[0], *logits.shape[2:], dtype=torch.long,
                         device=logits.device)
    loss = torch.nn.functional.cross_entropy(logits, target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def _cpu_peaks(build, infer_shape, train_shape) -> dict:
    """Peak RSS above the baseline for inference and training, in MiB (this process)."""
    torch.nn.functional.conv2d(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 3, 3))
    base = _status_kib("VmRSS")
    if base is None:
        return {"peak_infer_mb": None, "peak_train_mb": None}
    _reset_peak_rss()
    model = build()
    _one_pass(model, torch.randn(*infer_shape), train=False)
    infer = _status_kib("VmHWM") - base
    if not _reset_peak_rss():
        return {"peak_infer_mb": infer / 1024, "peak_train_mb": None}
    optimizer = torch.optim.Adam(model.parameters())
    x = torch.randn(*train_shape)
    for _ in range(2):
        _one_pass(model, x, train=True, optimizer=optimizer)
    train = _status_kib("VmHWM") - base
    return {"peak_infer_mb": infer / 1024, "peak_train_mb": train / 1024}


def _child_main(argv: list[str]) -> int:
    """Entry point of the measuring child process: JSON arguments in, JSON out."""
    import json
    import sys

    args = json.loads(argv[0])
    torch.set_num_threads(int(args["threads"]))
    from .. import create_model

    spec = args["spec"]
    result = _cpu_peaks(lambda: create_model(spec["name"], **spec["kwargs"]),
                        args["infer_shape"], args["train_shape"])
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def measure_memory(spec: dict, infer_shape, train_shape, *, device="cpu",
                   mode: str = "process") -> dict:
    """Peak inference and training memory in MiB for the model ``spec``
    (``{"name": ..., "kwargs": {...}}`` for :func:`unetlab.create_model`).

    Returns ``{"peak_infer_mb": float|None, "peak_train_mb": float|None}``.
    """
    if mode not in MEMORY_MODES:
        raise UnetlabError(f"memory mode {mode!r}: choose one of {', '.join(MEMORY_MODES)}")
    if mode == "off":
        return {"peak_infer_mb": None, "peak_train_mb": None}
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_peaks(spec, infer_shape, train_shape, device)
    if mode == "inline":
        from .. import create_model

        return _cpu_peaks(lambda: create_model(spec["name"], **spec["kwargs"]),
                          infer_shape, train_shape)
    import json
    import subprocess
    import sys

    payload = json.dumps({"spec": spec, "infer_shape": list(infer_shape),
                          "train_shape": list(train_shape),
                          "threads": torch.get_num_threads()})
    code = "import sys; from unetlab.compare.measure import _child_main; " \
           "sys.exit(_child_main(sys.argv[1:]))"
    try:
        done = subprocess.run([sys.executable, "-c", code, payload], capture_output=True,
                              text=True, timeout=600, check=False)
        result = json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        tail = locals().get("done")
        reason = (tail.stderr.strip().splitlines() or [""])[-1] if tail is not None else exc
        log.warning("memory measurement failed for %s: %s", spec["name"], reason)
        return {"peak_infer_mb": None, "peak_train_mb": None}
    return result


def _cuda_peaks(spec: dict, infer_shape, train_shape, device) -> dict:
    from .. import create_model

    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    model = create_model(spec["name"], **spec["kwargs"]).to(device)
    _one_pass(model, torch.randn(*infer_shape, device=device), train=False)
    torch.cuda.synchronize(device)
    infer = torch.cuda.max_memory_allocated(device) - base
    torch.cuda.reset_peak_memory_stats(device)
    optimizer = torch.optim.Adam(model.parameters())
    x = torch.randn(*train_shape, device=device)
    for _ in range(2):
        _one_pass(model, x, train=True, optimizer=optimizer)
    torch.cuda.synchronize(device)
    train = torch.cuda.max_memory_allocated(device) - base
    del model, optimizer, x
    torch.cuda.empty_cache()
    return {"peak_infer_mb": infer / 2**20, "peak_train_mb": train / 2**20}
