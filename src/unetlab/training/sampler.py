"""A reproducible, resumable, rank-aware sampler.

The order of epoch ``e`` is a permutation drawn from ``seed + e`` alone, so a resumed run
sees exactly the batches an uninterrupted one would, even mid-epoch (``start``). With
``num_replicas`` processes, rank ``r`` takes every ``num_replicas``-th index of the same
permutation (as ``DistributedSampler`` does), so N processes with batch ``B/N`` see the
same global batches as one process with batch ``B``.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Indices of one rank for one epoch; call :meth:`set_epoch` before each epoch."""

    def __init__(self, length: int, *, shuffle: bool = True, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, pad: bool = True,
                 no_batch_of_one: int = 0):
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.num_replicas, self.rank, self.pad = num_replicas, rank, pad
        # the batch size when a last batch of one item must not happen (batch norm in
        # training: one image with a 1 x 1 deepest map is a single value per channel,
        # which it cannot normalise): the epoch then repeats its first item
        self.no_batch_of_one = no_batch_of_one
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select epoch ``epoch``, skipping this rank's first ``start`` indices."""
        self.epoch, self.start = epoch, start

    def _indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        if self.pad and self.num_replicas > 1:
            total = math.ceil(self.length / self.num_replicas) * self.num_replicas
            order += order[: total - len(order)]
        mine = order[self.rank::self.num_replicas]
        b = self.no_batch_of_one
        if b > 1 and len(mine) % b == 1:  # (one image alone too: two equal values pass)
            mine.append(mine[0])
        return mine

    def __iter__(self):
        return iter(self._indices()[self.start:])

    def __len__(self) -> int:
        return max(0, len(self._indices()) - self.start)


class SeededSampler(Sampler):
    """``(index, seed)`` pairs over an :class:`EpochSampler`: each item's augmentation
    seed is drawn from ``(seed, epoch, global position in the epoch)`` alone, so it does
    not depend on which loader worker draws the item, on the number of processes, or on
    a resume mid-epoch; the workers can then live for the whole run."""

    def __init__(self, sampler: EpochSampler, seed: int):
        self.sampler, self.seed = sampler, int(seed) % (1 << 63)  # SeedSequence: >= 0

    def __iter__(self):
        import numpy as np

        s = self.sampler
        for k, index in enumerate(s, start=s.start):
            position = k * s.num_replicas + s.rank
            state = np.random.SeedSequence([self.seed, s.epoch, position]).generate_state(1)
            yield index, int(state[0])

    def __len__(self) -> int:
        return len(self.sampler)
