"""The NIMOSEF network: Gabor layer formula, residual backbone, head shapes and bounds."""

import math

import torch

from nimosef_engine.model.gabor import EXP_FLOOR, GaborActivation, GaborLayer
from nimosef_engine.model.network import ModelConfig, NimosefNet, n_parameters


def test_gabor_layer_matches_formula():
    torch.manual_seed(0)
    layer = GaborLayer(5, 7, w0=10.0, s0=10.0)
    x = torch.randn(11, 5)
    w, b = layer.linear.weight, layer.linear.bias
    f = x @ w[:7].T + b[:7]
    s = x @ w[7:].T + b[7:]
    expected = torch.cos(10 * f) * torch.exp(-(10 * s) ** 2)
    torch.testing.assert_close(layer(x), expected)


def test_gabor_exp_floor_changes_nothing_above_float32_min():
    """The floored exponent (fast on CPU) against the plain formula, where much of the
    Gaussian underflows: the autograd and the in-place inference paths agree with it to
    float32's smallest normal number, and with each other exactly."""
    torch.manual_seed(1)
    layer = GaborLayer(3, 64, w0=10.0, s0=10.0)
    pre = torch.randn(4096, 128) * 3
    f, s = pre.split(64, dim=-1)
    plain = torch.cos(10 * f) * torch.exp(-(10 * s).square())
    assert (-(10 * s).square() < -87).float().mean() > 0.5  # the slow case is exercised
    train = layer.activate(pre.clone().requires_grad_(True))
    with torch.inference_mode():
        infer = layer.activate(pre.clone())
    assert torch.equal(train.detach(), infer)
    assert (infer - plain).abs().max() < 2e-38
    assert torch.equal(infer[plain.abs() > 1e-30], plain[plain.abs() > 1e-30])


def test_gabor_activation_derivatives_are_autograds():
    """The hand-formed derivatives against autograd through the composed, floored formula, in
    float64, where the floor holds for part of the inputs and not for the rest."""
    torch.manual_seed(2)
    pre = (torch.randn(64, 16, dtype=torch.float64) * 1.2).requires_grad_(True)
    s = pre[:, 8:]
    assert ((-(10 * s).square() < EXP_FLOOR).any() and (-(10 * s).square() > EXP_FLOOR).any())
    g = torch.randn(64, 8, dtype=torch.float64)
    (mine,) = torch.autograd.grad((GaborActivation.apply(pre, 10.0, 10.0) * g).sum(), pre)
    f, s = pre.split(8, dim=-1)
    composed = torch.cos(10 * f) * torch.exp((-(10 * s).square()).clamp(min=EXP_FLOOR))
    (ref,) = torch.autograd.grad((composed * g).sum(), pre)
    torch.testing.assert_close(mine, ref, rtol=1e-12, atol=1e-300)
    torch.testing.assert_close(GaborActivation.apply(pre, 10.0, 10.0), composed)
    small = (torch.randn(5, 6, dtype=torch.float64) * 0.05).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: GaborActivation.apply(x, 10.0, 10.0), (small,))


def test_default_size_is_about_03m_parameters():
    n = n_parameters(NimosefNet(ModelConfig()))
    assert 0.25e6 < n < 0.35e6, n


def test_heads_shapes_and_bounds():
    torch.manual_seed(0)
    net = NimosefNet(ModelConfig(width=32, depth=3, code_dim=16))
    coords = torch.rand(50, 3) * 2 - 1
    with torch.no_grad():
        out = net(coords, torch.full((50, 1), 0.3), torch.randn(16))
    assert out.seg_logits.shape == (50, 4)
    assert out.intensity.shape == (50,)
    assert float(out.intensity.min()) >= 0 and float(out.intensity.max()) <= 1
    assert out.displacement.shape == (50, 3)
    assert float(out.displacement.abs().max()) <= 0.5
    assert net(coords, torch.zeros(50, 1), torch.randn(16), with_motion=False).displacement \
        is None


def test_code_changes_the_output():
    torch.manual_seed(0)
    net = NimosefNet(ModelConfig(width=32, depth=3, code_dim=16))
    coords = torch.rand(20, 3)
    t = torch.zeros(20, 1)
    with torch.no_grad():
        a = net(coords, t, torch.zeros(16)).seg_logits
        b = net(coords, t, torch.ones(16) * 0.1).seg_logits
    assert not torch.allclose(a, b)
    assert math.isfinite(float(a.sum()))


def test_one_code_for_all_points_is_the_same_function_as_a_code_per_point():
    """The shared-code shortcut (the code's share of layer 1 computed once) changes nothing:
    same outputs and same gradient for the code."""
    torch.manual_seed(0)
    net = NimosefNet(ModelConfig(code_dim=32, width=48, depth=3))
    x, t = torch.rand(500, 3) * 2 - 1, torch.full((500, 1), 0.3)
    code = (torch.randn(32) * 0.1).requires_grad_(True)
    shared = net(x, t, code)
    per_point = net(x, t, code.expand(500, -1))
    torch.testing.assert_close(shared.seg_logits, per_point.seg_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.intensity, per_point.intensity, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(shared.displacement, per_point.displacement, atol=1e-5,
                               rtol=1e-5)
    (g1,) = torch.autograd.grad(shared.seg_logits.square().sum(), code)
    (g2,) = torch.autograd.grad(per_point.seg_logits.square().sum(), code)
    torch.testing.assert_close(g1, g2, atol=1e-4, rtol=1e-4)
