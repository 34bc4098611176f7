"""The pixel limit: how large an image unetlab decodes before refusing it.

An image header can declare any size; a 126-byte PNG may claim 12000 x 12000 pixels and
a TIFF 50000 x 50000. Every reader (:mod:`unetlab.imageio`) compares the size the header
declares with this limit *before* decoding anything, and refuses with a one-line
:class:`~unetlab.errors.UnetlabError` naming the file, the size and how to raise it.

The limit, first match wins:

1. the innermost ``with pixel_limit(n):`` block (the ``--max-pixels`` flag of ``train``,
   ``evaluate`` and ``predict``; ``data.max_pixels`` of a training config);
2. the environment variable ``UNETLAB_MAX_PIXELS``;
3. :data:`DEFAULT_MAX_PIXELS` = 2**28 (268,435,456 pixels: 16384 x 16384).

Pixels are counted per channel plane: an RGB image of H x W counts H x W, a stack or a
volume counts every slice (Z x H x W).
"""

from __future__ import annotations

import contextlib
import os

from .errors import UnetlabError

DEFAULT_MAX_PIXELS = 1 << 28
ENV_VAR = "UNETLAB_MAX_PIXELS"

_stack: list[int] = []  # limits set by pixel_limit(), innermost last


def _parse(value, where: str) -> int:
    try:
        number = int(str(value).strip().replace("_", ""))
    except ValueError:
        raise UnetlabError(f"{where}={value!r}: expected a positive number of pixels, "
                           "e.g. 300000000") from None
    if number <= 0:
        raise UnetlabError(f"{where}={value!r}: expected a positive number of pixels")
    return number


def max_pixels() -> int:
    """The pixel limit in force now (see the module docstring)."""
    if _stack:
        return _stack[-1]
    env = os.environ.get(ENV_VAR)
    if env:
        return _parse(env, ENV_VAR)
    return DEFAULT_MAX_PIXELS


@contextlib.contextmanager
def pixel_limit(limit: int | None):
    """Decode images of up to ``limit`` pixels inside the block (None: leave the limit
    as it is). Data-loader worker processes forked inside the block inherit it."""
    if limit is None:
        yield max_pixels()
        return
    value = _parse(limit, "max_pixels")
    _stack.append(value)
    try:
        yield value
    finally:
        _stack.pop()


def check_pixels(path, shape, pixels: int) -> None:
    """Refuse an image whose header declares more than :func:`max_pixels` pixels."""
    limit = max_pixels()
    if pixels > limit:
        size = " x ".join(str(int(s)) for s in shape)
        raise UnetlabError(
            f"{path}: the header declares {size} ({pixels:,} pixels), over the limit of "
            f"{limit:,}; raise it with --max-pixels N (data.max_pixels, or {ENV_VAR}) "
            "if the image is genuine")
