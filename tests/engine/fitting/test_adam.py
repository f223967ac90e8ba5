"""The fit's own Adam against torch.optim.Adam."""

import pytest
import torch

from nimosef_engine.fitting.adam import Adam


def _run(make_opt, steps: int = 30, device: str = "cpu"):
    """Minimise a quadratic in two parameter groups; the second has no gradient for the
    first 5 steps (as the code in a pose warm-up). Returns the parameters after each step."""
    gen = torch.Generator().manual_seed(0)
    target = torch.randn(16, generator=gen).to(device)
    a = torch.randn(16, generator=gen).to(device).requires_grad_(True)
    b = torch.randn(3, generator=gen).to(device).requires_grad_(True)
    opt = make_opt([{"params": [a], "lr": 5e-3}, {"params": [b], "lr": 2e-3}])
    trace = []
    for step in range(steps):
        opt.zero_grad()
        loss = (a - target).square().sum() + (b * a[:3]).sin().sum()
        loss.backward()
        if step < 5:
            b.grad = None
        opt.step()
        trace.append(torch.cat([a.detach(), b.detach()]).cpu())
    return torch.stack(trace)


def test_adam_is_torch_adam_bit_for_bit():
    ours = _run(lambda g: Adam(g))
    theirs = _run(lambda g: torch.optim.Adam(g, foreach=False))
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours[0], ours[-1])


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_capturable_adam_rounds_like_torch_capturable_adam(device):
    if device == "cpu":  # torch.optim.Adam's capturable form wants a GPU; compare with plain
        ours = _run(lambda g: Adam(g, capturable=True))
        torch.testing.assert_close(ours, _run(lambda g: Adam(g)), rtol=1e-5, atol=1e-6)
        return
    ours = _run(lambda g: Adam(g, capturable=True), device=device)
    theirs = _run(lambda g: torch.optim.Adam(g, capturable=True, foreach=False), device=device)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-7)
