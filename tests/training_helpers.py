"""Tiny, fast training configs shared by the training and CLI tests."""

from __future__ import annotations

import torch
from safetensors.torch import load_file


def tiny_overrides(out_dir, *, epochs=2, norm="batch", images=8, batch=4, augment="light",
                   boundary=False, extra=()):
    """Overrides for a U-Net (8, 16, 32) on 32x32 synthetic membranes, CPU, no bar."""
    return [
        "model.options.channels=[8,16,32]", f"model.options.norm={norm}",
        "data.dataset=membranes", f"data.options.num_images={images}", "data.options.size=32",
        "data.val_options.num_images=2", "data.tile_size=null", f"data.augment={augment}",
        f"data.batch_size={batch}", "loss.name=ce", "optim.name=adam", "optim.lr=0.01",
        "schedule.name=none", f"train.epochs={epochs}", "train.progress=false",
        "train.device=cpu", "train.best_metric=dice.1", f"train.out_dir={out_dir}",
        "train.seed=0", f"train.boundary_metric={str(boundary).lower()}", *extra,
    ]


def weights(run_dir, which="last") -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / which / "model.safetensors"))


def assert_same_weights(a: dict, b: dict, atol=0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if atol:
            assert torch.allclose(a[key], b[key], atol=atol, rtol=0), key
        else:
            assert torch.equal(a[key], b[key]), key
