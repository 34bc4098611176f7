"""Model size and cost: parameters and FLOPs, as the comparison tables report them."""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only those that require gradients)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, input_shape, *, device="cpu") -> int:
    """FLOPs of one forward pass on a zero input of ``input_shape`` (batch included),
    by torch's flop counter (a multiply-add counts as 2 FLOPs; convolutions and matrix
    products only, as is conventional)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(*input_shape, device=device))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
