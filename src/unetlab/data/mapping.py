"""Declared mask-value mappings: raw mask values (grey levels, palette indices or RGB
colours) to class ids, with values that mean "ignore".

An undeclared value is an error naming the file and listing the values, never a silent
0 (docs/labels.md, "one rule set for labels").
"""

from __future__ import annotations

import numpy as np

from ..errors import UnetlabError


def _parse_key(key):
    """A mapping key: an int (grey level / palette index) or an RGB triple."""
    if isinstance(key, str):
        text = key.strip()
        if text.startswith("#") and len(text) == 7:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))
        try:
            return int(text)
        except ValueError:
            raise UnetlabError(f"mask mapping key {key!r}: expected an integer, "
                               "'#rrggbb' or an (r, g, b) triple") from None
    if isinstance(key, list | tuple):
        if len(key) != 3:
            raise UnetlabError(f"mask mapping key {key!r}: an RGB colour needs 3 values")
        return tuple(int(v) for v in key)
    return int(key)


def _encode_rgb(array: np.ndarray) -> np.ndarray:
    array = array[..., :3].astype(np.int64)
    return (array[..., 0] << 16) | (array[..., 1] << 8) | array[..., 2]


class MaskMapping:
    """Map raw mask values to class ids.

    ``mapping``: ``{raw value: class id}``; raw values are ints or RGB colours
    (``(r, g, b)`` or ``"#rrggbb"``). ``ignore_values``: raw values mapped to
    ``ignore_index``. ``mapping=None`` means the raw values are the class ids
    ``0 .. num_classes - 1``.
    """

    def __init__(self, mapping=None, *, num_classes: int | None = None,
                 ignore_values=(), ignore_index: int | None = None):
        if mapping is None and num_classes is None:
            raise UnetlabError("MaskMapping needs a mapping or num_classes")
        ignore_values = [_parse_key(v) for v in (ignore_values or ())]
        if ignore_values and ignore_index is None:
            raise UnetlabError("ignore_values are declared but ignore_index is None")
        if mapping is None:
            mapping = {v: v for v in range(num_classes)}
        table = {_parse_key(k): int(v) for k, v in dict(mapping).items()}
        for v in ignore_values:
            table[v] = int(ignore_index)
        kinds = {isinstance(k, tuple) for k in table}
        if len(kinds) > 1:
            raise UnetlabError("mask mapping mixes RGB colours and single values")
        self.rgb = kinds == {True}
        self.table = table
        self.ignore_index = ignore_index
        keys = [self._code(k) for k in table]
        order = np.argsort(keys)
        self._keys = np.asarray(keys, dtype=np.int64)[order]
        self._values = np.asarray(list(table.values()), dtype=np.int64)[order]
        self._lut = None
        if not self.rgb and self._keys.min() >= 0 and self._keys.max() < 256:
            lut = np.full(256, -1, dtype=np.int64)
            lut[self._keys] = self._values
            self._lut = lut

    @staticmethod
    def _code(key) -> int:
        if isinstance(key, tuple):
            return (key[0] << 16) | (key[1] << 8) | key[2]
        return int(key)

    def __call__(self, raw: np.ndarray, *, source="mask") -> np.ndarray:
        """Class-id map (H, W) int64 for a raw mask; an error naming ``source`` and the
        unexpected values when the mask holds values the mapping does not declare."""
        raw = np.asarray(raw)
        if self.rgb:
            if raw.ndim == 3 and raw.shape[-1] == 2:  # grey + alpha
                raw = raw[..., 0]
            if raw.ndim == 2 and raw.dtype.kind in "biu" and (
                    not raw.size or 0 <= int(raw.min()) and int(raw.max()) <= 255):
                # a grey mask among colour ones (an empty mask saved as grey, say): value v
                # is the colour (v, v, v), as the folder format reads it when numbering
                raw = np.repeat(raw[..., None], 3, axis=-1)
            if raw.ndim != 3 or raw.shape[-1] < 3:
                raise UnetlabError(f"{source}: expected an RGB mask for the declared colour "
                                   f"mapping, got shape {raw.shape}")
            codes = _encode_rgb(raw)
        else:
            if raw.ndim == 3:
                if raw.shape[-1] >= 3 and not (np.array_equal(raw[..., 0], raw[..., 1])
                                               and np.array_equal(raw[..., 0], raw[..., 2])):
                    raise UnetlabError(f"{source}: colour mask but the mapping declares single "
                                       "values; declare RGB colours, e.g. {'#800000': 1}")
                raw = raw[..., 0]
            codes = raw
        if self._lut is not None and codes.dtype == np.uint8:
            out = self._lut[codes]
            bad = out < 0
        else:
            codes = codes.astype(np.int64)
            pos = np.clip(np.searchsorted(self._keys, codes), 0, len(self._keys) - 1)
            bad = self._keys[pos] != codes
            out = self._values[pos]
        if bad.any():
            values = np.unique(codes[bad])
            shown = [self._describe(int(v)) for v in values[:10]]
            more = f" (+{len(values) - 10} more)" if len(values) > 10 else ""
            valid = ", ".join(self._describe(int(k)) for k in self._keys[:20])
            raise UnetlabError(f"{source}: mask values outside the declared mapping: "
                               f"{', '.join(shown)}{more} (declared: {valid})")
        return out

    def _describe(self, code: int) -> str:
        if self.rgb:
            return f"#{code:06x}"
        return str(code)
