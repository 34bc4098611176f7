"""Hand-built image files for the careless-and-hostile-input tests (issue 12)."""

from __future__ import annotations

import struct
import zlib


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, scanlines: bytes, *, depth: int = 8, color: int = 0,
              interlace: int = 0) -> bytes:
    """A PNG whose header says ``width`` x ``height`` and whose (complete, valid) zlib
    stream holds ``scanlines``, however many rows that really is."""
    header = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(scanlines)) + png_chunk(b"IEND", b""))


def grey_rows(width: int, rows: int, value: int = 200) -> bytes:
    """``rows`` unfiltered 8-bit grey scanlines."""
    return (b"\x00" + bytes([value]) * width) * rows


def tiff_bytes(width: int, height: int, data: bytes = b"\x00" * 16) -> bytes:
    """A little-endian baseline TIFF declaring ``width`` x ``height`` 8-bit grey pixels
    in one uncompressed strip, followed by ``data`` (usually far too little)."""
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (259, 3, 1, 1),
               (262, 3, 1, 1), (273, 4, 1, 0), (277, 3, 1, 1), (278, 4, 1, height),
               (279, 4, 1, min(width * height, 2**32 - 1))]
    ifd_offset = 8
    data_offset = ifd_offset + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 273:
            value = data_offset
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + data
