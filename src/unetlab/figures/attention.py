"""Attention maps of a trained Attention U-Net.

A tiny ``attention_unet`` is trained for a few dozen steps on synthetic membranes (the
five lines of the course's loop, with the project's dataset, loss and metric), then the
attention coefficients of its gates are drawn next to the image, the label and the
prediction.
"""

from __future__ import annotations

import logging

import torch

from ._plot import new_figure, save_png, show_image

log = logging.getLogger(__name__)


def train_tiny_attention_unet(steps: int = 60, *, size: int = 64, seed: int = 0,
                              lr: float = 3e-3, batch_size: int = 8):
    """Train ``attention_unet`` (channels 8, 16, 32) on 16 synthetic membrane images.

    Returns ``(model, images, masks, membrane_dice)``, the Dice of the membrane class on
    the validation images after training. Deterministic for a given ``seed``.
    """
    from .. import create_model
    from ..data import build_dataset
    from ..losses import build_loss
    from ..metrics import SegmentationMetrics

    torch.manual_seed(seed)
    train = build_dataset("membranes", num_images=16, size=size, cell_diameter=20, seed=seed)
    val = build_dataset("membranes", split="val", num_images=4, size=size, cell_diameter=20,
                        seed=seed)
    x = torch.stack([train[i]["image"] for i in range(len(train))])
    y = torch.stack([train[i]["mask"] for i in range(len(train))])
    model = create_model("attention_unet", in_channels=1, num_classes=2, channels=(8, 16, 32))
    loss_fn = build_loss("dice_ce", num_classes=2)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        pick = torch.randint(0, len(train), (batch_size,), generator=gen)
        loss = loss_fn(model(x[pick]), y[pick])      # forward + loss
        optimizer.zero_grad()                        # zero_grad
        loss.backward()                              # backward
        optimizer.step()                             # step
        if step % 20 == 0:
            log.info("attention_unet step %d loss %.4f", step, loss.item())
    model.eval()
    images = torch.stack([val[i]["image"] for i in range(len(val))])
    masks = torch.stack([val[i]["mask"] for i in range(len(val))])
    metrics = SegmentationMetrics(2, boundary=False)
    with torch.no_grad():
        metrics.update(model(images), masks)
    return model, images, masks, float(metrics.compute()["dice"][1])


def attention_maps(path, steps: int = 60):
    """Figure: image, label, prediction and each gate's attention coefficients."""
    model, images, masks, dice = train_tiny_attention_unet(steps)
    with torch.no_grad():
        prediction = model(images[:1]).argmax(1)[0]
    maps = [a[0, 0].numpy() for a in model.attention_maps()]
    fig, axes = new_figure(8.0, 2.4, ncols=3 + len(maps))
    show_image(axes[0, 0], images[0, 0].numpy(), "image")
    show_image(axes[0, 1], masks[0].numpy(), "label (membrane)", cmap="gray_r",
               interpolation="nearest")
    show_image(axes[0, 2], prediction.numpy(), f"prediction (Dice {dice:.2f})",
               cmap="gray_r", interpolation="nearest")
    for k, alpha in enumerate(maps):
        show_image(axes[0, 3 + k], alpha, f"gate {k + 1} ({alpha.shape[0]}²): "
                   f"{alpha.min():.2f}-{alpha.max():.2f}", cmap="viridis")
    fig.suptitle(f"Attention U-Net after {steps} training steps: gate coefficients in "
                 "[0, 1], own colour range each (yellow = passed on)", fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.78, wspace=0.05)
    return save_png(fig, path, colors=48)

