"""Durations on the command line: ``90s``, ``25m``, ``2h``, ``1h30m`` or plain seconds."""

from __future__ import annotations

import math
import re

from ..errors import UnetlabError

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text) -> float:
    """Seconds in ``text`` (``"90s"``, ``"25m"``, ``"2h"``, ``"1h30m"``, ``"45"``)."""
    raw = str(text).strip().lower()
    try:
        value = float(raw)
    except ValueError:
        parts = _PART.findall(raw)
        if not parts or _PART.sub("", raw).strip():
            raise UnetlabError(f"duration {text!r}: use e.g. 90s, 25m, 2h or 1h30m") from None
        value = sum(float(n) * _UNITS[u] for n, u in parts)
    if not value > 0:
        raise UnetlabError(f"duration {text!r} must be positive")
    if not math.isfinite(value):  # float("inf") parsed: it failed later as NaN steps
        raise UnetlabError(f"duration {text!r} must be finite: use e.g. 90s, 25m, 2h")
    return value
