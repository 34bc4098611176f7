"""Resolution as a dataset option: images resampled by area (shrinking) or bilinear
(enlarging), class-id masks and weight maps by nearest neighbour, so no label value is
ever invented. Also the inverse for predictions: logits back to the native size."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import UnetlabError


def check_scale(scale) -> float:
    """``scale`` as a float in [1/32, 4] (one-line error otherwise): what a model card
    can carry (:data:`unetlab.card.MIN_SCALE`)."""
    from ..card import MIN_SCALE

    span = f"[1/{round(1 / MIN_SCALE)}, 4]"
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise UnetlabError(f"scale={scale!r}: expected a number in {span}") from None
    if not MIN_SCALE <= value <= 4.0:
        raise UnetlabError(f"scale={scale!r}: expected a number in {span}")
    return value


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """The (height, width) of an image of ``height x width`` at ``scale`` (at least 1)."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """An ``(H, W[, C])`` image at ``scale``: area averaging when shrinking, bilinear
    when enlarging; the dtype is kept (any number of channels)."""
    import cv2

    if scale == 1.0:
        return image
    h, w = scaled_size(image.shape[0], image.shape[1], scale)
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    src = image if image.dtype in (np.uint8, np.float32) else image.astype(np.float32)
    if src.ndim == 3 and src.shape[2] > 4:  # cv2 resizes at most 4 channels reliably
        out = np.stack([cv2.resize(np.ascontiguousarray(src[..., c]), (w, h),
                                   interpolation=interp) for c in range(src.shape[2])], -1)
    else:
        out = cv2.resize(np.ascontiguousarray(src), (w, h), interpolation=interp)
        if src.ndim == 3 and out.ndim == 2:
            out = out[..., None]
    return out


def resize_labels(mask: np.ndarray, scale: float) -> np.ndarray:
    """A class-id map (or weight map) at ``scale`` by nearest neighbour."""
    import cv2

    if scale == 1.0:
        return mask
    h, w = scaled_size(mask.shape[0], mask.shape[1], scale)
    src = mask if mask.dtype in (np.uint8, np.int16, np.float32) else mask.astype(np.int32)
    if src.dtype == np.int32:  # cv2 nearest takes int32 only through float; exact < 2**24
        out = cv2.resize(src.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
        return out.astype(mask.dtype)
    return cv2.resize(np.ascontiguousarray(src), (w, h),
                      interpolation=cv2.INTER_NEAREST).astype(mask.dtype, copy=False)


def resize_tensor_image(image: torch.Tensor, scale: float) -> torch.Tensor:
    """A ``(C, H, W)`` float tensor at ``scale`` (area when shrinking, bilinear when
    enlarging): what the model sees when its card says ``scale``."""
    if scale == 1.0:
        return image
    size = scaled_size(image.shape[-2], image.shape[-1], scale)
    mode = "area" if scale < 1.0 else "bilinear"
    kwargs = {} if mode == "area" else {"align_corners": False}
    return torch.nn.functional.interpolate(image[None].float(), size=size, mode=mode,
                                           **kwargs)[0]


def upsample_logits(logits: torch.Tensor, size) -> torch.Tensor:
    """``(K, h, w)`` logits resampled bilinearly to ``size`` = (H, W) (the native
    resolution), so that the argmax is taken at full resolution."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return torch.nn.functional.interpolate(logits[None].float(), size=tuple(size),
                                           mode="bilinear", align_corners=False)[0]
