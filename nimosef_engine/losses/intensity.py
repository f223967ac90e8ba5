"""Intensity reconstruction loss."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def intensity_loss(pred: torch.Tensor, target: torch.Tensor, beta: float = 0.05) -> torch.Tensor:
    """SmoothL1 (``beta`` 0.05) between predicted and observed normalised intensities ``(N,)``;
    for ``K`` sets of predictions ``(K, N)`` of one target ``(N,)``, one loss per set ``(K,)``."""
    if pred.dim() == 1:
        return F.smooth_l1_loss(pred, target, beta=beta)
    return F.smooth_l1_loss(pred, target.expand_as(pred), beta=beta, reduction="none").mean(-1)
