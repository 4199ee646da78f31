"""BatchNorm recalibration: the running statistics a subnet needs, measured on calibration data.

A supernet's shared BatchNorm statistics belong to no subnet in particular (each training step
sees a different one), so before a subnet is evaluated its statistics are re-estimated
(Once-for-All, BigNAS): reset them, then run K calibration batches in train mode without
gradients, with ``momentum=None`` so each layer keeps the cumulative average of the batches'
means and variances. The supernet's dynamic BatchNorm layers slice the shared buffers, so this
writes the statistics of the active channels; inactive channels are left reset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["batchnorm_layers", "recalibrate_bn"]


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """Every BatchNorm layer with running statistics (including those inside dynamic wrappers)."""
    return [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    arch: Any | None = None,
    forward: Callable[[torch.Tensor], Any] | None = None,
) -> int:
    """Reset and re-estimate BatchNorm running statistics for the active subnet.

    Args:
        model: A supernet (or any module); left in eval mode afterwards.
        batches: Calibration inputs, already shaped for the subnet.
        arch: If given, ``model.set_active(arch)`` first.
        forward: Called on each batch instead of ``model(batch)``.

    Returns:
        The number of batches used (0 when the model has no BatchNorm layer).
    """
    if arch is not None:
        model.set_active(arch)  # type: ignore[operator]
    layers = batchnorm_layers(model)
    saved = [(bn, bn.momentum) for bn in layers]
    n = 0
    if not layers:  # nothing to estimate (e.g. LayerNorm-only transformers)
        model.eval()
        return 0
    try:
        for bn in layers:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative moving average over the calibration batches
        model.train()
        for x in batches:
            (forward or model)(x)
            n += 1
    finally:
        for bn, momentum in saved:
            bn.momentum = momentum
        model.eval()
    return n
