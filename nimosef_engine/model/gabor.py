"""Real Gabor (WIRE) layers: ``cos(w0 * (W_f x + b_f)) * exp(-(s0 * (W_s x + b_s))**2)``."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

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
        if torch.is_grad_enabled() and pre.requires_grad:
            return GaborActivation.apply(pre, self.w0, self.s0)
        f, s = pre.split(self.out_features, dim=-1)
        gauss = s.mul(self.s0).square_().neg_().clamp_(min=EXP_FLOOR).exp_()
        return f.mul(self.w0).cos_().mul_(gauss)


class GaborActivation(torch.autograd.Function):
    """The Gabor non-linearity of ``pre = [f, s]`` ``(..., 2 n)`` -> ``(..., n)`` with its
    derivatives formed in the forward pass: the backward is one product per half, written into
    one buffer (``d/df = -w0 sin(w0 f) g``, ``d/ds = -2 s0^2 s cos(w0 f) g`` with ``g`` the
    floored Gaussian, zero where the floor holds), where autograd goes back through the eight
    operations of the formula and concatenates the halves. A fit step on the CPU: 0.18 -> 0.11 s
    (``benchmarks/fit_time.py --composed-gabor``). The values are the inference path's to the
    bit, the derivatives autograd's up to float32 rounding. Not twice differentiable."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, w0: float, s0: float) -> torch.Tensor:
        f, s = pre.split(pre.shape[-1] // 2, dim=-1)
        arg = s.mul(s0).square_().neg_()  # as the inference path, to the bit
        flows = arg >= EXP_FLOOR  # clamp's gradient passes where the floor does not hold
        gauss = arg.clamp_(min=EXP_FLOOR).exp_()
        wf = f.mul(w0)
        out = torch.cos(wf).mul_(gauss)
        d_f = wf.sin_().mul_(gauss).mul_(-w0)
        d_s = s.mul(-2.0 * s0 * s0).mul_(out).mul_(flows)
        ctx.save_for_backward(d_f, d_s)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        d_f, d_s = ctx.saved_tensors
        n = d_f.shape[-1]
        grad_pre = grad.new_empty((*grad.shape[:-1], 2 * n))
        torch.mul(grad, d_f, out=grad_pre[..., :n])
        torch.mul(grad, d_s, out=grad_pre[..., n:])
        return grad_pre, None, None
