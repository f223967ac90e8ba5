"""Segmentation losses: soft Dice over the foreground classes + weighted cross-entropy."""

from __future__ import annotations

import torch
from torch.nn import functional as F

CE_CLASS_WEIGHTS = (0.3, 1.0, 1.0, 1.0)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor,
                   classes: tuple[int, ...] = (1, 2, 3), eps: float = 1.0) -> torch.Tensor:
    """``1 - mean`` soft Dice of ``classes``; ``logits (N, C)``, ``target (N,)`` long."""
    prob = logits.softmax(dim=-1)
    losses = []
    for c in classes:
        p = prob[:, c]
        g = (target == c).to(p.dtype)
        losses.append(1 - (2 * (p * g).sum() + eps) / (p.sum() + g.sum() + eps))
    return torch.stack(losses).mean()


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor,
                      class_weights: tuple[float, ...] = CE_CLASS_WEIGHTS) -> torch.Tensor:
    """Soft Dice (foreground classes) + cross-entropy with ``class_weights``."""
    w = torch.tensor(class_weights, dtype=logits.dtype, device=logits.device)
    return soft_dice_loss(logits, target) + F.cross_entropy(logits, target, weight=w)
