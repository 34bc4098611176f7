"""What a model needs of its input's size, in one object every caller reads.

Every registered model answers ``model.geometry()`` with a :class:`Geometry`: the tiler,
export, evaluation and the model card read it instead of guessing from attribute names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Geometry:
    """``spatial_dims``: 2 or 3. ``divisor``: same-padding models pad each axis up to a
    multiple of it internally, so tiles should be multiples of it. ``padding``: "same"
    (output size = input size) or "valid" (the output is smaller by ``2 * margin`` per
    axis; the paper's overlap-tile). ``levels``: resolution levels (pooling steps + 1).
    ``margin``: context pixels lost on each side by a valid-padding model (0 for same).
    """

    spatial_dims: int = 2
    divisor: int = 1
    padding: str = "same"
    levels: int = 1
    margin: int = 0

    def output_size(self, input_size: int) -> int:
        """Output size along one axis for an input of ``input_size`` pixels (ValueError
        naming the nearest valid sizes for a valid-padding model)."""
        if self.padding == "valid":
            from .unet import valid_output_size

            return valid_output_size(input_size, self.levels)
        return input_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Geometry:
        return cls(**{k: data[k] for k in ("spatial_dims", "divisor", "padding", "levels",
                                            "margin") if k in data})


def valid_margin(levels: int) -> int:
    """Pixels lost on each side by a ``levels``-level valid-padding U-Net (92 for 5)."""
    from .unet import valid_input_size, valid_output_size

    size = valid_input_size(1, levels)
    return (size - valid_output_size(size, levels)) // 2


def geometry_of(model) -> Geometry:
    """``model.geometry()`` for unetlab models and wrappers that forward it; a plain
    callable without one is a same-padding model with no size constraint."""
    method = getattr(model, "geometry", None)
    if callable(method):
        geo = method()
        if isinstance(geo, Geometry):
            return geo
    if isinstance(method, Geometry):
        return method
    return Geometry(spatial_dims=int(getattr(model, "spatial_dims", 2) or 2))
