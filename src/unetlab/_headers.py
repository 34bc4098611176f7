"""What an image file declares, read from its header before anything is decoded.

- :func:`tiff_header`: the shape tifffile will return and the pixel count (per channel).
- :func:`check_png_data`: the PNG's compressed image data really holds every row its
  header declares (Pillow silently fills missing rows with 0 when the zlib stream ends
  early), inflated in bounded pieces so a decompression bomb never fills memory.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

from .errors import UnetlabError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))
_PIECE = 1 << 20


def tiff_header(path: Path) -> tuple[tuple[int, ...], int]:
    """``(shape of the first series, pixels per channel)`` from a TIFF's header."""
    import tifffile

    try:
        with tifffile.TiffFile(str(path)) as tif:
            series = tif.series[0]
            shape = tuple(int(s) for s in series.shape)
            samples = int(getattr(tif.pages[0], "samplesperpixel", 1) or 1)
    except Exception as exc:  # tifffile raises many types for damaged headers
        raise UnetlabError(f"{path}: unreadable TIFF ({' '.join(str(exc).split())})") from None
    total = math.prod(shape)
    return shape, total // samples if samples > 0 and total % samples == 0 else total


def _expected_png_bytes(width: int, height: int, depth: int, color: int, interlace: int,
                        path) -> int:
    """Bytes of filtered scanlines the zlib stream must inflate to."""
    channels = _PNG_CHANNELS.get(color)
    if channels is None or depth not in (1, 2, 4, 8, 16):
        raise UnetlabError(f"{path}: invalid PNG header (colour type {color}, bit depth "
                           f"{depth})")

    def size(w: int, h: int) -> int:
        return 0 if w == 0 or h == 0 else h * (1 + (w * channels * depth + 7) // 8)

    if interlace == 0:
        return size(width, height)
    return sum(size(max(0, (width - x0 + dx - 1) // dx), max(0, (height - y0 + dy - 1) // dy))
               for x0, y0, dx, dy in _ADAM7)


def check_png_data(path: Path) -> None:
    """A one-line error when the PNG's image data stops before its last row."""
    with open(path, "rb") as f:
        if f.read(8) != PNG_SIGNATURE:
            return  # not a PNG after all: Pillow decides
        inflater = zlib.decompressobj()
        expected = produced = None
        while True:
            head = f.read(8)
            if len(head) < 8:
                break
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IHDR":
                data = f.read(min(length, 13))
                if len(data) < 13:
                    break
                width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", data)
                expected = _expected_png_bytes(width, height, depth, color, interlace, path)
                produced = 0
                f.seek(length - 13 + 4, 1)
            elif kind == b"IDAT" and expected is not None:
                left = length
                while left and not inflater.eof and produced < expected:
                    piece = f.read(min(left, _PIECE))
                    if not piece:
                        break
                    left -= len(piece)
                    produced += _inflate(inflater, piece, expected - produced, path)
                if inflater.eof or produced >= expected:
                    return _verdict(path, produced, expected, width, height)
                if left:
                    break  # the file ended inside this chunk
                f.seek(4, 1)
            elif kind == b"IEND":
                break
            else:
                f.seek(length + 4, 1)
    if expected is None:
        raise UnetlabError(f"{path}: truncated PNG (no image header)")
    _verdict(path, produced, expected, width, height)


def _inflate(inflater, piece: bytes, room: int, path) -> int:
    """Inflate ``piece`` in bounded steps; the number of bytes it produced."""
    produced = 0
    data = piece
    try:
        while data and not inflater.eof and produced < room:
            out = inflater.decompress(data, min(_PIECE, room - produced + 1))
            produced += len(out)
            data = inflater.unconsumed_tail
    except zlib.error as exc:
        raise UnetlabError(f"{path}: corrupt PNG image data ({exc})") from None
    return produced


def _verdict(path, produced: int, expected: int, width: int, height: int) -> None:
    if produced < expected:
        raise UnetlabError(
            f"{path}: truncated PNG: its image data stops at {produced * 100 // max(expected, 1)}"
            f"% of the {width} x {height} pixels the header declares")
