"""Boundary points of label grids, kNN graphs and Chamfer distance in plain torch."""

from __future__ import annotations

import torch

NEIGHBOURS_6 = ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))


def boundary_mask(labels: torch.Tensor, label: int | None = None) -> torch.Tensor:
    """Voxels of a ``(X, Y, Z)`` label grid that have a differently-labelled 6-neighbour.

    With ``label``: boundary of that class only (voxels of ``label`` touching another label).
    Without: every foreground voxel touching a different label. Grid edges do not count.
    """
    lab = labels
    fg = lab == label if label is not None else lab > 0
    diff = torch.zeros_like(fg)
    for dim in range(3):
        a = lab.narrow(dim, 0, lab.shape[dim] - 1)
        b = lab.narrow(dim, 1, lab.shape[dim] - 1)
        ne = a != b
        diff.narrow(dim, 0, lab.shape[dim] - 1).logical_or_(ne)
        diff.narrow(dim, 1, lab.shape[dim] - 1).logical_or_(ne)
    return diff & fg


def nearest_index(src: torch.Tensor, dst: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Index of the nearest ``dst`` point ``(M, 3)`` for each ``src`` point ``(N, 3)`` (no grad).

    Squared distances from one matmul per chunk (``|a|^2 + |b|^2 - 2 a.b``), memory
    ``O(chunk * M)``.
    """
    with torch.no_grad():
        dst_sq = dst.square().sum(-1)
        out = torch.empty(src.shape[0], dtype=torch.long, device=src.device)
        for i in range(0, src.shape[0], chunk):
            a = src[i:i + chunk]
            d = dst_sq[None, :] - 2.0 * (a @ dst.T)
            out[i:i + a.shape[0]] = d.argmin(dim=1)
    return out


def pairwise_sqdist_min(src: torch.Tensor, dst: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Squared distance from each ``src`` point ``(N, 3)`` to its nearest ``dst`` point ``(M, 3)``.

    The neighbour is found without gradient, then the distance is recomputed exactly, so the
    gradient flows to both inputs at the cost of ``O(N)`` (``torch.cdist``'s backward is slow
    on CPU).
    """
    if src.shape[0] == 0:
        return src.new_zeros(0)
    idx = nearest_index(src, dst, chunk)
    return (src - dst[idx]).square().sum(-1)


def chamfer_one_way(src: torch.Tensor, dst: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Mean squared distance from each ``src`` point to the nearest ``dst`` point."""
    if src.shape[0] == 0 or dst.shape[0] == 0:
        return src.new_zeros(())
    return pairwise_sqdist_min(src, dst, chunk).mean()


@torch.no_grad()
def knn(points: torch.Tensor, k: int, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours of each point among the others: ``(idx (N,k), sqdist (N,k))``."""
    n = points.shape[0]
    k = min(k, n - 1)
    idx_out, d_out = [], []
    for i in range(0, n, chunk):
        d = torch.cdist(points[i:i + chunk], points).square()
        rows = torch.arange(i, min(i + chunk, n), device=points.device)
        d[rows - i, rows] = float("inf")
        vals, idx = d.topk(k, dim=1, largest=False)
        idx_out.append(idx)
        d_out.append(vals)
    return torch.cat(idx_out), torch.cat(d_out)


@torch.no_grad()
def knn_edges(points: torch.Tensor, k: int = 5) -> torch.Tensor:
    """Directed kNN graph edges ``(E, 2)`` (source, neighbour), ``E = N * k``."""
    idx, _ = knn(points, k)
    src = torch.arange(points.shape[0], device=points.device)[:, None].expand_as(idx)
    return torch.stack([src.reshape(-1), idx.reshape(-1)], dim=1)


def node_degrees(edges: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """Number of edges leaving each node."""
    return torch.bincount(edges[:, 0], minlength=n_nodes)
