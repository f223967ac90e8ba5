"""Real Gabor (WIRE) layers: ``cos(w0 * (W_f x + b_f)) * exp(-(s0 * (W_s x + b_s))**2)``."""

from __future__ import annotations

import math

import torch
from torch import nn


class GaborLayer(nn.Module):
    """One real Gabor layer. The frequency and scale projections share one matmul.

    Input ``(N, in_features)``, output ``(N, out_features)``.
    """

    def __init__(self, in_features: int, out_features: int, w0: float = 10.0, s0: float = 10.0,
                 first: bool = False):
        super().__init__()
        self.w0, self.s0 = float(w0), float(s0)
        self.out_features = out_features
        self.linear = nn.Linear(in_features, 2 * out_features)
        bound = (1.0 / in_features) if first else math.sqrt(6.0 / in_features) / max(self.w0, 1.0)
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound)
            self.linear.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.linear(x))

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """The Gabor non-linearity of a pre-activation ``(N, 2 * out_features)``."""
        f, s = pre.split(self.out_features, dim=-1)
        return torch.cos(self.w0 * f) * torch.exp(-(self.s0 * s).square())
