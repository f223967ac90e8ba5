"""Smoothness of intensity / soft segmentation along same-label graph edges."""

from __future__ import annotations

import torch


def smoothness_loss(values: torch.Tensor, edges: torch.Tensor,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared difference of ``values (N, D)`` across ``edges (E, 2)``.

    With ``labels (N,)`` only edges joining points of the same label count.
    """
    if edges.numel() == 0:
        return values.new_zeros(())
    if labels is not None:
        edges = edges[labels[edges[:, 0]] == labels[edges[:, 1]]]
        if edges.numel() == 0:
            return values.new_zeros(())
    diff = values[edges[:, 0]] - values[edges[:, 1]]
    return diff.square().sum(-1).mean()
