"""Adam for the few tensors a subject fit optimises (its code, its pose).

The update is ``torch.optim.Adam``'s (betas 0.9 / 0.999, eps 1e-8, no weight decay), written
out for two reasons. A step recorded in a CUDA graph (:mod:`fit_graph`) needs its step count
on the device. And on the lent H100 machine, segment-track's first fit (the rotation search)
took about 5.5 s longer with ``torch.optim.Adam`` than with this class: its "localise" stage
6.5-7.8 s at commit 9fbde99, 1.1-1.3 s at 973b777 (``benchmarks/segment_track.py``). An
isolated first ``torch.optim.Adam`` step in a fresh process costs 0.07 s there
(``benchmarks/startup_costs.py``), so the cost comes with the first step after the network has
run; its cause inside torch was not pinned down. Training keeps ``torch.optim``.
"""

from __future__ import annotations

import torch


class Adam:
    """Adam over parameter groups ``[{"params": [...], "lr": float}, ...]``.

    Parameters without a gradient are skipped (their step count holds), as in
    ``torch.optim.Adam``. ``capturable``: the step count and bias corrections live on the
    parameters' device, so a step recorded in a CUDA graph replays correctly; the same update,
    rounded as ``torch.optim.Adam(capturable=True)`` rounds it. Otherwise the update is
    ``torch.optim.Adam``'s single-tensor one, bit for bit.
    """

    def __init__(self, groups: list[dict], capturable: bool = False, betas=(0.9, 0.999),
                 eps: float = 1e-8):
        self.groups = [(list(g["params"]), float(g["lr"])) for g in groups]
        self.capturable = capturable
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.state = {}
        for params, _ in self.groups:
            for p in params:
                step = torch.zeros((), device=p.device) if capturable else 0
                self.state[p] = [torch.zeros_like(p), torch.zeros_like(p), step]

    def zero_grad(self) -> None:
        for params, _ in self.groups:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2, eps = self.beta1, self.beta2, self.eps
        for params, lr in self.groups:
            for p in params:
                if p.grad is None:
                    continue
                state = self.state[p]
                m, v = state[0], state[1]
                m.lerp_(p.grad, 1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                state[2] += 1  # in place on the device when capturable
                if self.capturable:
                    step_size_neg = -(lr / (1 - b1 ** state[2]))
                    bc2_sqrt = (1 - b2 ** state[2]).sqrt()
                    p.addcdiv_(m, (v.sqrt() / (bc2_sqrt * step_size_neg)).add_(eps / step_size_neg))
                else:
                    bc2_sqrt = (1 - b2 ** state[2]) ** 0.5
                    p.addcdiv_(m, (v.sqrt() / bc2_sqrt).add_(eps), value=-lr / (1 - b1 ** state[2]))
