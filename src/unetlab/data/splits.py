"""Holding out validation items from a training split, reproducibly and out loud.

Used by the trainer (``data.val_split`` as a fraction, ``data.val_items``, and folder
data that has no ``val/`` folder) and by anyone planning a run: each function returns
plain index lists, so the choice can be stated, saved and repeated.
"""

from __future__ import annotations

import logging

from ..errors import UnetlabError

log = logging.getLogger(__name__)

DEFAULT_VAL_FRACTION = 0.2  # held out when folder data has no validation split


def holdout_indices(n: int, fraction: float) -> tuple[list[int], list[int]]:
    """``(kept, held)``: the last ``round(n * fraction)`` items (at least one) are held
    out, so the same data always gives the same split."""
    if not 0.0 < fraction < 1.0:
        raise UnetlabError(f"validation fraction must be in (0, 1), got {fraction}")
    held = list(range(n - max(1, round(n * fraction)), n))
    return _split(n, held, f"data.val_split={fraction}")


def holdout_items(n: int, items) -> tuple[list[int], list[int]]:
    """``(kept, held)`` for explicit item indices (negative ones count from the end)."""
    held = set()
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise UnetlabError(f"data.val_items must be a list of item indices, got {item!r}")
        if not -n <= item < n:
            raise UnetlabError(f"data.val_items: index {item} is out of range for the {n} "
                               "training items")
        held.add(item % n)
    return _split(n, sorted(held), "data.val_items")


def _split(n: int, held: list[int], what: str) -> tuple[list[int], list[int]]:
    if len(held) >= n:
        raise UnetlabError(f"{what} holds out all {n} training items; nothing is left to "
                           "train on")
    gone = set(held)
    return [i for i in range(n) if i not in gone], held


def fallback_holdout(n: int, where: str,
                     fraction: float = DEFAULT_VAL_FRACTION) -> tuple[list[int], list[int]] | None:
    """The split used when the data has no validation split of its own: hold out
    ``fraction`` of the training items (logged in one line), or None with a one-line
    warning that validation runs on the training images when there is a single item."""
    if n < 2:
        log.warning("%s has no validation split and only %d training item: validation "
                    "runs on the training images", where, n)
        return None
    kept, held = holdout_indices(n, fraction)
    log.warning("%s has no validation split: holding out the last %d of %d training items "
                "(%g) for validation; set data.val_split to a split name, a fraction or "
                "null to change this", where, len(held), n, fraction)
    return kept, held
