"""Real Gabor (WIRE) layers: ``cos(w0 * (W_f x + b_f)) * exp(-(s0 * (W_s x + b_s))**2)``."""

from __future__ import annotations

import math

import torch
from torch import nn

# exp(-87) = 1.6e-38 is the smallest exp that is a normal float32 (FLT_MIN = 1.18e-38)
EXP_FLOOR = -87.0


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
        """The Gabor non-linearity of a pre-activation ``(N, 2 * out_features)``.

        The Gaussian's exponent is floored at :data:`EXP_FLOOR`: below it the result would
        underflow float32's normal range, and on CPU an underflowing ``exp`` runs several
        times slower (a third of all sampling time went there). The change is below 1.7e-38.
        Without autograd the temporaries are reused in place.
        """
        f, s = pre.split(self.out_features, dim=-1)
        if torch.is_grad_enabled() and pre.requires_grad:
            return torch.cos(self.w0 * f) * torch.exp(
                (-(self.s0 * s).square()).clamp(min=EXP_FLOOR))
        gauss = s.mul(self.s0).square_().neg_().clamp_(min=EXP_FLOOR).exp_()
        return f.mul(self.w0).cos_().mul_(gauss)
