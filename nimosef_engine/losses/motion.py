"""Motion losses: Chamfer displacement, no motion at ED, Jacobian folding penalty."""

from __future__ import annotations

import torch

from nimosef_engine.losses.boundary import chamfer_one_way


def displacement_loss(b0: torch.Tensor, u: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
    """100 x one-way squared Chamfer from ED boundary points moved by ``u`` to those at t."""
    return 100.0 * chamfer_one_way(b0 + u, bt)


def no_motion_at_ed_loss(u0: torch.Tensor) -> torch.Tensor:
    """100 x ``mean(u(x, 0)**2)``: the reference frame does not move."""
    return 100.0 * u0.square().sum(dim=-1).mean()


def folding_loss(points: torch.Tensor, u: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Penalise folding along kNN edges: ``det = 1 + d . du / |d|^2``, loss ``mean(relu(-det))``.

    ``points (N,3)`` ED boundary points, ``u (N,3)`` their displacements, ``edges (E,2)``.
    The edge stretch ``1 + d.du/|d|^2`` is the Jacobian determinant of the map along ``d``;
    a negative value means the neighbourhood turned inside out.
    """
    if edges.numel() == 0:
        return points.new_zeros(())
    d = points[edges[:, 1]] - points[edges[:, 0]]
    du = u[edges[:, 1]] - u[edges[:, 0]]
    det = 1.0 + (d * du).sum(-1) / d.square().sum(-1).clamp_min(1e-12)
    return torch.relu(-det).mean()
