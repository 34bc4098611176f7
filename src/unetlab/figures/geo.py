"""Remote sensing: a synthetic 4-band scene, its labels, and a tiny U-Net's prediction.

The scene comes from :mod:`unetlab.data.synthetic_geo` (red, green, blue, near-infrared,
uint16 reflectances, a no-data corner). A U-Net (channels 8, 16, 32) is trained for a
few dozen steps on crops from the top 80 % of the rows, with the bands standardised by
their statistics there and no-data pixels ignored; the bottom 20 % is held out and the
prediction's mIoU is measured there.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ._plot import new_figure, save_png, show_image

log = logging.getLogger(__name__)


def train_tiny_geo_unet(steps: int = 150, *, size: int = 256, seed: int = 0, crop: int = 64,
                        batch_size: int = 8, lr: float = 5e-3):
    """Returns ``(image (4, S, S) uint16, labels (S, S), prediction (S, S), val_miou,
    cut)`` where rows ``cut:`` were held out. Deterministic for a given ``seed``."""
    from .. import create_model
    from ..data.synthetic_geo import GEO_CLASSES, make_geo_scene
    from ..inference import predict_tiled
    from ..losses import build_loss
    from ..metrics import SegmentationMetrics

    torch.manual_seed(seed)
    image, labels = make_geo_scene(size, seed)
    cut = int(size * 0.8)
    crop = min(crop, cut)
    unit = image.astype(np.float32) / 65535
    valid = labels != 255
    train_pixels = unit[:, :cut][:, valid[:cut]]
    mean, std = train_pixels.mean(1), train_pixels.std(1)
    x = (unit - mean[:, None, None]) / std[:, None, None]
    x[:, ~valid] = 0.0  # no-data: the band mean
    x, y = torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))
    k = len(GEO_CLASSES)
    model = create_model("unet", in_channels=4, num_classes=k, channels=(8, 16, 32),
                         norm="batch")
    loss_fn = build_loss("dice_ce", num_classes=k, ignore_index=255)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        rows = torch.randint(0, cut - crop + 1, (batch_size,), generator=gen).tolist()
        cols = torch.randint(0, size - crop + 1, (batch_size,), generator=gen).tolist()
        xb = torch.stack([x[:, r:r + crop, c:c + crop] for r, c in zip(rows, cols)])
        yb = torch.stack([y[r:r + crop, c:c + crop] for r, c in zip(rows, cols)])
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            log.info("geo unet step %d loss %.4f", step, loss.item())
    model.eval()
    with torch.no_grad():
        prediction = predict_tiled(model, x, tile_size=128).argmax(0).numpy()
    prediction[~valid] = 255
    metrics = SegmentationMetrics(k, ignore_index=255, boundary=False)
    metrics.update(torch.from_numpy(prediction[cut:].astype(np.int64))[None], y[cut:][None])
    return image, labels, prediction, float(metrics.compute()["miou"]), cut


def _rgb(bands: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A 2-98 % percentile stretch of three bands to an (H, W, 3) float image."""
    out = np.zeros((*bands.shape[1:], 3), dtype=np.float32)
    for i, band in enumerate(bands.astype(np.float32)):
        lo, hi = np.percentile(band[valid], (2, 98))
        out[..., i] = np.clip((band - lo) / max(hi - lo, 1e-6), 0, 1)
    out[~valid] = 1.0
    return out


def remote_sensing(path, steps: int = 150, size: int = 256):
    """Figure: true colour, false colour (NIR, red, green), labels, prediction."""
    from ..data.synthetic_geo import GEO_CLASSES, GEO_PALETTE

    image, labels, prediction, miou, cut = train_tiny_geo_unet(steps, size=size)
    valid = labels != 255
    palette = np.vstack([GEO_PALETTE, np.full((251, 3), 255, np.uint8)])
    fig, axes = new_figure(8.0, 2.6, ncols=4)
    show_image(axes[0, 0], _rgb(image[[0, 1, 2]], valid), "true colour (R, G, B)")
    show_image(axes[0, 1], _rgb(image[[3, 0, 1]], valid), "false colour (NIR, R, G)")
    show_image(axes[0, 2], palette[labels], "labels (white: no-data)", interpolation="nearest")
    show_image(axes[0, 3], palette[prediction], f"prediction (held-out mIoU {miou:.2f})",
               interpolation="nearest")
    for ax in axes[0, 2:]:
        ax.axhline(cut - 0.5, color="black", linewidth=0.8, linestyle="--")
    handles = [_patch(GEO_PALETTE[i], name) for i, name in enumerate(GEO_CLASSES)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8,
               frameon=False)
    fig.suptitle(f"4-band uint16 scene, U-Net (8, 16, 32) after {steps} steps; rows below "
                 "the dashed line held out", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.12, top=0.84, wspace=0.05)
    return save_png(fig, path, colors=64)


def _patch(colour, label):
    from matplotlib.patches import Patch

    return Patch(facecolor=np.asarray(colour) / 255.0, label=label)
