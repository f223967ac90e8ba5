"""NIMOSEF network: one implicit function per population, one shape code per subject.

``forward(coords_norm (N,3), t (N,1), code (N,C) or (C,))`` returns segmentation logits
``(N, n_classes)``, intensity ``(N,)`` in [0, 1] and displacement ``(N, 3)`` in normalised
heart-frame units (a point at ``x`` at ED moves to ``x + u`` at time ``t``). ``K`` sets of
points with one code each: ``coords (K,N,3)``, ``t (K,N,1)``, ``code (K,C)``, outputs
``(K, N, ...)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from nimosef_engine.model.gabor import GaborLayer


@dataclass
class ModelConfig:
    """Sizes of the network (METHOD.md defaults: width 128, 8 layers, code 128)."""

    code_dim: int = 128
    width: int = 128
    depth: int = 8
    w0: float = 10.0
    s0: float = 10.0
    n_classes: int = 4
    motion_hidden: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class NetOutput:
    seg_logits: torch.Tensor
    intensity: torch.Tensor
    displacement: torch.Tensor | None


class NimosefNet(nn.Module):
    """Residual Gabor backbone + segmentation, intensity and motion heads."""

    def __init__(self, cfg: ModelConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ModelConfig()
        if cfg.width != cfg.code_dim:
            self.code_proj = nn.Linear(cfg.code_dim, cfg.width)
        else:
            self.code_proj = None
        layers = [GaborLayer(4 + cfg.code_dim, cfg.width, cfg.w0, cfg.s0, first=True)]
        layers += [GaborLayer(cfg.width, cfg.width, cfg.w0, cfg.s0) for _ in range(cfg.depth - 1)]
        self.layers = nn.ModuleList(layers)
        self.out = nn.Linear(cfg.width, cfg.width)
        self.seg_head = nn.Linear(cfg.width, cfg.n_classes)
        self.intensity_head = nn.Linear(cfg.width, 1)
        self.motion_hidden = nn.Linear(cfg.width + 1, cfg.motion_hidden)
        self.motion_out = nn.Linear(cfg.width + cfg.motion_hidden, 3)

    def features(self, coords: torch.Tensor, t: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Per-point feature ``z`` ``(N, width)``, or ``(K, N, width)`` for ``K`` sets of points
        ``coords (K, N, 3)``, ``t (K, N, 1)`` with one code each, ``code (K, C)`` (several
        starting poses of one subject fitted at once).

        With one code for a set of points, the code's share of the first layer and its
        projection are computed once, not per point: the same function, a quarter fewer
        multiply-adds at the paper's size.
        """
        first = self.layers[0]
        per_set = coords.dim() == 3
        if code.dim() == 1 or per_set:
            w, b = first.linear.weight, first.linear.bias
            xt = torch.cat([coords, t], dim=-1)
            if per_set:
                code_part = torch.addmm(b, code, w[:, 4:].T)[:, None, :]
                pre = torch.baddbmm(code_part, xt, w[:, :4].T.expand(len(code), -1, -1))
            else:
                pre = torch.addmm(w[:, 4:] @ code + b, xt, w[:, :4].T)
            x = first.activate(pre)
        else:
            x = first(torch.cat([coords, t, code], dim=-1))
        proj = self.code_proj(code) if self.code_proj is not None else code
        x = x + (proj[:, None, :] if per_set else proj)
        for layer in self.layers[1:]:
            x = layer(x) + x
        return self.out(x)

    def displacement(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m = F.silu(self.motion_hidden(torch.cat([z, t], dim=-1)))
        return 0.5 * torch.tanh(0.5 * self.motion_out(torch.cat([z, m], dim=-1)))

    def forward(self, coords: torch.Tensor, t: torch.Tensor, code: torch.Tensor,
                with_motion: bool = True) -> NetOutput:
        if t.dim() == 1:
            t = t[:, None]
        if t.shape[0] == 1 and coords.shape[0] != 1:
            t = t.expand(coords.shape[0], 1)
        z = self.features(coords, t, code)
        seg = self.seg_head(z)
        intensity = torch.sigmoid(self.intensity_head(z)).squeeze(-1)
        disp = self.displacement(z, t) if with_motion else None
        return NetOutput(seg, intensity, disp)


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
