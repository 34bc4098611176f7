"""Prediction and evaluation across processes under ``torchrun``.

``torchrun --nproc_per_node=N -m unetlab predict|evaluate ...`` starts N processes; each
joins the process group (NCCL with one GPU per process for ``--device cuda``, gloo on
CPU with the machine's cores split between the processes of a node), takes a
deterministic share of the work and writes only its own outputs. Without torchrun
everything here is a no-op for one process.
"""

from __future__ import annotations

import logging
import os

import torch

from ..errors import UnetlabError
from ..training.distributed import (  # noqa: F401  (broadcast, gather re-exported)
    DistInfo,
    broadcast,
    cleanup,
    env_world_size,
    gather,
    init_distributed,
)

log = logging.getLogger(__name__)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def start(device: str = "cpu", threads: int | None = None) -> tuple[DistInfo, torch.device]:
    """Join the job's process group (if any) and pick this process's device.

    CPU: ``threads`` torch threads, by default the cores divided by the processes on this
    node (``LOCAL_WORLD_SIZE``), so N processes do not oversubscribe the machine.
    CUDA: one device per process, ``cuda:<LOCAL_RANK>``.
    """
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UnetlabError(f"--device {device!r} is not a valid device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnetlabError("--device cuda: no CUDA device is available")
    if threads is not None and threads < 1:
        raise UnetlabError(f"--threads {threads}: must be a positive number")
    world = env_world_size()
    if world > 1 and dev.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise UnetlabError(f"LOCAL_RANK {local}: this node has only "
                               f"{torch.cuda.device_count()} CUDA device(s); start one process "
                               "per GPU (torchrun --nproc_per_node=<GPUs>)")
        dev = torch.device("cuda", local)
    info = init_distributed(dev.type) if world > 1 else DistInfo()
    if dev.type == "cpu":
        if threads is None and info.enabled:
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
            threads = max(1, available_cores() // max(1, local_world))
        if threads is not None:
            torch.set_num_threads(threads)
    return info, dev


def stop(info: DistInfo, ok: bool = True) -> None:
    """Leave the process group (waiting for the others unless this rank failed)."""
    if info.enabled:
        cleanup(synchronize=ok)


def shard_by_pixels(pixels: list[int | None], world: int) -> list[int]:
    """The rank of each item: largest first to the least-loaded rank (ties: lower rank),
    so shares balance by pixel count, not file count; deterministic."""
    loads = [0] * world
    ranks = [0] * len(pixels)
    order = sorted(range(len(pixels)), key=lambda i: (-(pixels[i] or 1), i))
    for i in order:
        r = min(range(world), key=lambda k: (loads[k], k))
        ranks[i] = r
        loads[r] += pixels[i] or 1
    return ranks
