"""The NIMOSEF network: Gabor layer formula, residual backbone, head shapes and bounds."""

import math

import torch

from nimosef_engine.model.gabor import GaborLayer
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
